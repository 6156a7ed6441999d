// A small HTTP/1.1 server for GET endpoints such as /healthz, /readyz and /metrics: the
// worker and the operator both answer probes and scrapes this way.
//
// The port needs no token (the kubelet and Prometheus must reach it), so whoever can reach it
// controls the size of what it reads: every request is held to HttpLimits, and a connection
// never holds more than the limit in memory. One thread serves every connection (poll);
// a reply is written in full, then the connection is closed ("Connection: close").
//
//   over max_request_line bytes before the first CRLF   414 URI Too Long
//   over max_header_bytes (request line and headers)     431 Request Header Fields Too Large
//   over max_headers header lines                        431
//   a body (Content-Length > 0, or Transfer-Encoding)    413 Content Too Large
//   a method other than GET or HEAD                      405 (Allow: GET, HEAD)
//   not HTTP/1.0 or HTTP/1.1                             505
//   a malformed request line or header                   400
//   the head not complete within read_timeout            408 Request Timeout
//   max_connections open already                         503, and closed
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace carapace {

struct HttpReply {
  int code = 200;
  std::string body;
  std::string content_type = "text/plain";
};

// The Prometheus text exposition content type.
inline constexpr char kPrometheusContentType[] = "text/plain; version=0.0.4; charset=utf-8";

struct HttpLimits {
  size_t max_request_line = 4096;
  size_t max_header_bytes = 16384;  // as Go's net/http default is 1 MiB, nginx's 8 KiB per line
  size_t max_headers = 100;
  int max_connections = 128;
  std::chrono::milliseconds read_timeout{10000};   // for the whole request head (slow senders)
  std::chrono::milliseconds write_timeout{10000};  // for the whole reply (slow readers)
};

// A request head (request line, headers, the blank line) as the server reads it: the
// method and path asked for, or the refusal it gets. Exposed for tests and the fuzz harness.
struct HttpRequestHead {
  int refusal = 0;     // 0: a request to answer; else the status it is refused with
  std::string reason;  // why, when refused
  std::string method;  // GET or HEAD
  std::string path;    // the target without its query
};
HttpRequestHead ParseRequestHead(std::string_view head, const HttpLimits& limits);

class HttpEndpoints {
 public:
  using Handler = std::function<HttpReply()>;
  explicit HttpEndpoints(HttpLimits limits = {});
  ~HttpEndpoints();  // Stop()
  HttpEndpoints(const HttpEndpoints&) = delete;
  HttpEndpoints& operator=(const HttpEndpoints&) = delete;

  // Registers a handler for GET `path` (before Start). Unknown paths get 404.
  void Handle(const std::string& path, Handler handler);
  // `address` is host:port ("0.0.0.0:8081", "127.0.0.1:0", "[::]:8081"). Errors:
  // kUnavailable when the port cannot be opened, kInvalidArgument for a bad address.
  Status Start(const std::string& address);
  // The port listened on (useful after Start with port 0); 0 when not started.
  int port() const;
  void Stop();

 private:
  struct Server;
  HttpLimits limits_;
  std::map<std::string, Handler> handlers_;
  std::unique_ptr<Server> server_;
};

}  // namespace carapace
