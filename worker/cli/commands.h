// The `carapace` CLI's commands. Each returns the process exit code (see ExitCode).
#pragma once

#include <string>
#include <vector>

namespace carapace::cli {

enum ExitCode {
  kExitSucceeded = 0,
  kExitError = 1,           // I/O failure or a damaged store
  kExitBadInput = 2,        // a bad manifest, flag or state dir; the message says which
  kExitBudgetExhausted = 3,
  kExitFailed = 4,
  kExitWaiting = 5,         // waiting for approval: see `carapace approve`
  // Waiting for a time: no model answered for recovery.modelUnavailableSeconds, or a
  // period budget defers work. The state is kept; `carapace run` again resumes the turn.
  kExitModelUnavailable = 6,
};

// `restart`: set the run in `state_dir` aside (kept as a sibling directory) and start a
// fresh one from the goal.
int Run(const std::string& file, const std::string& state_dir, bool json, bool restart = false);
int Inspect(const std::string& state_dir, bool json);
int Approve(const std::string& state_dir, const std::string& call_id, bool deny);
// Folds older messages into the summary now (the model named in FILE writes it).
int Compact(const std::string& file, const std::string& state_dir);
int Fork(const std::string& state_dir, long long from_step, const std::string& to_dir);
// A backup of a state dir no process holds (a running worker's: `backup --worker`).
int Backup(const std::string& state_dir, const std::string& to_dir);
// Starts an agent in a new state dir from a backup directory or an export's archive
// (RestoreAgent, worker/runtime/handoff.h): `import` and `restore` are this one command.
int Restore(const std::string& from, const std::string& state_dir, bool fork, const std::string& claim_as,
            bool skip_if_restored);
// Hands off the agent in a state dir no process holds (a running worker's: `export
// --worker`): fences it and writes its archive to `to` (a new file).
int Export(const std::string& state_dir, const std::string& to);
// Lifts the fence of an export from a state dir whose archive was never imported.
int TakeBack(const std::string& state_dir);
int Validate(const std::string& file);

}  // namespace carapace::cli
