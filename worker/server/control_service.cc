// The control API.
#include "worker/server/control_service.h"

#include "common/bearer_token.h"

namespace carapace {

namespace v1 = worker::v1;

grpc::Status ToGrpcStatus(const Status& s) {
  switch (s.code()) {
    case StatusCode::kOk: return grpc::Status::OK;
    case StatusCode::kInvalidArgument: return {grpc::StatusCode::INVALID_ARGUMENT, s.message()};
    case StatusCode::kNotFound: return {grpc::StatusCode::NOT_FOUND, s.message()};
    case StatusCode::kFailedPrecondition: return {grpc::StatusCode::FAILED_PRECONDITION, s.message()};
    case StatusCode::kUnavailable: return {grpc::StatusCode::UNAVAILABLE, s.message()};
    case StatusCode::kResourceExhausted:
    case StatusCode::kVolumeFull: return {grpc::StatusCode::RESOURCE_EXHAUSTED, s.message()};
    default: return {grpc::StatusCode::INTERNAL, s.ToString()};
  }
}

grpc::Status ControlService::Authorize(const grpc::ServerContext& ctx) const {
  if (token_.empty()) return grpc::Status::OK;
  auto it = ctx.client_metadata().find("authorization");
  // The same answer, in the same time, for a missing and a wrong token of any length.
  const std::string got = it == ctx.client_metadata().end() ? std::string() : std::string(it->second.data(), it->second.size());
  if (!BearerTokenMatches(got, token_)) return {grpc::StatusCode::UNAUTHENTICATED, "a valid bearer token is required"};
  return grpc::Status::OK;
}

grpc::Status ControlService::Reply(const Status& s, v1::RunStatus* out) const {
  if (!s.ok()) return ToGrpcStatus(s);
  *out = agent_->Snapshot();
  return grpc::Status::OK;
}

grpc::Status ControlService::GetStatus(grpc::ServerContext* ctx, const v1::GetStatusRequest*, v1::RunStatus* out) {
  if (auto a = Authorize(*ctx); !a.ok()) return a;
  *out = agent_->Snapshot();
  return grpc::Status::OK;
}

grpc::Status ControlService::WatchEvents(grpc::ServerContext* ctx, const v1::WatchEventsRequest* req,
                                         grpc::ServerWriter<v1::EventEntry>* out) {
  if (auto a = Authorize(*ctx); !a.ok()) return a;
  uint64_t next = std::max<uint64_t>(req->from_seq(), 1);
  constexpr size_t kBatch = 256;
  while (!ctx->IsCancelled()) {
    // Read a batch, then write it: a slow client must not hold a store iterator open (it
    // would pin memtables and files) while its stream drains.
    std::vector<v1::EventEntry> batch;
    Status decode;
    Status st = agent_->store().ForEachEvent(next, [&](uint64_t seq, std::string_view value) {
      auto e = Event::Decode(seq, value);
      if (!e.ok()) {
        decode = e.status();
        return false;
      }
      v1::EventEntry& entry = batch.emplace_back();
      entry.set_seq(seq);
      entry.set_ts_ms(e->ts_ms);
      entry.set_type(e->type);
      entry.set_step(e->step);
      entry.set_data_json(e->data.dump());
      return batch.size() < kBatch;
    });
    if (!st.ok()) return ToGrpcStatus(st);
    if (!decode.ok()) return ToGrpcStatus(decode);
    for (const auto& entry : batch) {
      if (!out->Write(entry)) return grpc::Status::OK;  // the client went away
      next = entry.seq() + 1;
    }
    if (batch.size() == kBatch) continue;  // more are stored already
    if (!req->follow()) break;
    if (agent_->stopping()) return {grpc::StatusCode::UNAVAILABLE, "the worker is shutting down; reconnect from seq " + std::to_string(next)};
    agent_->WaitForEventAfter(next - 1, std::chrono::milliseconds(500));
  }
  return grpc::Status::OK;
}

grpc::Status ControlService::SendMessage(grpc::ServerContext* ctx, const v1::SendMessageRequest* req,
                                         v1::SendMessageResponse* out) {
  if (auto a = Authorize(*ctx); !a.ok()) return a;
  auto seq = agent_->SendMessage(req->text(), req->from());
  if (!seq.ok()) return ToGrpcStatus(seq.status());
  out->set_seq(*seq);
  out->set_inbox_depth(agent_->InboxDepth());
  return grpc::Status::OK;
}

grpc::Status ControlService::Approve(grpc::ServerContext* ctx, const v1::DecisionRequest* req, v1::RunStatus* out) {
  if (auto a = Authorize(*ctx); !a.ok()) return a;
  return Reply(agent_->Decide(req->call_id(), true, req->by()), out);
}

grpc::Status ControlService::Deny(grpc::ServerContext* ctx, const v1::DecisionRequest* req, v1::RunStatus* out) {
  if (auto a = Authorize(*ctx); !a.ok()) return a;
  return Reply(agent_->Decide(req->call_id(), false, req->by()), out);
}

grpc::Status ControlService::Pause(grpc::ServerContext* ctx, const v1::PauseRequest*, v1::RunStatus* out) {
  if (auto a = Authorize(*ctx); !a.ok()) return a;
  return Reply(agent_->Pause(), out);
}

grpc::Status ControlService::Compact(grpc::ServerContext* ctx, const v1::CompactRequest*, v1::RunStatus* out) {
  if (auto a = Authorize(*ctx); !a.ok()) return a;
  return Reply(agent_->Compact(), out);
}

grpc::Status ControlService::Backup(grpc::ServerContext* ctx, const v1::BackupRequest* req, v1::BackupResponse* out) {
  if (auto a = Authorize(*ctx); !a.ok()) return a;
  auto made = agent_->Backup(req->name());
  if (!made.ok()) return ToGrpcStatus(made.status());
  out->set_path(made->dir);
  out->set_last_seq(made->last_seq);
  out->set_bytes(made->bytes);
  out->set_duration_ms(made->duration_ms);
  out->set_run_id(made->run_id);
  return grpc::Status::OK;
}

grpc::Status ControlService::Resume(grpc::ServerContext* ctx, const v1::ResumeRequest* req, v1::RunStatus* out) {
  if (auto a = Authorize(*ctx); !a.ok()) return a;
  return Reply(req->take_back() ? agent_->TakeBack(req->by()) : agent_->Resume(), out);
}

grpc::Status ControlService::Export(grpc::ServerContext* ctx, const v1::ExportRequest* req,
                                    grpc::ServerWriter<v1::ExportChunk>* out) {
  if (auto a = Authorize(*ctx); !a.ok()) return a;
  // Up to a minute for the action in progress (a model call, a tool) to end; a client that
  // gets UNAVAILABLE calls again, and the fence holds meanwhile.
  auto made = agent_->Export(req->by(), std::chrono::seconds(60));
  if (!made.ok()) return ToGrpcStatus(made.status());
  v1::ExportChunk chunk;
  chunk.set_handoff_id(made->manifest.handoff_id);
  chunk.set_run_id(made->manifest.run_id);
  chunk.set_last_seq(made->manifest.last_seq);
  chunk.set_archive_bytes(made->bytes);
  std::string buf(256 * 1024, '\0');
  uint64_t sent = 0;
  std::istream& in = *made->archive;
  do {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto got = static_cast<size_t>(in.gcount());
    chunk.set_data(buf.data(), got);
    if (!out->Write(chunk)) return {grpc::StatusCode::CANCELLED, "the client went away; the hand-off holds, export again"};
    sent += got;
    chunk.Clear();
  } while (sent < made->bytes && in);
  if (sent != made->bytes) return {grpc::StatusCode::INTERNAL, "the archive could not be read whole; export again"};
  return grpc::Status::OK;
}

grpc::Status ControlService::Cancel(grpc::ServerContext* ctx, const v1::CancelRequest* req, v1::RunStatus* out) {
  if (auto a = Authorize(*ctx); !a.ok()) return a;
  return Reply(agent_->Cancel(req->reason()), out);
}

}  // namespace carapace
