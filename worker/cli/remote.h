// The CLI's commands against a running carapace-worker (its gRPC control API). Each returns
// the process exit code (see ExitCode in commands.h).
#pragma once

#include <memory>
#include <string>

#include <grpcpp/client_context.h>

#include "carapace/worker/v1/control.grpc.pb.h"
#include "common/control_channel.h"

namespace carapace::cli {

struct WorkerTarget {
  std::string address;  // host:port of the control API
  std::string token;    // from --token-file, CARAPACE_TOKEN_FILE or CARAPACE_TOKEN; "" when none
  ControlTls tls;       // from --tls-ca (or CARAPACE_TLS_CA) and --tls-server-name; off when none
};

// Reads the token: the file when given, else CARAPACE_TOKEN_FILE, else CARAPACE_TOKEN.
bool LoadWorkerToken(const std::string& token_file, WorkerTarget* target, std::string* problem);
// TLS towards the worker: the CA file when given, else CARAPACE_TLS_CA; none: plaintext.
// `server_name` (the name the worker's certificate must carry) needs a CA.
bool LoadWorkerTls(const std::string& ca_file, const std::string& server_name, WorkerTarget* target,
                   std::string* problem);

// A stub of the worker's control API (the channel arguments every client uses).
std::unique_ptr<worker::v1::WorkerControl::Stub> ConnectWorker(const WorkerTarget& w);
// Puts the token on `ctx`, and a 10 s deadline unless it is for a stream.
void PrepareCall(const WorkerTarget& w, grpc::ClientContext* ctx, bool streaming = false);

int RemoteStatus(const WorkerTarget& w, bool json);
int RemoteEvents(const WorkerTarget& w, unsigned long long from_seq, bool follow);
int RemoteSend(const WorkerTarget& w, const std::string& text);
int RemoteDecide(const WorkerTarget& w, const std::string& call_id, bool deny);
int RemotePause(const WorkerTarget& w);
// `take_back`: lift the fence of an export whose archive was never imported.
int RemoteResume(const WorkerTarget& w, bool take_back = false);
int RemoteCancel(const WorkerTarget& w, const std::string& reason);
int RemoteCompact(const WorkerTarget& w);
// A backup on the worker's volume (backups/NAME next to its state dir).
int RemoteBackup(const WorkerTarget& w, const std::string& name);
// Hands the agent off: fences the worker and writes its archive to `to` (a new file).
int RemoteExport(const WorkerTarget& w, const std::string& to);

}  // namespace carapace::cli
