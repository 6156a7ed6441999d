// The probe and metrics port's request parsing: any bytes as a request head, read with the
// server's limits and with small ones.
#include <cstdint>
#include <string_view>

#include "common/http_endpoints.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view head(reinterpret_cast<const char*>(data), size);
  (void)carapace::ParseRequestHead(head, carapace::HttpLimits{});
  carapace::HttpLimits small;
  small.max_request_line = 32;
  small.max_header_bytes = 256;
  small.max_headers = 4;
  (void)carapace::ParseRequestHead(head, small);
  return 0;
}
