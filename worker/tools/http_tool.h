// The http tool: GET/POST/PUT/DELETE to the hosts the spec allows, through cpprestsdk.
// Every request carries the call's idempotency key as an Idempotency-Key header, so a
// service that honours it can make a retried call harmless.
#pragma once

#include <string>

#include "worker/tools/tool.h"

namespace carapace {

class HttpTool : public Tool {
 public:
  HttpTool(std::string name, HttpToolOptions options);

  ToolSchema Schema() const override;
  // Unknown side effects unless the spec says otherwise.
  Effect DefaultEffect() const override { return Effect::kSideEffecting; }
  // arguments: {method, url, headers: {..}, body: string | object}.
  ToolResult Call(const nlohmann::json& arguments, const ToolContext& context) override;

  // ok when `host` and `port` match an allowed entry ("host:port", or "host" for any port).
  bool HostAllowed(const std::string& host, int port) const;

 private:
  std::string name_;
  HttpToolOptions options_;
};

}  // namespace carapace
