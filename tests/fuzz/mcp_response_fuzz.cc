// What an MCP server answers over streamable HTTP: a JSON body or a server-sent events
// stream, from which the JSON-RPC response to request 1 is picked as the client picks it.
#include <cstdint>
#include <string>

#include "common/sse.h"
#include "worker/tools/mcp/mcp_client.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  (void)carapace::PickJsonRpcResponse({body}, nlohmann::json(1));
  if (auto events = carapace::ParseSseData(body, 4096)) {
    (void)carapace::PickJsonRpcResponse(*events, nlohmann::json(1));
    (void)carapace::PickJsonRpcResponse(*events, std::nullopt);
  }
  return 0;
}
