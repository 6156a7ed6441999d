// StatelessMcpServer on cpprestsdk's http_listener.
#include "tests/support/stateless_mcp_server.h"

#include <random>

#include <cpprest/http_listener.h>

#include "tests/support/loopback_listener.h"

namespace carapace::testing {

namespace http = web::http;
using web::http::experimental::listener::http_listener;

namespace {
void ReplyJson(const http::http_request& req, http::status_code status, const nlohmann::json& body) {
  std::string text = body.dump();
  http::http_response response(status);
  response.set_body(std::vector<unsigned char>(text.begin(), text.end()));
  response.headers().set_content_type("application/json");
  req.reply(response);
}

std::string Header(const http::http_request& req, const char* name) {
  std::string value;
  req.headers().match(name, value);
  return value;
}
}  // namespace

StatelessMcpServer::StatelessMcpServer() = default;

StatelessMcpServer::~StatelessMcpServer() {
  if (listener_) {
    try {
      listener_->close().wait();
    } catch (...) {
    }
  }
}

std::vector<McpRequestSeen> StatelessMcpServer::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return seen_;
}

nlohmann::json StatelessMcpServer::Handle(const nlohmann::json& req) const {
  const std::string method = req.value("method", "");
  const nlohmann::json params = req.value("params", nlohmann::json::object());
  auto result = [&](nlohmann::json r) { return nlohmann::json{{"jsonrpc", "2.0"}, {"id", req["id"]}, {"result", r}}; };
  auto error = [&](int code, const std::string& m) {
    return nlohmann::json{{"jsonrpc", "2.0"}, {"id", req["id"]}, {"error", {{"code", code}, {"message", m}}}};
  };
  if (method == "server/discover") {
    return result({{"supportedVersions", {"2026-07-28"}},
                   {"capabilities", {{"tools", nlohmann::json::object()}}},
                   {"serverInfo", {{"name", "stateless-double"}, {"version", "1"}}}});
  }
  if (method == "tools/list") {
    static const std::vector<std::string> names = {"add", "fail", "three", "four", "five"};
    size_t from = params.contains("cursor") ? std::stoul(params["cursor"].get<std::string>()) : 0;
    nlohmann::json tools = nlohmann::json::array();
    for (size_t i = from; i < names.size() && i < from + 2; ++i) {
      tools.push_back({{"name", names[i]},
                       {"description", "tool " + names[i]},
                       {"inputSchema", {{"type", "object"}}},
                       {"annotations", {{"readOnlyHint", names[i] == "add"}}}});
    }
    nlohmann::json r = {{"tools", tools}};
    if (from + 2 < names.size()) r["nextCursor"] = std::to_string(from + 2);
    return result(r);
  }
  if (method == "tools/call") {
    std::string name = params.value("name", "");
    const auto args = params.value("arguments", nlohmann::json::object());
    if (name == "add") {
      int sum = args.value("a", 0) + args.value("b", 0);
      return result({{"content", {{{"type", "text"}, {"text", std::to_string(sum)}}}},
                     {"structuredContent", {{"sum", sum}}}});
    }
    if (name == "fail") return result({{"content", {{{"type", "text"}, {"text", "it broke"}}}}, {"isError", true}});
    return error(-32602, "unknown tool " + name);
  }
  return error(-32601, "method not found: " + method);
}

bool StatelessMcpServer::Start() {
  listener_ = ListenOnLoopback(0, "/mcp", [this](http_listener& listener) {
    listener.support(http::methods::POST, [this](http::http_request req) {
      std::vector<unsigned char> raw = req.extract_vector().get();
      auto body = nlohmann::json::parse(std::string(raw.begin(), raw.end()), nullptr, false);
      McpRequestSeen seen;
      seen.method = body.is_object() ? body.value("method", "") : "";
      seen.mcp_method = Header(req, "Mcp-Method");
      seen.mcp_name = Header(req, "Mcp-Name");
      seen.protocol_header = Header(req, "MCP-Protocol-Version");
      seen.authorization = Header(req, "Authorization");
      seen.traceparent = Header(req, "traceparent");
      seen.has_meta = body.is_object() && body.contains("params") && body["params"].is_object() &&
                      body["params"].contains("_meta");
      {
        std::lock_guard<std::mutex> lock(mu_);
        seen_.push_back(seen);
      }
      if (!body.is_object() || seen.protocol_header.empty() || !seen.has_meta) {
        ReplyJson(req, http::status_codes::BadRequest,
                  {{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", {{"code", -32600}, {"message", "stateless request without protocol version"}}}});
        return;
      }
      ReplyJson(req, http::status_codes::OK, Handle(body));
    });
  }, &port_);
  return listener_ != nullptr;
}

}  // namespace carapace::testing
