// The workspace tool: read, write, list and delete files inside the run's workspace folder.
// Paths are relative to the workspace; `..`, absolute paths and symlinks that lead outside
// it are refused.
#pragma once

#include <string>

#include "worker/tools/tool.h"

namespace carapace {

class WorkspaceTool : public Tool {
 public:
  WorkspaceTool(std::string name, std::string root);

  ToolSchema Schema() const override;
  // Writing the same content to the same path twice leaves the same result: idempotent.
  Effect DefaultEffect() const override { return Effect::kIdempotent; }
  // arguments: {op: read|write|list|delete, path, content (write)}.
  ToolResult Call(const nlohmann::json& arguments, const ToolContext& context) override;

  // The absolute path `relative` names inside the workspace, or kPermissionDenied /
  // kInvalidArgument saying why it is refused. Exposed for tests.
  Result<std::string> Resolve(const std::string& relative) const;

 private:
  std::string name_;
  std::string root_;  // canonical
  static constexpr size_t kMaxFileBytes = 1 << 20;
};

}  // namespace carapace
