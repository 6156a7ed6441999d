// Server-sent events (text/event-stream), decoded incrementally: bytes go in as they
// arrive, the `data` of each complete event comes out (multi-line data joined by "\n").
// Used by the MCP client and the OpenAI-compatible model backend.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace carapace {

class SseDecoder {
 public:
  // Events completed by these bytes, in order.
  std::vector<std::string> Feed(std::string_view bytes);
  // The stream ended: an event not yet closed by a blank line, if any.
  std::vector<std::string> Finish();

 private:
  void Line(std::string_view line, std::vector<std::string>* out);
  std::string line_;
  std::string data_;
  bool has_data_ = false;
};

// A whole body at once.
std::vector<std::string> ParseSseData(const std::string& body);

}  // namespace carapace
