// The channel arguments every client of a worker's control API uses (the `carapace` CLI and
// the operator): message sizes set to what the worker's server allows, not gRPC's defaults.
// Header only: its users link gRPC, the common library does not.
#pragma once

#include <grpcpp/support/channel_arguments.h>

#include "common/limits.h"

namespace carapace {

inline grpc::ChannelArguments ControlChannelArguments() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(limits::kControlReplyBytes);
  args.SetMaxSendMessageSize(limits::kControlRequestBytes);
  return args;
}

}  // namespace carapace
