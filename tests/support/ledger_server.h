// LedgerServer: a small HTTP service on loopback that records every request it receives
// (method, path, Idempotency-Key, body) and answers deterministically. It is the
// "outside world" for the demo and the crash test: it tells whether a call reached it
// twice. GET /_ledger lists what it received; /redirect?to=URL and /loop answer 302;
// /echo answers with the Authorization header it was sent.
// Test support only; never shipped.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace web::http::experimental::listener {
class http_listener;
}

namespace carapace::testing {

struct LedgerEntry {
  std::string method;
  std::string path;
  std::string idempotency_key;
  std::string body;
  std::string authorization;  // the Authorization header, if any
  std::string traceparent;    // the traceparent header, if any
};

class LedgerServer {
 public:
  // `delay_ms` is how long each request is held before it is answered, so that a process
  // killed at a random moment is often caught with a call in flight.
  explicit LedgerServer(int delay_ms = 0);
  ~LedgerServer();

  // Listens on 127.0.0.1:`port`, or on a free port when `port` is 0. Returns false when
  // the port could not be bound.
  bool Start(int port = 0);
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  std::vector<LedgerEntry> entries() const;
  // The answer the ledger gives for an entry: a pure function of path and key.
  static nlohmann::json AnswerFor(const std::string& method, const std::string& path, const std::string& key);

 private:
  int delay_ms_;
  int port_ = 0;
  std::unique_ptr<web::http::experimental::listener::http_listener> listener_;
  mutable std::mutex mu_;
  std::vector<LedgerEntry> entries_;
};

}  // namespace carapace::testing
