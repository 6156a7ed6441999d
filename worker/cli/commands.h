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
};

int Run(const std::string& file, const std::string& state_dir, bool json);
int Inspect(const std::string& state_dir, bool json);
int Approve(const std::string& state_dir, const std::string& call_id, bool deny);
int Fork(const std::string& state_dir, long long from_step, const std::string& to_dir);
int Validate(const std::string& file);

}  // namespace carapace::cli
