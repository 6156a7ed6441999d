// The CLI's commands against a running carapace-worker (its gRPC control API). Each returns
// the process exit code (see ExitCode in commands.h).
#pragma once

#include <string>

namespace carapace::cli {

struct WorkerTarget {
  std::string address;  // host:port of the control API
  std::string token;    // from --token-file, CARAPACE_TOKEN_FILE or CARAPACE_TOKEN; "" when none
};

// Reads the token: the file when given, else CARAPACE_TOKEN_FILE, else CARAPACE_TOKEN.
bool LoadWorkerToken(const std::string& token_file, WorkerTarget* target, std::string* problem);

int RemoteStatus(const WorkerTarget& w, bool json);
int RemoteEvents(const WorkerTarget& w, unsigned long long from_seq, bool follow);
int RemoteSend(const WorkerTarget& w, const std::string& text);
int RemoteDecide(const WorkerTarget& w, const std::string& call_id, bool deny);
int RemotePause(const WorkerTarget& w);
int RemoteResume(const WorkerTarget& w);
int RemoteCancel(const WorkerTarget& w, const std::string& reason);
int RemoteCompact(const WorkerTarget& w);

}  // namespace carapace::cli
