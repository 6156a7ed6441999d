// The tool kind registry.
#include "worker/tools/http_tool.h"
#include "worker/tools/tool.h"
#include "worker/tools/mcp/mcp_tools.h"
#include "worker/tools/memory/memory_tools.h"
#include "worker/tools/workspace_tool.h"

namespace carapace {

void ToolRegistry::Register(const std::string& kind, ToolFactory factory) {
  factories_[kind] = [factory = std::move(factory)](const ToolSpec& spec, const ToolEnvironment& env) -> Result<ToolList> {
    CARAPACE_ASSIGN_OR_RETURN(auto tool, factory(spec, env));
    ToolList list;
    list.push_back(std::move(tool));
    return list;
  };
}

void ToolRegistry::RegisterSet(const std::string& kind, ToolSetFactory factory) { factories_[kind] = std::move(factory); }

Result<ToolList> ToolRegistry::Create(const ToolSpec& spec, const ToolEnvironment& env) const {
  auto it = factories_.find(spec.kind);
  if (it == factories_.end()) {
    return InvalidArgument("tool \"" + spec.name + "\": unknown kind \"" + spec.kind + "\"");
  }
  return it->second(spec, env);
}

void RegisterBuiltinTools(ToolRegistry* registry) {
  registry->Register("workspace", [](const ToolSpec& spec, const ToolEnvironment& env) -> Result<std::unique_ptr<Tool>> {
    return std::unique_ptr<Tool>(new WorkspaceTool(spec.name, env.workspace_dir));
  });
  registry->Register("http", [](const ToolSpec& spec, const ToolEnvironment&) -> Result<std::unique_ptr<Tool>> {
    return HttpTool::Create(spec.name, spec.http);
  });
  registry->RegisterSet("memory", CreateMemoryTools);
  registry->RegisterSet("mcp", CreateMcpTools);
}

}  // namespace carapace
