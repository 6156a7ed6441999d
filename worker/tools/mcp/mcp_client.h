// McpClient: a Model Context Protocol client over streamable HTTP. It speaks the stateless
// revision 2026-07-28 (server/discover, per-request _meta, Mcp-Method/Mcp-Name headers)
// and falls back to the 2025 revisions (initialize, Mcp-Session-Id) when a server does not
// know server/discover. Responses may be JSON or a Server-Sent Events stream.
// Not thread-safe: one caller at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace carapace {

struct McpToolInfo {
  std::string name;
  std::string description;
  nlohmann::json input_schema = nlohmann::json::object();
  nlohmann::json annotations = nlohmann::json::object();  // readOnlyHint, idempotentHint, destructiveHint
};

// The JSON-RPC response among the messages a server sent for one request (a stream may
// carry notifications and progress first): the one whose id is `id` (any id when none was
// sent), else one with a null id; null when there is none. Exposed for the fuzz harness.
nlohmann::json PickJsonRpcResponse(const std::vector<std::string>& payloads, const std::optional<nlohmann::json>& id);

class McpClient {
 public:
  McpClient(std::string url, std::vector<std::pair<std::string, std::string>> headers, int timeout_seconds);

  // Finds out which revision the server speaks (and opens a session for 2025 servers).
  // Errors: kUnavailable when the server cannot be reached, kFailedPrecondition when it
  // answers but not as an MCP server.
  Status Connect();
  // Every tool, following nextCursor pages.
  Result<std::vector<McpToolInfo>> ListTools();
  // The raw `result` of tools/call ({content, structuredContent, isError}). `traceparent`,
  // when set, goes with the request (the traceparent header) so the trace continues there.
  Result<nlohmann::json> CallTool(const std::string& name, const nlohmann::json& arguments,
                                  const std::string& traceparent = "");

  // "2026-07-28", or the 2025 revision the server chose. Empty before Connect.
  const std::string& protocol_version() const { return protocol_version_; }
  bool stateless() const { return stateless_; }

  static constexpr const char* kStatelessVersion = "2026-07-28";
  static constexpr const char* kLegacyVersion = "2025-11-25";

 private:
  struct Reply {
    int http_status = 0;
    std::string session_id;
    nlohmann::json message;  // the JSON-RPC response with our id; null when there was none
  };
  Result<Reply> Post(const nlohmann::json& message, const std::string& method, const std::string& name,
                     const std::string& traceparent = "");
  Result<nlohmann::json> Request(const std::string& method, nlohmann::json params, const std::string& name = "",
                                 const std::string& traceparent = "");
  Status Initialize();

  std::string url_;
  std::vector<std::pair<std::string, std::string>> headers_;
  int timeout_seconds_;
  std::string protocol_version_;
  std::string session_id_;
  bool stateless_ = false;
  int64_t next_id_ = 1;
};

}  // namespace carapace
