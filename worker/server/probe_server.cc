// Probes and metrics over HTTP (common/http_endpoints).
#include "worker/server/probe_server.h"

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "common/time.h"
#include "worker/cli/status_view.h"

namespace carapace {

ProbeServer::ProbeServer(prometheus::Registry* metrics) : metrics_(metrics) {}

void ProbeServer::SetNotOpen(std::string why) {
  std::lock_guard<std::mutex> lock(mu_);
  not_open_ = std::move(why);
}

ProbeServer::~ProbeServer() { Stop(); }

Status ProbeServer::Start(const std::string& address) {
  endpoints_.Handle("/healthz", [] { return HttpReply{200, "ok\n"}; });
  endpoints_.Handle("/readyz", [this] {
    AgentService* agent = agent_.load();
    if (agent == nullptr) {
      std::lock_guard<std::mutex> lock(mu_);
      nlohmann::json body = {{"ready", false}, {"store", "not open"}, {"reason", not_open_}};
      return HttpReply{503, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", "application/json"};
    }
    std::string why;
    const bool ready = agent->Ready(&why);
    Status model = agent->ModelHealth();
    auto status = agent->Snapshot();
    nlohmann::json body = {{"ready", ready},
                           {"phase", worker::v1::Phase_Name(status.phase())},
                           {"store", status.waiting_for() == "VolumeFull" ? "volume full" : "open"},
                           {"model", {{"ok", model.ok()}, {"detail", model.ok() ? "" : model.message()}}}};
    if (!ready) body["reason"] = why;
    // Ready all the same: the worker works and takes messages; the turn waits for the model.
    if (!status.waiting_for().empty()) {
      body["waitingFor"] = status.waiting_for();
      body["detail"] = status.waiting_detail();
      if (status.next_try_at_ms() > 0) body["nextTryAt"] = FormatRfc3339Millis(status.next_try_at_ms());
    }
    if (!status.degraded_cause().empty()) body["heldBy"] = status.degraded_cause();
    return HttpReply{ready ? 200 : 503, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
                     "application/json"};
  });
  if (metrics_) {
    endpoints_.Handle("/metrics", [this] {
      return HttpReply{200, prometheus::TextSerializer().Serialize(metrics_->Collect()), kPrometheusContentType};
    });
  }
  return endpoints_.Start(address);
}

void ProbeServer::Stop() { endpoints_.Stop(); }

}  // namespace carapace
