// Probes and metrics over HTTP (cpprestsdk).
#include "worker/server/probe_server.h"

#include <cpprest/http_listener.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "worker/cli/status_view.h"

namespace carapace {

namespace http = web::http;

ProbeServer::ProbeServer(AgentService* agent, prometheus::Registry* metrics) : agent_(agent), metrics_(metrics) {}

ProbeServer::~ProbeServer() { Stop(); }

Status ProbeServer::Start(const std::string& address) {
  try {
    listener_ = std::make_unique<http::experimental::listener::http_listener>("http://" + address);
    listener_->support(http::methods::GET, [this](http::http_request request) {
      const std::string path = request.relative_uri().path();
      auto reply = [&](http::status_code code, const std::string& body, const std::string& type) {
        http::http_response r(code);
        r.set_body(std::vector<unsigned char>(body.begin(), body.end()));
        r.headers().set_content_type(type);
        // A client gone before the answer is written fails this task; observed here, or
        // pplx would end the process for an exception nobody looked at.
        request.reply(r).then([](pplx::task<void> t) {
          try {
            t.get();
          } catch (...) {
          }
        });
      };
      if (path == "/healthz") {
        reply(http::status_codes::OK, "ok\n", "text/plain");
      } else if (path == "/readyz") {
        std::string why;
        const bool ready = agent_->Ready(&why);
        Status model = agent_->ModelHealth();
        auto status = agent_->Snapshot();
        nlohmann::json body = {{"ready", ready},
                               {"phase", status.phase()},
                               {"store", "open"},
                               {"model", {{"ok", model.ok()}, {"detail", model.ok() ? "" : model.message()}}}};
        if (!ready) body["reason"] = why;
        body["phase"] = worker::v1::Phase_Name(status.phase());
        reply(ready ? http::status_codes::OK : http::status_codes::ServiceUnavailable,
              body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", "application/json");
      } else if (path == "/metrics" && metrics_) {
        reply(http::status_codes::OK, prometheus::TextSerializer().Serialize(metrics_->Collect()),
              "text/plain; version=0.0.4; charset=utf-8");
      } else {
        reply(http::status_codes::NotFound, "not found: " + path + "\n", "text/plain");
      }
    });
    listener_->open().wait();
    return Status::Ok();
  } catch (const std::exception& e) {
    listener_.reset();
    return Unavailable("cannot listen on http://" + address + ": " + e.what());
  }
}

void ProbeServer::Stop() {
  if (!listener_) return;
  try {
    listener_->close().wait();
  } catch (const std::exception&) {
  }
  listener_.reset();
}

}  // namespace carapace
