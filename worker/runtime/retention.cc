// Planning what spec.retention removes: the newest old-enough checkpoint, found by binary
// search over steps (checkpoints, their last events and those events' times all grow with
// the step).
#include "worker/runtime/retention.h"

#include <nlohmann/json.hpp>

#include "worker/runtime/event.h"
#include "worker/runtime/run_loader.h"

namespace carapace {
namespace {

struct CheckpointMark {
  int64_t step = 0;
  uint64_t last_seq = 0;
  int64_t compacted_to = 0;
  int64_t ts_ms = 0;  // of its last event
};

// The newest checkpoint at or before `step`, with what retention needs of it.
Result<std::optional<CheckpointMark>> MarkAtOrBefore(const RunStore& store, int64_t step) {
  CARAPACE_ASSIGN_OR_RETURN(auto cp, store.LatestCheckpoint(step));
  if (!cp) return std::optional<CheckpointMark>();
  nlohmann::json j = nlohmann::json::parse(cp->second, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Corruption("checkpoint of step " + std::to_string(cp->first) + " is not valid JSON");
  CheckpointMark m;
  m.step = cp->first;
  m.last_seq = j.value("lastSeq", uint64_t{0});
  m.compacted_to = j.value("context", nlohmann::json::object()).value("compactedTo", int64_t{0});
  CARAPACE_ASSIGN_OR_RETURN(auto raw, store.GetEvent(m.last_seq));
  if (!raw) return std::optional<CheckpointMark>();  // its event is gone: not a candidate
  CARAPACE_ASSIGN_OR_RETURN(Event e, Event::Decode(m.last_seq, *raw));
  m.ts_ms = e.ts_ms;
  return std::optional<CheckpointMark>(m);
}

// The artifact a transcript message refers to (a tool result stored whole as an artifact).
std::optional<std::string> ArtifactOf(std::string_view message) {
  nlohmann::json m = nlohmann::json::parse(message, nullptr, false);
  if (!m.is_object() || m.value("role", "") != "tool" || !m.contains("content") || !m["content"].is_string()) {
    return std::nullopt;
  }
  nlohmann::json content = nlohmann::json::parse(m["content"].get<std::string>(), nullptr, false);
  if (!content.is_object() || !content.contains("output") || !content["output"].is_object()) return std::nullopt;
  const nlohmann::json& out = content["output"];
  if (!out.value("truncated", false) || !out.contains("artifact") || !out["artifact"].is_string()) return std::nullopt;
  return out["artifact"].get<std::string>();
}

}  // namespace

Result<std::optional<HistoryTrim>> PlanHistoryTrim(const RunStore& store, const RetentionSpec& retention,
                                                   int64_t now_ms) {
  const uint64_t last_seq = store.last_seq();
  auto old_enough = [&](const CheckpointMark& m) {
    const bool by_count = retention.max_events && last_seq > m.last_seq &&
                          last_seq - m.last_seq >= static_cast<uint64_t>(*retention.max_events);
    const bool by_age = retention.max_age_days && m.ts_ms < now_ms - *retention.max_age_days * 24 * 3600 * 1000;
    return by_count || by_age;
  };
  CARAPACE_ASSIGN_OR_RETURN(auto first_step, store.FirstCheckpointStep());
  CARAPACE_ASSIGN_OR_RETURN(auto latest, store.LatestCheckpoint());
  if (!first_step || !latest) return std::optional<HistoryTrim>();
  // The newest old-enough checkpoint: old_enough holds for a prefix of the steps.
  std::optional<CheckpointMark> best;
  int64_t lo = *first_step, hi = latest->first;
  while (lo <= hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    CARAPACE_ASSIGN_OR_RETURN(auto mark, MarkAtOrBefore(store, mid));
    if (mark && old_enough(*mark)) {
      best = mark;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  if (!best || best->step <= *first_step) return std::optional<HistoryTrim>();
  HistoryTrim trim;
  trim.events_before = best->last_seq;
  trim.checkpoints_before = best->step;
  trim.transcript_before = best->compacted_to;
  CARAPACE_RETURN_IF_ERROR(store.ForEachTranscript(0, [&](int64_t i, std::string_view m) {
    if (i >= trim.transcript_before) return false;
    if (auto key = ArtifactOf(m)) trim.artifacts.push_back(*key);
    return true;
  }));
  return std::optional<HistoryTrim>(std::move(trim));
}

Result<std::optional<RemovedHistory>> LastRemovedHistory(const RunStore& store) {
  CARAPACE_ASSIGN_OR_RETURN(auto raw, store.GetMeta(meta_key::kHistoryTrimmed));
  if (!raw) return std::optional<RemovedHistory>();
  const nlohmann::json t = nlohmann::json::parse(*raw, nullptr, false);
  if (!t.is_object()) return Corruption("the store's record of removed history is not a JSON object");
  RemovedHistory r;
  r.events_before = t.value("eventsBefore", uint64_t{0});
  r.checkpoints_before = t.value("checkpointsBefore", int64_t{0});
  r.messages_before = t.value("messagesBefore", int64_t{0});
  return std::optional<RemovedHistory>(r);
}

}  // namespace carapace
