// The server-sent events decoder (OpenAI-compatible streams, MCP), fed in pieces as the
// network would split them, with a small event limit so that the limit is reached too.
#include <cstdint>
#include <string_view>

#include "common/sse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t step = 1 + data[0] % 64;
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  carapace::SseDecoder decoder(4096);
  while (!rest.empty()) {
    const size_t n = step < rest.size() ? step : rest.size();
    (void)decoder.Feed(rest.substr(0, n));
    rest.remove_prefix(n);
  }
  (void)decoder.Finish();
  return 0;
}
