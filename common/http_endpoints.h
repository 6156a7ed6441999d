// A small HTTP server for GET endpoints such as /healthz, /readyz and /metrics: the worker
// and the operator both answer probes and scrapes this way (cpprestsdk listener).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/status.h"

namespace web::http::experimental::listener {
class http_listener;
}

namespace carapace {

struct HttpReply {
  int code = 200;
  std::string body;
  std::string content_type = "text/plain";
};

// The Prometheus text exposition content type.
inline constexpr char kPrometheusContentType[] = "text/plain; version=0.0.4; charset=utf-8";

class HttpEndpoints {
 public:
  using Handler = std::function<HttpReply()>;
  HttpEndpoints();
  ~HttpEndpoints();  // Stop()

  // Registers a handler for GET `path` (before Start). Unknown paths get 404.
  void Handle(const std::string& path, Handler handler);
  // `address` is host:port. Errors: kUnavailable when the port cannot be opened.
  Status Start(const std::string& address);
  void Stop();

 private:
  std::map<std::string, Handler> handlers_;
  std::unique_ptr<web::http::experimental::listener::http_listener> listener_;
};

}  // namespace carapace
