// Server-sent events (text/event-stream), decoded incrementally: bytes go in as they
// arrive, the `data` of each complete event comes out (multi-line data joined by "\n").
// Used by the MCP client and the OpenAI-compatible model backend.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace carapace {

class SseDecoder {
 public:
  // An event (or a line) longer than `max_event_bytes` is not kept: the decoder stops and
  // says so (overflowed()), having held no more than that.
  explicit SseDecoder(size_t max_event_bytes = 0);  // 0: limits::kSseEventBytes
  // Events completed by these bytes, in order.
  std::vector<std::string> Feed(std::string_view bytes);
  // The stream ended: an event not yet closed by a blank line, if any.
  std::vector<std::string> Finish();
  // An event passed the limit; nothing more is decoded.
  bool overflowed() const { return overflowed_; }
  size_t max_event_bytes() const { return max_; }

 private:
  void Line(std::string_view line, std::vector<std::string>* out);
  void Overflow();
  size_t max_;
  std::string line_;
  std::string data_;
  bool has_data_ = false;
  bool overflowed_ = false;
};

// A whole body at once; nullopt when an event passes the limit.
std::optional<std::vector<std::string>> ParseSseData(const std::string& body, size_t max_event_bytes = 0);

}  // namespace carapace
