// The sizes a peer controls, bounded: each is what one message, event or request may be
// before it is refused, so that no peer can make a process hold more than this much for
// it. docs/limits.md lists them with what a refusal looks like.
#pragma once

#include <cstddef>

namespace carapace::limits {

// The worker's control API (gRPC): a request (SendMessage's text is at most 64 KiB), and a
// reply or stream event (a status, or an event that carries a tool's output).
inline constexpr int kControlRequestBytes = 1 << 20;
inline constexpr int kControlReplyBytes = 16 << 20;
// A reply from a model service over gRPC (KServe v2 / Triton).
inline constexpr int kModelGrpcReplyBytes = 64 << 20;
// A whole reply from an OpenAI-compatible service (a chat completion or embeddings that
// came unstreamed), and from an MCP server.
inline constexpr size_t kModelHttpReplyBytes = 64 << 20;
inline constexpr size_t kMcpReplyBytes = 16 << 20;
// One server-sent event (an OpenAI-compatible stream chunk, an MCP message).
inline constexpr size_t kSseEventBytes = 8 << 20;
// JSON from a peer: nesting deeper than this is refused before it is parsed (a deep
// nesting costs stack on every later dump, compare or destroy).
inline constexpr int kJsonDepth = 128;
// The Kubernetes API: one watch event, and one reply (a list page of 500 objects).
inline constexpr size_t kWatchEventBytes = 16 << 20;
inline constexpr size_t kApiReplyBytes = 256 << 20;

}  // namespace carapace::limits
