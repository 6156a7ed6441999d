// Traces over OTLP: the worker, the CLI and the operator export spans when the standard
// OTEL_* variables name an endpoint (docs/tracing.md), and cost a branch when they do not.
//
// This header keeps the OpenTelemetry SDK out of the code that makes spans: a Span is a
// handle that does nothing when tracing is off, and every string attribute passes through
// Redact (common/redact.h), so a span never carries a secret the process knows.
//
// Spans are queued and exported by a thread of their own (span_export_queue.h): a span's
// End never waits for the network. When the receiver is slow or down, spans beyond the
// queue's room are dropped and counted, never waited for.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/telemetry/trace_context.h"

namespace prometheus {
class Registry;
}

namespace carapace::telemetry {

// What the OTEL_* variables ask for (ParseTracingEnv).
struct TracingConfig {
  bool enabled = false;        // an endpoint is named, the SDK is not disabled, the exporter is otlp
  std::string endpoint;        // OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT
  // OTEL_SERVICE_NAME, else the program's; empty when OTEL_RESOURCE_ATTRIBUTES names it.
  std::string service_name;
  std::string sampler = "parentbased_always_on";  // OTEL_TRACES_SAMPLER
  double sampler_ratio = 1.0;  // OTEL_TRACES_SAMPLER_ARG, for the ratio samplers
  // OTEL_BSP_*: the export queue (the names and defaults of the OpenTelemetry spec's batch
  // span processor).
  size_t max_queue_size = 2048;
  size_t max_export_batch_size = 512;
  std::chrono::milliseconds schedule_delay{5000};
  // OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: prompts and replies in model spans
  // (redacted all the same). Off unless the user opts in.
  bool capture_content = false;
  // Settings that could not be honoured, each naming its variable and what was done instead
  // (the default, or no export). As the OpenTelemetry spec asks, they never stop the
  // process: a variable injected into every pod must not stop every agent. InitTracing logs
  // them.
  std::vector<std::string> warnings;
};

// Reads the OTEL_* variables through `getenv` (tests pass their own).
TracingConfig ParseTracingEnv(std::string_view default_service_name, const char* (*getenv)(const char*) = nullptr);

// Starts exporting as `config` says (nothing when !config.enabled). `resource` adds
// attributes describing this process (the AgentRun it runs). `metrics`, when given, gets
// carapace_trace_spans_exported_total and carapace_trace_spans_dropped_total{reason}.
// Call once, before any span, from main.
Status InitTracing(const TracingConfig& config, const std::vector<std::pair<std::string, std::string>>& resource = {},
                   prometheus::Registry* metrics = nullptr);
// Exports what is queued, waiting at most `timeout`, and stops. Spans made after it are
// dropped. Safe to call when tracing never started.
void ShutdownTracing(std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));

// True when spans are exported: callers skip building attributes otherwise.
bool TracingEnabled();
// Asks the export queue to send what it holds now rather than at its schedule (a span that
// no other process would send again); returns at once.
void ExportSoon();
// True when prompts and replies may go into spans (the user opted in).
bool CaptureContent();

// What the export queue did since InitTracing (benchmarks, tests, metrics).
struct SpanCounts {
  uint64_t ended = 0;          // spans ended and sampled
  uint64_t exported = 0;       // accepted by the receiver
  uint64_t dropped_full = 0;   // the queue was full
  uint64_t dropped_failed = 0; // the export failed (receiver down, refused, timed out)
};
SpanCounts CurrentSpanCounts();

enum class SpanKind { kInternal, kClient, kServer };

struct SpanOptions {
  SpanKind kind = SpanKind::kInternal;
  // The parent; none: a new trace.
  std::optional<TraceContext> parent;
  // Fixed ids for a root span (no parent): a turn's span, whose ids come from the run and
  // the turn (DerivedContext). Unset: new random ids.
  std::optional<TraceContext> ids;
  // When it began, Unix ms, for a span made after the fact (a turn, an approval waited on).
  // 0: now.
  int64_t start_wall_ms = 0;
};

class Span {
 public:
  Span();  // a span that records nothing
  Span(Span&&) noexcept;
  Span& operator=(Span&&) noexcept;
  ~Span();  // ends the span if End was not called

  bool recording() const { return impl_ != nullptr; }
  // Its ids (invalid when tracing is off): for the traceparent of calls made within it and
  // for the events it covers.
  TraceContext context() const;

  Span& Set(std::string_view key, std::string_view value);  // redacted
  Span& Set(std::string_view key, const char* value) { return Set(key, std::string_view(value)); }
  Span& Set(std::string_view key, int64_t value);
  Span& Set(std::string_view key, int value) { return Set(key, static_cast<int64_t>(value)); }
  Span& Set(std::string_view key, double value);
  Span& Set(std::string_view key, bool value);
  Span& Set(std::string_view key, const std::vector<std::string>& values);  // redacted
  // Marks the span failed: status ERROR with `description` (redacted) and error.type.
  Span& SetError(std::string_view error_type, std::string_view description);
  // `end_wall_ms` 0: now.
  void End(int64_t end_wall_ms = 0);

  struct Impl;

 private:
  explicit Span(std::unique_ptr<Impl> impl);
  friend Span StartSpan(std::string_view name, const SpanOptions& options);
  std::unique_ptr<Impl> impl_;
};

// A span (one that records nothing when tracing is off, or the sampler says no).
Span StartSpan(std::string_view name, const SpanOptions& options = {});

// Whether the configured sampler keeps a new trace with this id: a turn's children are made
// under its derived ids before its own span exists (the turn's span is made when it ends).
bool SampledTrace(const TraceContext& ids);

}  // namespace carapace::telemetry
