// Backups of a live agent and restoring them (docs/operations.md, "Back up and restore").
//
// A backup is a directory laid out as a state dir (store/, workspace/) plus a manifest,
// carapace-backup.json, written last: a directory without it is a backup cut short and is
// never restored. The store in it is a point-in-time copy (RunStore::CopyConsistent) taken
// while the agent runs on; the manifest names the run and the last event the copy holds.
// Restoring one is RestoreAgent's (worker/runtime/handoff.h), as for an export's archive.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "worker/store/run_store.h"

namespace carapace {

inline constexpr char kBackupManifest[] = "carapace-backup.json";

struct BackupInfo {
  std::string dir;
  std::string run_id, name, ns, spec_hash;
  uint64_t last_seq = 0;      // the newest event in the backup
  int64_t created_ms = 0;     // Unix ms
  uint64_t bytes = 0;         // store and workspace, as copied
  int64_t duration_ms = 0;    // to make it
};

// Backs the run in `store` up into `dest_dir` (new or empty). Errors: kFailedPrecondition
// when dest is not empty or the store holds no run yet; the copy's (CopyConsistent).
Result<BackupInfo> BackupRun(const RunStore& store, const std::string& dest_dir);

// A backup's manifest. Errors: kNotFound when `dir` has none (not a backup, or one cut
// short), kCorruption when it cannot be read.
Result<BackupInfo> ReadBackup(const std::string& dir);

// A backup's name on the agent's volume: 1 to 63 of [a-z0-9._-], starting with a letter or
// digit. Errors: kInvalidArgument naming the rule.
Status ValidateBackupName(const std::string& name);
// Where a worker keeps backup `name`: next to its state dir, in backups/ on the same volume.
std::string BackupDirFor(const std::string& state_dir, const std::string& name);

}  // namespace carapace
