// The worker's HTTP port: /healthz (the process answers), /readyz (the store is open and
// the agent is not in a crash loop; the model service's health is shown in the body, and
// does not decide readiness: a model outage is what fallbacks and retries are for), and
// /metrics (Prometheus text format).
#pragma once

#include <memory>
#include <string>

#include "common/http_endpoints.h"
#include "common/status.h"
#include "worker/server/agent_service.h"

namespace carapace {

class ProbeServer {
 public:
  ProbeServer(AgentService* agent, prometheus::Registry* metrics);
  ~ProbeServer();
  // `address` is host:port. Errors: kUnavailable when the port cannot be opened.
  Status Start(const std::string& address);
  void Stop();

 private:
  AgentService* agent_;
  prometheus::Registry* metrics_;
  HttpEndpoints endpoints_;
};

}  // namespace carapace
