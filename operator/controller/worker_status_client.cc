// GetStatus over the worker's control API (see worker_status_client.h).
#include "operator/controller/worker_status_client.h"

#include <grpcpp/grpcpp.h>

#include "carapace/worker/v1/control.grpc.pb.h"
#include "common/control_channel.h"

namespace carapace::controller {

Result<worker::v1::RunStatus> GrpcWorkerStatusReader::Read(const std::string& address, const std::string& token,
                                                           const ControlTls& tls) {
  std::shared_ptr<grpc::Channel> channel;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Kept& k = channels_[address];
    if (!k.channel || k.tls.ca_pem != tls.ca_pem || k.tls.server_name != tls.server_name) {
      k = {tls, CreateControlChannel(address, tls)};
    }
    channel = k.channel;
  }
  auto stub = worker::v1::WorkerControl::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + deadline_);
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  worker::v1::RunStatus out;
  grpc::Status s = stub->GetStatus(&ctx, worker::v1::GetStatusRequest(), &out);
  if (s.ok()) return out;
  std::string what = "worker " + address + ": " + s.error_message();
  if (std::string hint = ControlTlsHint(s.error_message(), tls); !hint.empty()) what += " (" + hint + ")";
  if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED || s.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
    return PermissionDenied(what);
  }
  return Unavailable(what);
}

void GrpcWorkerStatusReader::Forget(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  channels_.erase(address);
}

}  // namespace carapace::controller
