// Incremental text/event-stream decoding.
#include "common/sse.h"

#include "common/limits.h"

namespace carapace {

SseDecoder::SseDecoder(size_t max_event_bytes) : max_(max_event_bytes ? max_event_bytes : limits::kSseEventBytes) {}

void SseDecoder::Overflow() {
  overflowed_ = true;
  line_.clear();
  line_.shrink_to_fit();
  data_.clear();
  data_.shrink_to_fit();
  has_data_ = false;
}

void SseDecoder::Line(std::string_view line, std::vector<std::string>* out) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty()) {
    if (has_data_) out->push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
  } else if (line.substr(0, 5) == "data:") {
    std::string_view value = line.substr(5);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
    if (data_.size() + value.size() + 1 > max_) {
      Overflow();
      return;
    }
    if (has_data_) data_ += '\n';
    data_.append(value);
    has_data_ = true;
  }
  // Comments (":"), event, id and retry fields carry nothing we use.
}

std::vector<std::string> SseDecoder::Feed(std::string_view bytes) {
  std::vector<std::string> out;
  while (!bytes.empty() && !overflowed_) {
    size_t nl = bytes.find('\n');
    if (nl == std::string_view::npos) {
      if (line_.size() + bytes.size() > max_) {
        Overflow();
        break;
      }
      line_.append(bytes);
      break;
    }
    if (line_.empty()) {
      if (nl > max_) {
        Overflow();
        break;
      }
      Line(bytes.substr(0, nl), &out);
    } else {
      if (line_.size() + nl > max_) {
        Overflow();
        break;
      }
      line_.append(bytes.substr(0, nl));
      Line(line_, &out);
      line_.clear();
    }
    bytes.remove_prefix(nl + 1);
  }
  return out;
}

std::vector<std::string> SseDecoder::Finish() {
  std::vector<std::string> out;
  if (overflowed_) return out;
  if (!line_.empty()) {
    Line(line_, &out);
    line_.clear();
  }
  if (has_data_ && !overflowed_) out.push_back(std::move(data_));
  data_.clear();
  has_data_ = false;
  return out;
}

std::optional<std::vector<std::string>> ParseSseData(const std::string& body, size_t max_event_bytes) {
  SseDecoder d(max_event_bytes);
  std::vector<std::string> events = d.Feed(body);
  for (auto& e : d.Finish()) events.push_back(std::move(e));
  if (d.overflowed()) return std::nullopt;
  return events;
}

}  // namespace carapace
