// LedgerServer on cpprestsdk's http_listener.
#include "tests/support/ledger_server.h"

#include <chrono>
#include <random>
#include <thread>

#include <cpprest/http_listener.h>

#include "tests/support/loopback_listener.h"

#include "common/hash.h"

namespace carapace::testing {

namespace http = web::http;
using web::http::experimental::listener::http_listener;

namespace {
// Bodies go through byte vectors: cpprest's std::string stream buffers trip UBSan and leak
// under ASan (DESIGN.md, build facts).
void Reply(const http::http_request& req, const std::string& json_text) {
  http::http_response response(http::status_codes::OK);
  response.set_body(std::vector<unsigned char>(json_text.begin(), json_text.end()));
  response.headers().set_content_type("application/json");
  req.reply(response);
}
}  // namespace

LedgerServer::LedgerServer(int delay_ms) : delay_ms_(delay_ms) {}

LedgerServer::~LedgerServer() {
  if (listener_) {
    try {
      listener_->close().wait();
    } catch (...) {
    }
  }
}

nlohmann::json LedgerServer::AnswerFor(const std::string& method, const std::string& path, const std::string& key) {
  return {{"ok", true}, {"method", method}, {"path", path}, {"receipt", Sha256Hex(method + path + key).substr(0, 16)}};
}

bool LedgerServer::Start(int fixed_port) {
  listener_ = ListenOnLoopback(fixed_port, "", [this](http_listener& listener) {
    listener.support([this](http::http_request req) {
      std::string key;
      if (req.headers().has("Idempotency-Key")) key = req.headers()["Idempotency-Key"];
      std::string path = req.request_uri().path();
      std::string method = req.method();
      if (method == "GET" && path == "/_ledger") {
        nlohmann::json all = nlohmann::json::array();
        for (const auto& e : entries()) {
          all.push_back({{"method", e.method}, {"path", e.path}, {"key", e.idempotency_key}, {"body", e.body}});
        }
        Reply(req, all.dump());
        return;
      }
      if (path == "/echo") {
        // Answers with the Authorization header it got: a service that leaks a credential.
        std::string auth = req.headers().has("Authorization") ? req.headers()["Authorization"] : "";
        Reply(req, nlohmann::json{{"youSent", auth}}.dump());
        return;
      }
      if (path == "/redirect" || path == "/loop") {
        // /redirect?to=URL answers 302 to URL; /loop redirects to itself forever.
        auto query = web::uri::split_query(req.request_uri().query());
        std::string to = path == "/loop" ? "/loop" : web::uri::decode(query["to"]);
        http::http_response response(http::status_codes::Found);
        response.headers().add("Location", to);
        req.reply(response);
        return;
      }
      std::vector<unsigned char> raw = req.extract_vector().get();
      std::string body(raw.begin(), raw.end());
      std::string authorization = req.headers().has("Authorization") ? req.headers()["Authorization"] : "";
      std::string traceparent = req.headers().has("traceparent") ? req.headers()["traceparent"] : "";
      {
        std::lock_guard<std::mutex> lock(mu_);
        entries_.push_back({method, path, key, body, authorization, traceparent});
      }
      if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
      Reply(req, AnswerFor(method, path, key).dump());
    });
  }, &port_);
  return listener_ != nullptr;
}

std::vector<LedgerEntry> LedgerServer::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_;
}

}  // namespace carapace::testing
