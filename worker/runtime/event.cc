// Event encoding.
#include "worker/runtime/event.h"

#include "common/time.h"

namespace carapace {

nlohmann::json Event::ToJson() const {
  return {{"seq", seq}, {"ts", FormatRfc3339Millis(ts_ms)}, {"type", type}, {"step", step}, {"data", data}};
}

std::string Event::Encode() const {
  nlohmann::json j = {{"ts", ts_ms}, {"type", type}, {"step", step}, {"data", data}};
  return j.dump();
}

Result<Event> Event::Decode(uint64_t seq, std::string_view value) {
  nlohmann::json j = nlohmann::json::parse(value, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    return Corruption("event " + std::to_string(seq) + " is not a valid event record");
  }
  Event e;
  e.seq = seq;
  e.ts_ms = j.value("ts", int64_t{0});
  e.type = j["type"].get<std::string>();
  e.step = j.value("step", int64_t{0});
  e.data = j.value("data", nlohmann::json::object());
  return e;
}

}  // namespace carapace
