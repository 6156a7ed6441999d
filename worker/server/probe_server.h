// The worker's HTTP port: /healthz (the process answers), /readyz (the store is open and has
// room, and the agent is not in a crash loop; the model service's health is shown in the
// body, and does not decide readiness: a model outage is what fallbacks and retries are
// for), and /metrics (Prometheus text format).
//
// It serves from before the store is open, so that a worker whose volume is too full to
// open its store still answers its probes and reports why (SetNotOpen).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "common/http_endpoints.h"
#include "common/status.h"
#include "worker/server/agent_service.h"

namespace carapace {

class ProbeServer {
 public:
  explicit ProbeServer(prometheus::Registry* metrics);
  ~ProbeServer();
  // `address` is host:port. Errors: kUnavailable when the port cannot be opened.
  Status Start(const std::string& address);
  void Stop();

  // Until an agent is set, /readyz answers 503 with this reason ("opening the store" at
  // first).
  void SetNotOpen(std::string why);
  // The agent /readyz reports on from now on; it must outlive the server or Stop().
  void SetAgent(AgentService* agent) { agent_.store(agent); }

 private:
  std::atomic<AgentService*> agent_{nullptr};
  prometheus::Registry* metrics_;
  std::mutex mu_;
  std::string not_open_ = "opening the store";
  HttpEndpoints endpoints_;
};

}  // namespace carapace
