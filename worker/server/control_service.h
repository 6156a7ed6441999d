// The gRPC control API (proto/carapace/worker/v1/control.proto) over an AgentService.
#pragma once

#include <string>

#include "carapace/worker/v1/control.grpc.pb.h"
#include "worker/server/agent_service.h"

namespace carapace {

class ControlService final : public worker::v1::WorkerControl::Service {
 public:
  // `token` empty: no authentication (the worker's --insecure-no-auth).
  ControlService(AgentService* agent, std::string token) : agent_(agent), token_(std::move(token)) {}

  grpc::Status GetStatus(grpc::ServerContext* ctx, const worker::v1::GetStatusRequest* req,
                         worker::v1::RunStatus* out) override;
  grpc::Status WatchEvents(grpc::ServerContext* ctx, const worker::v1::WatchEventsRequest* req,
                           grpc::ServerWriter<worker::v1::EventEntry>* out) override;
  grpc::Status SendMessage(grpc::ServerContext* ctx, const worker::v1::SendMessageRequest* req,
                           worker::v1::SendMessageResponse* out) override;
  grpc::Status Approve(grpc::ServerContext* ctx, const worker::v1::DecisionRequest* req, worker::v1::RunStatus* out) override;
  grpc::Status Deny(grpc::ServerContext* ctx, const worker::v1::DecisionRequest* req, worker::v1::RunStatus* out) override;
  grpc::Status Pause(grpc::ServerContext* ctx, const worker::v1::PauseRequest* req, worker::v1::RunStatus* out) override;
  grpc::Status Compact(grpc::ServerContext* ctx, const worker::v1::CompactRequest* req, worker::v1::RunStatus* out) override;
  grpc::Status Backup(grpc::ServerContext* ctx, const worker::v1::BackupRequest* req,
                      worker::v1::BackupResponse* out) override;
  grpc::Status Export(grpc::ServerContext* ctx, const worker::v1::ExportRequest* req,
                      grpc::ServerWriter<worker::v1::ExportChunk>* out) override;
  grpc::Status Resume(grpc::ServerContext* ctx, const worker::v1::ResumeRequest* req, worker::v1::RunStatus* out) override;
  grpc::Status Cancel(grpc::ServerContext* ctx, const worker::v1::CancelRequest* req, worker::v1::RunStatus* out) override;

 private:
  // UNAUTHENTICATED unless the call carries "authorization: Bearer <token>".
  grpc::Status Authorize(const grpc::ServerContext& ctx) const;
  grpc::Status Reply(const Status& s, worker::v1::RunStatus* out) const;

  AgentService* agent_;
  std::string token_;
};

// Our status as a gRPC status: kInvalidArgument -> INVALID_ARGUMENT, kNotFound -> NOT_FOUND,
// kFailedPrecondition -> FAILED_PRECONDITION, others -> INTERNAL / UNAVAILABLE.
grpc::Status ToGrpcStatus(const Status& s);

}  // namespace carapace
