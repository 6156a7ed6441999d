// The mcp kind: each tool an MCP server lists becomes a tool of the run, with its schema,
// and an effect class from its annotations (readOnlyHint, idempotentHint; otherwise
// side-effecting) unless the spec sets one. When two servers expose the same tool name,
// the runner prefixes both with their spec entry's name.
#pragma once

#include "worker/tools/tool.h"

namespace carapace {

// The ToolSetFactory registered for kind "mcp": connects, lists the tools.
// Errors: kUnavailable / kFailedPrecondition naming the server when it cannot be used.
Result<ToolList> CreateMcpTools(const ToolSpec& spec, const ToolEnvironment& env);

}  // namespace carapace
