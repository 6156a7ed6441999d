// gRPC client of the worker control API.
#include "worker/cli/remote.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "carapace/worker/v1/control.grpc.pb.h"
#include "common/control_channel.h"
#include "common/file.h"
#include "worker/cli/commands.h"
#include "worker/cli/status_view.h"
#include "worker/runtime/event.h"

namespace carapace::cli {

namespace v1 = worker::v1;

bool LoadWorkerToken(const std::string& token_file, WorkerTarget* target, std::string* problem) {
  std::string file = token_file;
  if (file.empty()) {
    if (const char* f = std::getenv("CARAPACE_TOKEN_FILE"); f && *f) file = f;
  }
  if (file.empty()) {
    if (const char* t = std::getenv("CARAPACE_TOKEN"); t) target->token = t;
    return true;
  }
  auto token = ReadTokenFile(file);  // as the worker reads its own
  if (!token.ok()) {
    *problem = "cannot read the token file " + file;
    return false;
  }
  target->token = *token;
  return true;
}

bool LoadWorkerTls(const std::string& ca_file, const std::string& server_name, WorkerTarget* target,
                   std::string* problem) {
  std::string file = ca_file;
  if (file.empty()) {
    if (const char* f = std::getenv("CARAPACE_TLS_CA"); f && *f) file = f;
  }
  if (file.empty()) {
    if (!server_name.empty()) *problem = "--tls-server-name needs --tls-ca FILE (the CA to check the worker with)";
    return server_name.empty();
  }
  auto ca = ReadControlCa(file);
  if (!ca.ok()) {
    *problem = ca.status().message();
    return false;
  }
  target->tls.ca_pem = *ca;
  target->tls.server_name = server_name;
  return true;
}

std::unique_ptr<v1::WorkerControl::Stub> ConnectWorker(const WorkerTarget& w) {
  return v1::WorkerControl::NewStub(CreateControlChannel(w.address, w.tls));
}

void PrepareCall(const WorkerTarget& w, grpc::ClientContext* ctx, bool streaming) {
  if (!streaming) ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!w.token.empty()) ctx->AddMetadata("authorization", "Bearer " + w.token);
}

namespace {

int Failed(const grpc::Status& s, const WorkerTarget& w) {
  std::cerr << "carapace: worker " << w.address << ": " << s.error_message() << " (gRPC " << s.error_code() << ")\n";
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    if (std::string hint = ControlTlsHint(s.error_message(), w.tls); !hint.empty()) std::cerr << "carapace: " << hint << "\n";
  }
  switch (s.error_code()) {
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::FAILED_PRECONDITION: return kExitBadInput;
    default: return kExitError;
  }
}

void PrintStatus(const v1::RunStatus& s) {
  std::cout << "AgentRun " << s.namespace_() << "/" << s.name() << "  run " << s.run_id() << "\n"
            << "phase:   " << (v1::Phase_IsValid(s.phase()) ? v1::Phase_Name(s.phase()).substr(6) : std::to_string(s.phase())) << (s.reason().empty() ? "" : " (" + s.reason() + ")") << "\n";
  if (!s.result().empty()) std::cout << "result:  " << s.result() << "\n";
  std::cout << "step:    " << s.step() << "   turns: " << s.turns() << "   inbox: " << s.inbox_depth()
            << "   last checkpoint: step " << s.last_checkpoint_step() << "   events: " << s.last_event_seq() << "\n";
  std::cout << LongLifeLines(s);
  if (!s.current_call_id().empty()) std::cout << "running: " << s.current_call_id() << " " << s.current_tool() << "\n";
  for (const auto& w : s.waiting()) {
    std::cout << "waiting: " << w.call_id() << " " << w.tool() << " " << w.arguments_json() << " (" << w.reason() << ")\n";
  }
  const auto& b = s.budget();
  std::cout << "budget:  steps " << b.steps() << "/" << b.max_steps() << ", tokens " << b.tokens() << "/" << b.max_tokens()
            << ", tool calls " << b.tool_calls() << "/" << b.max_tool_calls() << "\n";
}

template <typename Request, typename Call>
int StatusCall(const WorkerTarget& w, const Request& req, Call call) {
  auto stub = ConnectWorker(w);
  grpc::ClientContext ctx;
  PrepareCall(w, &ctx);
  v1::RunStatus out;
  grpc::Status s = call(*stub, &ctx, req, &out);
  if (!s.ok()) return Failed(s, w);
  PrintStatus(out);
  return kExitSucceeded;
}

}  // namespace

int RemoteStatus(const WorkerTarget& w, bool json) {
  auto stub = ConnectWorker(w);
  grpc::ClientContext ctx;
  PrepareCall(w, &ctx);
  v1::RunStatus out;
  grpc::Status s = stub->GetStatus(&ctx, v1::GetStatusRequest(), &out);
  if (!s.ok()) return Failed(s, w);
  if (json) std::cout << RunStatusJson(out) << "\n";
  else PrintStatus(out);
  return kExitSucceeded;
}

int RemoteEvents(const WorkerTarget& w, unsigned long long from_seq, bool follow) {
  auto stub = ConnectWorker(w);
  grpc::ClientContext ctx;
  PrepareCall(w, &ctx, follow);
  v1::WatchEventsRequest req;
  req.set_from_seq(from_seq);
  req.set_follow(follow);
  auto reader = stub->WatchEvents(&ctx, req);
  v1::EventEntry entry;
  while (reader->Read(&entry)) {
    Event e;
    e.seq = entry.seq();
    e.ts_ms = entry.ts_ms();
    e.type = entry.type();
    e.step = entry.step();
    e.data = nlohmann::json::parse(entry.data_json(), nullptr, false);
    if (e.data.is_discarded()) e.data = nlohmann::json::object();
    std::cout << "#" << e.seq << " step " << e.step << " " << DescribeEvent(e) << "\n" << std::flush;
  }
  grpc::Status s = reader->Finish();
  if (!s.ok()) return Failed(s, w);
  return kExitSucceeded;
}

int RemoteSend(const WorkerTarget& w, const std::string& text) {
  auto stub = ConnectWorker(w);
  grpc::ClientContext ctx;
  PrepareCall(w, &ctx);
  v1::SendMessageRequest req;
  req.set_text(text);
  req.set_from("cli");
  v1::SendMessageResponse out;
  grpc::Status s = stub->SendMessage(&ctx, req, &out);
  if (!s.ok()) return Failed(s, w);
  std::cout << "queued as event " << out.seq() << " (" << out.inbox_depth() << " in the inbox)\n";
  return kExitSucceeded;
}

int RemoteDecide(const WorkerTarget& w, const std::string& call_id, bool deny) {
  v1::DecisionRequest req;
  req.set_call_id(call_id);
  req.set_by("cli");
  return StatusCall(w, req, [deny](v1::WorkerControl::Stub& stub, grpc::ClientContext* ctx, const v1::DecisionRequest& r,
                                   v1::RunStatus* out) { return deny ? stub.Deny(ctx, r, out) : stub.Approve(ctx, r, out); });
}

int RemoteCompact(const WorkerTarget& w) {
  return StatusCall(w, v1::CompactRequest(), [](auto& stub, auto* ctx, const auto& r, auto* out) { return stub.Compact(ctx, r, out); });
}

int RemoteBackup(const WorkerTarget& w, const std::string& name) {
  auto stub = ConnectWorker(w);
  grpc::ClientContext ctx;
  PrepareCall(w, &ctx);
  v1::BackupRequest req;
  req.set_name(name);
  v1::BackupResponse out;
  grpc::Status s = stub->Backup(&ctx, req, &out);
  if (!s.ok()) return Failed(s, w);
  std::cout << "backed up run " << out.run_id() << " to " << out.path() << " on the worker's volume: events up to "
            << out.last_seq() << ", " << out.bytes() << " bytes, " << out.duration_ms() << " ms\n";
  return kExitSucceeded;
}

int RemotePause(const WorkerTarget& w) {
  return StatusCall(w, v1::PauseRequest(), [](auto& stub, auto* ctx, const auto& r, auto* out) { return stub.Pause(ctx, r, out); });
}

int RemoteResume(const WorkerTarget& w, bool take_back) {
  v1::ResumeRequest req;
  req.set_take_back(take_back);
  req.set_by("cli");
  return StatusCall(w, req, [](auto& stub, auto* ctx, const auto& r, auto* out) { return stub.Resume(ctx, r, out); });
}

int RemoteExport(const WorkerTarget& w, const std::string& to) {
  std::error_code ec;
  if (std::filesystem::exists(to, ec)) {
    std::cerr << "carapace: " << to << " exists; export into a new file\n";
    return kExitBadInput;
  }
  // Written aside and renamed once whole and synced: `to` is an archive or nothing.
  const std::string part = to + ".part";
  std::ofstream out(part, std::ios::binary | std::ios::trunc);
  if (!out) {
    std::cerr << "carapace: cannot write " << part << "\n";
    return kExitError;
  }
  auto stub = ConnectWorker(w);
  grpc::ClientContext ctx;
  PrepareCall(w, &ctx, /*streaming=*/true);
  v1::ExportRequest req;
  req.set_by("cli");
  auto reader = stub->Export(&ctx, req);
  v1::ExportChunk chunk;
  v1::ExportChunk first;
  bool got_first = false;
  uint64_t received = 0;
  while (reader->Read(&chunk)) {
    if (!got_first) {
      first = chunk;
      got_first = true;
    }
    out.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
    received += chunk.data().size();
  }
  grpc::Status s = reader->Finish();
  out.close();
  if (!s.ok() || !got_first || received != first.archive_bytes() || !out) {
    std::filesystem::remove(part, ec);
    if (!s.ok()) return Failed(s, w);
    std::cerr << "carapace: the archive came short (" << received << " of " << first.archive_bytes()
              << " bytes, or not written); the hand-off holds: export again\n";
    return kExitError;
  }
  const int fd = ::open(part.c_str(), O_RDONLY | O_CLOEXEC);
  const bool synced = fd >= 0 && ::fsync(fd) == 0;
  if (fd >= 0) ::close(fd);
  if (!synced || ::rename(part.c_str(), to.c_str()) != 0) {
    std::cerr << "carapace: cannot keep " << to << ": " << std::strerror(errno) << "; the hand-off holds: export again\n";
    std::filesystem::remove(part, ec);
    return kExitError;
  }
  std::cout << "exported run " << first.run_id() << " to " << to << ": events up to " << first.last_seq() << ", "
            << received << " bytes, hand-off " << first.handoff_id() << ". The worker at " << w.address
            << " is fenced: it never acts again. Continue the agent with `carapace import --from " << to
            << " --state-dir DIR`, or in a cluster with spec.storage.restoreFrom\n";
  return kExitSucceeded;
}

int RemoteCancel(const WorkerTarget& w, const std::string& reason) {
  v1::CancelRequest req;
  req.set_reason(reason);
  return StatusCall(w, req, [](auto& stub, auto* ctx, const auto& r, auto* out) { return stub.Cancel(ctx, r, out); });
}

}  // namespace carapace::cli
