// The small HTTP/1.1 server under the Kubernetes API double: loopback only, a thread per
// connection, keep-alive, Content-Length and chunked replies, chunked request bodies.
#pragma once

#include <atomic>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/status.h"

namespace carapace::testing::kube_double {

struct HttpRequest {
  std::string method;
  std::string path;                            // percent-decoded, without the query
  std::map<std::string, std::string> query;    // decoded; a repeated key keeps the last value
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;

  std::string Header(const std::string& lower_name) const;
  std::string Query(const std::string& name) const;
  bool HasQuery(const std::string& name) const { return query.count(name) > 0; }
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

// One client connection, as the handler sees it. Every send returns false once the peer is
// gone, so a handler can stop early.
class HttpConnection {
 public:
  explicit HttpConnection(int fd) : fd_(fd) {}
  bool Reply(int code, const std::string& content_type, const std::string& body, const HttpHeaders& extra = {});
  bool StartChunked(int code, const std::string& content_type);
  bool SendChunk(const std::string& data);
  bool EndChunked();
  // Cuts the connection mid-stream (no terminating chunk), as a dropped network would.
  void Abort();
  // True when the client has closed its side (checked without blocking).
  bool PeerClosed() const;

 private:
  int fd_;
};

// Returns false to close the connection after the request.
using HttpHandler = std::function<bool(const HttpRequest&, HttpConnection&)>;

class HttpServer {
 public:
  explicit HttpServer(HttpHandler handler) : handler_(std::move(handler)) {}
  ~HttpServer() { Stop(); }
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Listens on 127.0.0.1:`port` (0: a free one). Errors: kUnavailable.
  Status Start(int port);
  // Closes the listener and every connection and joins their threads. The handler must
  // return on its own from anything it waits for (the owner wakes it before calling Stop).
  void Stop();
  int port() const { return port_; }
  bool stopping() const { return stopping_; }

 private:
  struct Connection {
    int fd = -1;
    std::thread thread;
    std::atomic<bool> done{false};
  };
  void AcceptLoop();
  void Serve(Connection* connection);
  void ReapFinished();

  HttpHandler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::list<std::unique_ptr<Connection>> connections_;
};

// "%41b+c" -> "Ab c" when `plus_is_space` (query strings).
std::string PercentDecode(const std::string& text, bool plus_is_space);

}  // namespace carapace::testing::kube_double
