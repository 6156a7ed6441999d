// Moving whole runs between state directories, never their contents piecemeal: a fresh
// start (`carapace run --restart`) sets the old run aside, and a worker adopts the run an
// older operator laid out by spec hash (runs/<hash>/). Each move is one rename(2), so a
// crash leaves the run in one place or the other, whole.
#pragma once

#include <string>

#include "common/status.h"

namespace carapace {

// Moves the run in `state_dir` to a sibling directory "<state_dir>.previous-<run id, 12
// hex>" and returns that path; "" when `state_dir` holds no run (nothing to set aside).
// The old run stays readable (`carapace inspect`) and forkable there.
// Errors: kBusy when another process holds the state dir; as RunStore::Open.
Result<std::string> SetRunAside(const std::string& state_dir);

// When `state_dir` holds no run and `legacy_dir` holds state dirs (one per spec hash, as
// operators before revisions made them), moves the one whose last event is newest to
// `state_dir` and returns where it came from; "" when there is nothing to adopt. The others
// stay where they are.
Result<std::string> AdoptNewestRun(const std::string& legacy_dir, const std::string& state_dir);

}  // namespace carapace
