// OpenAI-compatible chat-completion stream chunks: each line of the input is the data of one
// server-sent event, handled as the backend handles it (text, tool-call fragments, usage,
// finish reason, an error sent inside the stream), then the calls are assembled.
#include <cstdint>
#include <string>
#include <string_view>

#include "worker/model/openai_backend.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  carapace::ChatStream out;
  carapace::OpenAiStreamChunks chunks(&out);
  while (!rest.empty() && !chunks.done) {
    const size_t nl = rest.find('\n');
    chunks.Handle(std::string(rest.substr(0, nl)));
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }
  for (auto& call : chunks.fragments.Finish()) out.Call(std::move(call));
  return 0;
}
