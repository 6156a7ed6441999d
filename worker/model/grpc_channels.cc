// The process-wide model channel cache.
#include "worker/model/grpc_channels.h"

#include "common/file.h"
#include "common/limits.h"

#include <map>
#include <mutex>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

namespace carapace {

namespace {

Result<std::string> ReadPem(const std::string& path, const char* field) {
  auto pem = ReadFile(path);
  if (!pem.ok()) return InvalidArgument(std::string("tls.") + field + ": cannot read " + path);
  if (pem->empty()) return InvalidArgument(std::string("tls.") + field + ": " + path + " is empty");
  return pem;
}

}  // namespace

Result<std::shared_ptr<grpc::Channel>> ModelChannel(const std::string& target, const TlsOptions& tls) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<grpc::Channel>> channels;
  const std::string key = target + "|" + (tls.enabled ? "tls|" + tls.ca_file + "|" + tls.cert_file + "|" + tls.key_file : "plain");
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = channels.find(key); it != channels.end()) return it->second;

  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (tls.enabled) {
    grpc::SslCredentialsOptions ssl;
    if (!tls.ca_file.empty()) {
      CARAPACE_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem(tls.ca_file, "caFile"));
    }
    if (!tls.cert_file.empty()) {
      CARAPACE_ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPem(tls.cert_file, "certFile"));
      CARAPACE_ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPem(tls.key_file, "keyFile"));
    }
    creds = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetLoadBalancingPolicyName("round_robin");
  // Keepalive finds a dead connection (a pod gone without a FIN) before a call waits on it.
  // Not more often than Triton's default minimum (300 s without data): a server answers
  // more frequent pings with GOAWAY too_many_pings, failing a long prefill mid-call.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 300000);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 2);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, limits::kModelGrpcReplyBytes);
  args.SetInt(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, limits::kModelGrpcReplyBytes);
  // Reconnect quickly after a server restart; the retry layer adds its own backoff.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  auto channel = grpc::CreateCustomChannel(target, creds, args);
  channels[key] = channel;
  return channel;
}

Status FromGrpcStatus(const grpc::Status& s, const std::string& what) {
  std::string m = what + ": " + s.error_message() + " (gRPC " + std::to_string(static_cast<int>(s.error_code())) + ")";
  switch (s.error_code()) {
    case grpc::StatusCode::OK: return Status::Ok();
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::CANCELLED:
    // Triton answers INTERNAL when a model instance or backend stub died: the endpoint's
    // trouble, worth another try and a fallback.
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNKNOWN: return Unavailable(m);
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return ResourceExhausted(m);
    case grpc::StatusCode::DEADLINE_EXCEEDED: return DeadlineExceeded(m);
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED: return PermissionDenied(m);
    case grpc::StatusCode::NOT_FOUND: return NotFound(m);
    case grpc::StatusCode::ABORTED: return Unavailable(m);  // a conflict inside the server: try again
    // UNIMPLEMENTED, FAILED_PRECONDITION, OUT_OF_RANGE, ...: the server refused this request,
    // and would again (kFailedPrecondition is kept for a backend that never will answer).
    default: return InvalidArgument(m);
  }
}

}  // namespace carapace
