// spec.retention: how much of a long-lived agent's history stays on its volume
// (docs/context.md, "Retention").
//
// What may go is only what a checkpoint and a compaction summary cover. The plan picks the
// newest checkpoint C that is old enough (its last event past maxAgeDays, or more than
// maxEvents events behind the newest) and removes:
//   - events before C's last event (that event stays, so the log is never empty and its
//     numbering goes on);
//   - checkpoints of steps before C's;
//   - transcript messages before C's compacted point (the summary C holds covers them);
//   - artifacts that only those messages refer to.
// Memory entries are never touched. The current state needs nothing removed: it starts from
// the newest checkpoint (C or later) and the messages from its compacted point (C's or
// later); a waiting call's events come after the newest checkpoint. Fork can still start
// from C's step and every later one.
#pragma once

#include <cstdint>
#include <optional>

#include "common/agentrun/spec.h"
#include "common/status.h"
#include "worker/store/run_store.h"

namespace carapace {

// What retention removes from `store` at wall-clock `now_ms`; empty when nothing (more) may
// go. Reads a handful of checkpoints (a binary search over steps) and the transcript messages
// to be removed (for the artifacts they refer to).
Result<std::optional<HistoryTrim>> PlanHistoryTrim(const RunStore& store, const RetentionSpec& retention,
                                                   int64_t now_ms);

// What retention removed last, as its history_trimmed event recorded it in the store's
// metadata (meta_key::kHistoryTrimmed); empty when it never removed anything. For `inspect`
// and fork, which say what can no longer be reached.
struct RemovedHistory {
  uint64_t events_before = 0;
  int64_t checkpoints_before = 0;
  int64_t messages_before = 0;
};
Result<std::optional<RemovedHistory>> LastRemovedHistory(const RunStore& store);

}  // namespace carapace
