// A small MCP server of the stateless 2026-07-28 revision, for tests: server/discover,
// tools/list in pages of two, tools/call of "add" (structured result) and "fail" (isError).
// It refuses a request without MCP-Protocol-Version or _meta, and records what it got.
// The reference server (server-everything) speaks the 2025 revisions only. Test support.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace web::http::experimental::listener {
class http_listener;
}

namespace carapace::testing {

struct McpRequestSeen {
  std::string method;           // JSON-RPC method
  std::string mcp_method;       // Mcp-Method header
  std::string mcp_name;         // Mcp-Name header
  std::string protocol_header;  // MCP-Protocol-Version header
  std::string authorization;
  std::string traceparent;  // the traceparent header, if any
  bool has_meta = false;
};

class StatelessMcpServer {
 public:
  StatelessMcpServer();
  ~StatelessMcpServer();
  bool Start();
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/mcp"; }
  std::vector<McpRequestSeen> requests() const;

 private:
  nlohmann::json Handle(const nlohmann::json& request) const;
  int port_ = 0;
  std::unique_ptr<web::http::experimental::listener::http_listener> listener_;
  mutable std::mutex mu_;
  std::vector<McpRequestSeen> seen_;
};

}  // namespace carapace::testing
