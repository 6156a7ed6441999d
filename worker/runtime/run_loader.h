// Loading a run back from its store: the newest checkpoint, the transcript it covers, and
// every event after it, folded with Apply(). This is all that recovery after a crash is.
#pragma once

#include <optional>

#include "common/status.h"
#include "worker/runtime/run_state.h"
#include "worker/store/run_store.h"

namespace carapace {

// The identity of the run a state dir holds, kept in its meta column family.
struct RunIdentity {
  std::string run_id;
  std::string name;
  std::string ns;
  std::string spec_hash;
  std::string spec_json;
};

namespace meta_key {
inline constexpr const char* kRunId = "runId";
inline constexpr const char* kName = "name";
inline constexpr const char* kNamespace = "namespace";
inline constexpr const char* kSpecHash = "specHash";
inline constexpr const char* kSpec = "spec";
// The last removal by spec.retention: the history_trimmed event's data (JSON).
inline constexpr const char* kHistoryTrimmed = "historyTrimmed";
// "1" in a store restored from a backup or an archive that no AgentRun has run yet: the first
// one to run it may carry another name or namespace (an agent moved between namespaces or
// clusters) and becomes its name. Empty once taken.
inline constexpr const char* kAwaitingHome = "awaitingHome";
}  // namespace meta_key

// Empty when no run has been started in the store yet.
Result<std::optional<RunIdentity>> LoadRunIdentity(const RunStore& store);

// Errors: kCorruption when the checkpoint, transcript or an event cannot be read back.
Result<RunState> LoadRunState(const RunStore& store);

// Reads every event in order (for inspect and tests).
Result<std::vector<Event>> ReadAllEvents(const RunStore& store);

}  // namespace carapace
