// W3C Trace Context (https://www.w3.org/TR/trace-context/): the ids of a span as they travel
// in a `traceparent` header or gRPC metadata entry, and as the event log records them.
// No OpenTelemetry headers here: the runtime, the tools and the model clients pass these
// around without depending on the SDK.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace carapace::telemetry {

struct TraceContext {
  std::array<uint8_t, 16> trace_id{};
  std::array<uint8_t, 8> span_id{};
  bool sampled = false;

  // Both ids non-zero, as the W3C format requires.
  bool valid() const;
  std::string TraceIdHex() const;  // 32 lower-case hex digits
  std::string SpanIdHex() const;   // 16
  // "00-<trace id>-<span id>-<01 when sampled, else 00>"; empty when not valid.
  std::string Traceparent() const;
  // A version-00 header value, or nothing when it is malformed (the spec's rule: a receiver
  // that cannot parse it starts a new trace).
  static std::optional<TraceContext> Parse(std::string_view traceparent);
};

// The header (and gRPC metadata key) a trace travels in.
inline constexpr char kTraceparentHeader[] = "traceparent";

// Ids derived from `seed` (SHA-256): the same seed gives the same ids in every process, so
// a turn resumed after a crash continues the trace its first process began.
TraceContext DerivedContext(std::string_view seed, bool sampled);

}  // namespace carapace::telemetry
