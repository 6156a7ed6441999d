// gRPC channels to model services, made once per (target, TLS settings) and shared by every
// backend in the process: a channel is expensive (connections, name resolution) and
// multiplexes any number of calls. A dns:/// target balances over every address the name
// resolves to (round_robin): the pods of a headless Service.
#pragma once

#include <memory>
#include <string>

#include <grpcpp/channel.h>

#include "common/agentrun/spec.h"
#include "common/status.h"

namespace carapace {

// Errors: kInvalidArgument naming the file when a CA, certificate or key cannot be read.
Result<std::shared_ptr<grpc::Channel>> ModelChannel(const std::string& target, const TlsOptions& tls);

// Maps a gRPC status to ours: UNAVAILABLE, CANCELLED, INTERNAL, UNKNOWN -> kUnavailable;
// RESOURCE_EXHAUSTED -> kResourceExhausted; DEADLINE_EXCEEDED -> kDeadlineExceeded;
// UNAUTHENTICATED, PERMISSION_DENIED -> kPermissionDenied; NOT_FOUND -> kNotFound;
// INVALID_ARGUMENT -> kInvalidArgument; anything else -> kFailedPrecondition. `what`
// prefixes the message.
Status FromGrpcStatus(const grpc::Status& s, const std::string& what);

}  // namespace carapace
