// A small HTTP/1.1 server for GET endpoints such as /healthz, /readyz and /metrics: the
// worker and the operator both answer probes and scrapes this way, and `carapace ui` serves
// its timeline page (a handler may read the query and the request's headers).
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
#include <utility>
#include <vector>

#include "common/status.h"

namespace carapace {

struct HttpReply {
  int code = 200;
  std::string body;
  std::string content_type = "text/plain";
  // More response headers ("Cache-Control", "WWW-Authenticate", ...). A name or value with
  // a CR or LF makes the reply a 500: a handler cannot split the response.
  std::vector<std::pair<std::string, std::string>> headers = {};
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
// method, path, query and headers asked with, or the refusal it gets. Exposed for tests and
// the fuzz harness.
struct HttpRequestHead {
  int refusal = 0;     // 0: a request to answer; else the status it is refused with
  std::string reason;  // why, when refused
  std::string method;  // GET or HEAD
  std::string path;    // the target without its query
  std::string query;   // what follows the first '?' of the target, as sent (not decoded); "" if none
  // Header names in lower case; a header sent more than once has its values joined by ", "
  // (RFC 9110, 5.3). Held to HttpLimits as the head is.
  std::map<std::string, std::string> headers;

  // The header's value, "" when it was not sent. `name` in lower case.
  std::string Header(const std::string& name) const;
};
// The request a handler answers.
using HttpRequest = HttpRequestHead;
HttpRequestHead ParseRequestHead(std::string_view head, const HttpLimits& limits);

class HttpEndpoints {
 public:
  using Handler = std::function<HttpReply(const HttpRequest&)>;
  explicit HttpEndpoints(HttpLimits limits = {});
  ~HttpEndpoints();  // Stop()
  HttpEndpoints(const HttpEndpoints&) = delete;
  HttpEndpoints& operator=(const HttpEndpoints&) = delete;

  // Registers a handler for GET `path` (before Start). Unknown paths get 404.
  void Handle(const std::string& path, Handler handler);
  // A handler that needs nothing of the request (probes, metrics).
  void Handle(const std::string& path, std::function<HttpReply()> handler);
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
