// Incremental text/event-stream decoding.
#include "common/sse.h"

namespace carapace {

void SseDecoder::Line(std::string_view line, std::vector<std::string>* out) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty()) {
    if (has_data_) out->push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
  } else if (line.substr(0, 5) == "data:") {
    std::string_view value = line.substr(5);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
    if (has_data_) data_ += '\n';
    data_.append(value);
    has_data_ = true;
  }
  // Comments (":"), event, id and retry fields carry nothing we use.
}

std::vector<std::string> SseDecoder::Feed(std::string_view bytes) {
  std::vector<std::string> out;
  while (!bytes.empty()) {
    size_t nl = bytes.find('\n');
    if (nl == std::string_view::npos) {
      line_.append(bytes);
      break;
    }
    if (line_.empty()) {
      Line(bytes.substr(0, nl), &out);
    } else {
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
  if (!line_.empty()) {
    Line(line_, &out);
    line_.clear();
  }
  if (has_data_) out.push_back(std::move(data_));
  data_.clear();
  has_data_ = false;
  return out;
}

std::vector<std::string> ParseSseData(const std::string& body) {
  SseDecoder d;
  std::vector<std::string> events = d.Feed(body);
  for (auto& e : d.Finish()) events.push_back(std::move(e));
  return events;
}

}  // namespace carapace
