// Moving an agent: export fences the source and writes one portable archive; restore (or
// import) starts the agent from an archive or a backup (docs/operations.md, "Move an agent").
//
// Two copies of one agent must never both act. The source is fenced first: a handed_off
// event, after which it finishes the action in progress and never starts another (no turn,
// message, decision, cron or resume), across restarts. The archive is written after that,
// so it holds the whole life up to the fence. The import lifts the fence on its own copy
// only (an `imported` event) and records a claim next to the archive, so the same archive
// imported a second time is refused; `fork` makes a new agent instead (a new run id, so new
// idempotency keys: it repeats nothing the original did or will do).
#pragma once

#include <string>

#include "common/status.h"
#include "worker/runtime/agent_archive.h"
#include "worker/store/run_store.h"

namespace carapace {

// In a restored state dir: where it came from, so that running the same restore again (an
// init container, on every pod start) knows it is done.
inline constexpr char kRestoredFromFile[] = "restored-from.json";
// Beside an archive once it was imported (not forked): who took it.
inline constexpr char kImportClaimSuffix[] = ".imported";

// Why a handed-off agent refuses a message, a decision or a control call.
std::string HandedOffRefusal(const std::string& handoff_id);

// Fences the run in `store` for a hand-off: appends handed_off, unless `current_handoff`
// (the run's handoff_id) says it is fenced already, and refuses external writes from then on
// (RunStore::RefuseExternalWrites). Returns the hand-off's id.
Result<std::string> RecordHandOff(RunStore* store, const std::string& current_handoff, const std::string& by);

// Writes an archive of the run in `store` (fenced by RecordHandOff) to `archive_path`: a
// point-in-time copy (RunStore::CopyConsistent) in a scratch dir inside the state dir,
// packed, and the scratch removed. `from` says where it was exported from, for people.
Result<ArchiveManifest> ExportRun(const RunStore& store, const std::string& from, const std::string& archive_path);

// Lifts the fence of an export that was never imported anywhere (the archive was lost):
// a handoff_revoked event. Errors: kFailedPrecondition when the run is not handed off.
Status RevokeHandOff(RunStore* store, const std::string& current_handoff, const std::string& by);

struct RestoreOptions {
  bool fork = false;              // a new agent (new run id); an archive may be forked any number of times
  std::string claim_as;           // who imports, recorded in the claim; empty: host and state dir
  bool skip_if_restored = false;  // `state_dir` already restored from `from`: nothing to do
};

struct RestoreResult {
  std::string kind;           // "backup" or "archive"
  std::string run_id;         // of the restored agent (new when forked)
  std::string source_run_id;  // of the copy
  std::string name, ns;
  uint64_t last_seq = 0;   // the newest event the copy held
  int64_t created_ms = 0;  // when the copy was made
  std::string handoff_id;  // an archive's hand-off
  bool already = false;    // skip_if_restored found it done
};

// Starts the agent in `state_dir` (new or empty) from `from`: a backup directory
// (carapace-backup.json) or an export archive. It is unpacked or copied beside `state_dir`,
// checked (it opens and holds what its manifest says), then renamed into place: `state_dir`
// holds the whole agent or stays empty. Errors: kNotFound/kInvalidArgument for `from`;
// kFailedPrecondition when `state_dir` holds something, or the archive was imported
// already by someone else (the message says by whom; `fork` starts a new agent instead);
// kCorruption when the copy is damaged.
Result<RestoreResult> RestoreAgent(const std::string& from, const std::string& state_dir,
                                   const RestoreOptions& options);

}  // namespace carapace
