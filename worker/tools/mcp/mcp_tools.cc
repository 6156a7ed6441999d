// McpTool: one tool of an MCP server.
#include "worker/tools/mcp/mcp_tools.h"

#include <algorithm>
#include <cctype>
#include <memory>
#include <regex>

#include "worker/tools/header_values.h"
#include "worker/tools/mcp/mcp_client.h"

namespace carapace {

namespace {

class McpTool : public Tool {
 public:
  McpTool(std::shared_ptr<McpClient> client, McpToolInfo info, std::string exposed, bool approval)
      : client_(std::move(client)), info_(std::move(info)), exposed_(std::move(exposed)), approval_(approval) {}

  ToolSchema Schema() const override { return {exposed_, info_.description, info_.input_schema}; }

  Effect DefaultEffect() const override {
    if (info_.annotations.value("readOnlyHint", false)) return Effect::kReadOnly;
    if (info_.annotations.value("idempotentHint", false)) return Effect::kIdempotent;
    return Effect::kSideEffecting;
  }

  bool RequiresApproval() const override { return approval_; }
  bool Rename(const std::string& name) override {
    exposed_ = name;
    return true;
  }

  ToolResult Call(const nlohmann::json& arguments, const ToolContext& context) override {
    auto result =
        client_->CallTool(info_.name, arguments.is_object() ? arguments : nlohmann::json::object(), context.traceparent);
    if (!result.ok()) return ToolResult::Fail(result.status().message());
    nlohmann::json out = {{"content", result->value("content", nlohmann::json::array())}};
    if (result->contains("structuredContent")) out["structuredContent"] = (*result)["structuredContent"];
    if (result->value("isError", false)) {
      std::string text;
      for (const auto& c : out["content"]) {
        if (c.is_object() && c.value("type", "") == "text") text += (text.empty() ? "" : "\n") + c.value("text", "");
      }
      ToolResult r = ToolResult::Fail(text.empty() ? "the MCP tool reported an error" : text);
      r.output = out;
      return r;
    }
    return ToolResult::Ok(out);
  }

 private:
  std::shared_ptr<McpClient> client_;
  McpToolInfo info_;
  std::string exposed_;
  bool approval_;
};

// Tool names the model may see: [A-Za-z0-9_-], as every provider accepts.
std::string SafeName(const std::string& name) {
  std::string out;
  for (char c : name) out.push_back(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' ? c : '_');
  return out.substr(0, 64);
}

}  // namespace

Result<ToolList> CreateMcpTools(const ToolSpec& spec, const ToolEnvironment&) {
  const std::string where = "tool \"" + spec.name + "\"";
  CARAPACE_ASSIGN_OR_RETURN(LoadedHeaders headers, LoadHeaders(spec.mcp.headers, where + ": mcp.headers"));
  auto client = std::make_shared<McpClient>(spec.mcp.url, std::move(headers.values),
                                            static_cast<int>(spec.mcp.timeout_seconds));
  CARAPACE_RETURN_IF_ERROR(client->Connect().WithContext(where));
  CARAPACE_ASSIGN_OR_RETURN(auto infos, client->ListTools());
  ToolList tools;
  for (auto& info : infos) {
    bool approval = std::find(spec.mcp.require_approval_for.begin(), spec.mcp.require_approval_for.end(), info.name) !=
                    spec.mcp.require_approval_for.end();
    std::string exposed = SafeName(info.name);
    tools.push_back(std::make_unique<McpTool>(client, std::move(info), exposed, approval));
  }
  return tools;
}

}  // namespace carapace
