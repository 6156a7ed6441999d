// MCP over streamable HTTP with cpprestsdk.
#include "worker/tools/mcp/mcp_client.h"

#include <cpprest/containerstream.h>
#include <cpprest/http_client.h>
#include <cpprest/uri.h>

#include "common/http_body.h"
#include "common/json_text.h"
#include "common/limits.h"
#include "common/sse.h"
#include "common/text.h"

namespace carapace {

namespace http = web::http;

McpClient::McpClient(std::string url, std::vector<std::pair<std::string, std::string>> headers, int timeout_seconds)
    : url_(std::move(url)), headers_(std::move(headers)), timeout_seconds_(timeout_seconds) {}

Result<McpClient::Reply> McpClient::Post(const nlohmann::json& message, const std::string& method,
                                         const std::string& name, const std::string& traceparent) {
  http::client::http_client_config config;
  config.set_timeout(std::chrono::seconds(timeout_seconds_));
  config.set_max_redirects(0);
  http::http_request request(http::methods::POST);
  for (const auto& [k, v] : headers_) {
    // The worker's trace context replaces a configured one (two would be joined into one
    // invalid value).
    const std::string lower = AsciiLower(k);
    if (!traceparent.empty() && (lower == "traceparent" || lower == "tracestate")) continue;
    request.headers().add(k, v);
  }
  request.headers().add("Accept", "application/json, text/event-stream");
  if (!traceparent.empty()) request.headers().add("traceparent", traceparent);
  if (stateless_ || method == "server/discover") {
    request.headers().add("MCP-Protocol-Version", kStatelessVersion);
    request.headers().add("Mcp-Method", method);
    if (!name.empty()) request.headers().add("Mcp-Name", name);
  } else {
    if (!protocol_version_.empty()) request.headers().add("MCP-Protocol-Version", protocol_version_);
    if (!session_id_.empty()) request.headers().add("Mcp-Session-Id", session_id_);
  }
  std::string body = message.dump();
  request.set_body(std::vector<unsigned char>(body.begin(), body.end()));
  request.headers().set_content_type("application/json");
  pplx::cancellation_token_source cancel;
  try {
    http::client::http_client client(url_, config);
    http::http_response response = client.request(request, cancel.get_token()).get();
    auto body = ReadBody(response, limits::kMcpReplyBytes, &cancel);
    if (!body.ok()) return ResourceExhausted("MCP server " + url_ + " answered " + method + ": " + body.status().message());
    const std::string& text = *body;
    Reply reply;
    reply.http_status = response.status_code();
    if (response.headers().has("Mcp-Session-Id")) reply.session_id = response.headers()["Mcp-Session-Id"];
    std::vector<std::string> payloads;
    if (response.headers().content_type().find("text/event-stream") != std::string::npos) {
      auto events = ParseSseData(text);
      if (!events) {
        return ResourceExhausted("MCP server " + url_ + " answered " + method + " with an event over the limit of " +
                                 std::to_string(limits::kSseEventBytes) + " bytes");
      }
      payloads = std::move(*events);
    } else if (!text.empty()) {
      payloads.push_back(text);
    }
    reply.message = PickJsonRpcResponse(
        payloads, message.contains("id") ? std::optional<nlohmann::json>(message["id"]) : std::nullopt);
    return reply;
  } catch (const std::exception& e) {
    cancel.cancel();  // no continuation of the failed request outlives the call
    return Unavailable("MCP server " + url_ + " did not answer " + method + ": " + e.what());
  }
}

nlohmann::json PickJsonRpcResponse(const std::vector<std::string>& payloads, const std::optional<nlohmann::json>& id) {
  nlohmann::json picked;
  for (const auto& p : payloads) {
    const nlohmann::json j = ParsePeerJson(p);
    // The stream may carry notifications and progress before the response: skip them.
    if (!j.is_object() || !(j.contains("result") || j.contains("error"))) continue;
    const nlohmann::json their_id = j.contains("id") ? j["id"] : nlohmann::json();
    if (id && their_id != *id && !their_id.is_null()) continue;
    picked = j;
    if (!their_id.is_null()) break;  // the answer to this request: nothing after it matters
  }
  return picked;
}

Result<nlohmann::json> McpClient::Request(const std::string& method, nlohmann::json params, const std::string& name,
                                          const std::string& traceparent) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (stateless_) {
      params["_meta"] = {{"io.modelcontextprotocol/protocolVersion", kStatelessVersion},
                         {"io.modelcontextprotocol/clientCapabilities", nlohmann::json::object()},
                         {"io.modelcontextprotocol/clientInfo", {{"name", "carapace"}, {"version", "0.1.0"}}}};
    }
    nlohmann::json message = {{"jsonrpc", "2.0"}, {"id", next_id_++}, {"method", method}, {"params", params}};
    CARAPACE_ASSIGN_OR_RETURN(Reply reply, Post(message, method, name, traceparent));
    // A 2025 server forgets sessions (restart, expiry) and answers 404: open a new one, once.
    if (reply.http_status == 404 && !stateless_ && !session_id_.empty() && attempt == 0) {
      CARAPACE_RETURN_IF_ERROR(Initialize());
      continue;
    }
    if (reply.message.is_null()) {
      return FailedPrecondition("MCP server " + url_ + " answered " + method + " with HTTP " +
                                std::to_string(reply.http_status) + " and no JSON-RPC response");
    }
    if (reply.message.contains("error")) {
      const auto& err = reply.message["error"];
      return FailedPrecondition("MCP " + method + " failed: " + err.value("message", std::string("error")) + " (code " +
                                std::to_string(err.value("code", 0)) + ")");
    }
    return reply.message["result"];
  }
  return Unavailable("MCP server " + url_ + " lost its session twice");
}

Status McpClient::Initialize() {
  stateless_ = false;
  protocol_version_.clear();
  session_id_.clear();
  nlohmann::json message = {{"jsonrpc", "2.0"},
                            {"id", next_id_++},
                            {"method", "initialize"},
                            {"params",
                             {{"protocolVersion", kLegacyVersion},
                              {"capabilities", nlohmann::json::object()},
                              {"clientInfo", {{"name", "carapace"}, {"version", "0.1.0"}}}}}};
  CARAPACE_ASSIGN_OR_RETURN(Reply reply, Post(message, "initialize", ""));
  if (reply.message.is_null() || !reply.message.contains("result")) {
    return FailedPrecondition("MCP server " + url_ + " did not accept initialize (HTTP " +
                              std::to_string(reply.http_status) + ")");
  }
  protocol_version_ = reply.message["result"].value("protocolVersion", std::string(kLegacyVersion));
  session_id_ = reply.session_id;
  nlohmann::json initialized = {{"jsonrpc", "2.0"}, {"method", "notifications/initialized"}};
  CARAPACE_ASSIGN_OR_RETURN(Reply ack, Post(initialized, "notifications/initialized", ""));
  if (ack.http_status >= 400) {
    return FailedPrecondition("MCP server " + url_ + " refused notifications/initialized (HTTP " +
                              std::to_string(ack.http_status) + ")");
  }
  return Status::Ok();
}

Status McpClient::Connect() {
  // The current revision first: a stateless server answers server/discover; an older one
  // answers with an error (or HTTP 4xx), and gets the 2025 handshake instead.
  nlohmann::json discover = {
      {"jsonrpc", "2.0"},
      {"id", next_id_++},
      {"method", "server/discover"},
      {"params",
       {{"_meta", {{"io.modelcontextprotocol/protocolVersion", kStatelessVersion},
                   {"io.modelcontextprotocol/clientCapabilities", nlohmann::json::object()}}}}}};
  CARAPACE_ASSIGN_OR_RETURN(Reply reply, Post(discover, "server/discover", ""));
  if (reply.http_status < 400 && reply.message.contains("result")) {
    const auto& versions = reply.message["result"].value("supportedVersions", nlohmann::json::array());
    for (const auto& v : versions) {
      if (v == kStatelessVersion) {
        stateless_ = true;
        protocol_version_ = kStatelessVersion;
        return Status::Ok();
      }
    }
  }
  return Initialize();
}

Result<std::vector<McpToolInfo>> McpClient::ListTools() {
  std::vector<McpToolInfo> tools;
  std::string cursor;
  for (int page = 0; page < 100; ++page) {
    nlohmann::json params = nlohmann::json::object();
    if (!cursor.empty()) params["cursor"] = cursor;
    CARAPACE_ASSIGN_OR_RETURN(nlohmann::json result, Request("tools/list", params));
    for (const auto& t : result.value("tools", nlohmann::json::array())) {
      if (!t.is_object() || !t.contains("name") || !t["name"].is_string()) continue;
      McpToolInfo info;
      info.name = t["name"].get<std::string>();
      info.description = t.value("description", "");
      info.input_schema = t.value("inputSchema", nlohmann::json::object());
      info.annotations = t.value("annotations", nlohmann::json::object());
      tools.push_back(std::move(info));
    }
    if (!result.contains("nextCursor") || !result["nextCursor"].is_string()) return tools;
    cursor = result["nextCursor"].get<std::string>();
  }
  return FailedPrecondition("MCP server " + url_ + " kept paginating tools/list past 100 pages");
}

Result<nlohmann::json> McpClient::CallTool(const std::string& name, const nlohmann::json& arguments,
                                           const std::string& traceparent) {
  return Request("tools/call", {{"name", name}, {"arguments", arguments}}, name, traceparent);
}

}  // namespace carapace
