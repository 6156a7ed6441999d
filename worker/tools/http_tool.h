// The http tool: GET/POST/PUT/DELETE through libcurl (http_fetch.h) to the hosts the spec allows.
// allowedHosts lists "host:port" or "host" entries, which may be internal; "*" also allows
// any host whose every address is public (loopback, link-local such as the cloud metadata
// service, private and unique-local addresses are refused after DNS resolution), and the
// connection goes to the address checked, for http and https alike. Redirects
// are followed up to maxRedirects, each hop checked again. Every request carries the call's
// idempotency key as an Idempotency-Key header, so a service that honours it can make a
// retried call harmless.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "worker/tools/tool.h"

namespace web {
class uri;
}

namespace carapace {

class HttpTool : public Tool {
 public:
  HttpTool(std::string name, HttpToolOptions options);
  // Builds the tool and loads the values of configured headers: secret ones from their
  // environment variable or file, registered for redaction. Errors: kInvalidArgument naming
  // the header when its secret cannot be read.
  static Result<std::unique_ptr<Tool>> Create(const std::string& name, const HttpToolOptions& options);

  ToolSchema Schema() const override;
  // Unknown side effects unless the spec says otherwise.
  Effect DefaultEffect() const override { return Effect::kSideEffecting; }
  // arguments: {method, url, headers: {..}, body: string | object}.
  ToolResult Call(const nlohmann::json& arguments, const ToolContext& context) override;

  // ok when `host` and `port` match an allowed entry ("host:port", or "host" for any port).
  bool HostAllowed(const std::string& host, int port) const;

  // The DNS lookup the checks use (ResolveHost by default). Tests give one that answers as
  // a hostile DNS server would.
  using Resolver = std::function<Result<std::vector<std::string>>(const std::string& host)>;
  void SetResolver(Resolver resolve) { resolve_ = std::move(resolve); }

 private:
  struct Destination {
    std::string pinned_address;  // the address checked, connected to; "" for a listed host
  };
  // Where a request to `uri` may go, or kPermissionDenied saying why not.
  Result<Destination> CheckDestination(const web::uri& uri) const;

  std::string name_;
  HttpToolOptions options_;
  std::vector<std::pair<std::string, std::string>> configured_headers_;  // (name, value), loaded
  std::vector<std::string> secret_headers_;                              // lower-case names
  Resolver resolve_;
};

}  // namespace carapace
