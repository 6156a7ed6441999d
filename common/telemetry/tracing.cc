// The OpenTelemetry C++ SDK (Debian's opentelemetry-cpp 1.19, built against the same gRPC
// 1.51 and Protobuf 3.21 as the project) behind tracing.h.
#include "common/telemetry/tracing.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include <opentelemetry/exporters/otlp/otlp_grpc_exporter_factory.h>
#include <opentelemetry/exporters/otlp/otlp_grpc_exporter_options.h>
#include <opentelemetry/sdk/common/global_log_handler.h>
#include <opentelemetry/sdk/resource/resource.h>
#include <opentelemetry/sdk/trace/id_generator.h>
#include <opentelemetry/sdk/trace/random_id_generator.h>
#include <opentelemetry/sdk/trace/samplers/always_off.h>
#include <opentelemetry/sdk/trace/samplers/always_on.h>
#include <opentelemetry/sdk/trace/samplers/parent.h>
#include <opentelemetry/sdk/trace/samplers/trace_id_ratio.h>
#include <opentelemetry/sdk/trace/tracer_provider.h>
#include <opentelemetry/trace/span_context_kv_iterable.h>
#include <opentelemetry/common/key_value_iterable_view.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "common/log.h"
#include "common/redact.h"
#include "common/text.h"
#include "common/telemetry/span_export_queue.h"
#include "common/time.h"

namespace carapace::telemetry {

namespace otel = opentelemetry;
namespace sdktrace = opentelemetry::sdk::trace;

namespace {

// ---- configuration ------------------------------------------------------------------

// Values the OpenTelemetry spec calls invalid are warned about and replaced by the default
// (specification/configuration/sdk-environment-variables.md: "SHOULD ... generate a warning
// and gracefully ignore"): a setting injected into every pod of a cluster must never stop
// the agents.
size_t PositiveEnv(const char* name, const char* value, size_t fallback, std::vector<std::string>* warnings) {
  if (value == nullptr || *value == '\0') return fallback;
  char* end = nullptr;
  const long long v = std::strtoll(value, &end, 10);
  if (*end != '\0' || v < 0 || v > 100'000'000) {
    warnings->push_back(std::string(name) + "=" + value + ": must be a whole number of at least 0; using " +
                        std::to_string(fallback));
    return fallback;
  }
  return static_cast<size_t>(v);
}

bool Truthy(const char* v) { return v != nullptr && strcasecmp(v, "true") == 0; }

std::unique_ptr<sdktrace::Sampler> MakeSampler(const TracingConfig& c) {
  if (c.sampler == "always_on") return std::make_unique<sdktrace::AlwaysOnSampler>();
  if (c.sampler == "always_off") return std::make_unique<sdktrace::AlwaysOffSampler>();
  if (c.sampler == "traceidratio") return std::make_unique<sdktrace::TraceIdRatioBasedSampler>(c.sampler_ratio);
  std::shared_ptr<sdktrace::Sampler> root;
  if (c.sampler == "parentbased_always_off") {
    root = std::make_shared<sdktrace::AlwaysOffSampler>();
  } else if (c.sampler == "parentbased_traceidratio") {
    root = std::make_shared<sdktrace::TraceIdRatioBasedSampler>(c.sampler_ratio);
  } else {
    root = std::make_shared<sdktrace::AlwaysOnSampler>();
  }
  return std::make_unique<sdktrace::ParentBasedSampler>(root);
}

// ---- ids ------------------------------------------------------------------------------

otel::trace::TraceId OtelTraceId(const std::array<uint8_t, 16>& id) {
  return otel::trace::TraceId(otel::nostd::span<const uint8_t, 16>(id.data(), id.size()));
}
otel::trace::SpanId OtelSpanId(const std::array<uint8_t, 8>& id) {
  return otel::trace::SpanId(otel::nostd::span<const uint8_t, 8>(id.data(), id.size()));
}

// Random ids, except for the one span a thread asks fixed ids for (SpanOptions::ids): the
// SDK takes ids only from its generator.
thread_local std::optional<TraceContext> fixed_ids;

class FixableIdGenerator : public sdktrace::IdGenerator {
 public:
  FixableIdGenerator() : IdGenerator(true) {}
  otel::trace::SpanId GenerateSpanId() noexcept override {
    if (fixed_ids) return OtelSpanId(fixed_ids->span_id);
    return random_.GenerateSpanId();
  }
  otel::trace::TraceId GenerateTraceId() noexcept override {
    if (fixed_ids) return OtelTraceId(fixed_ids->trace_id);
    return random_.GenerateTraceId();
  }

 private:
  sdktrace::RandomIdGenerator random_;
};

TraceContext FromOtel(const otel::trace::SpanContext& c) {
  TraceContext out;
  if (!c.IsValid()) return out;
  c.trace_id().CopyBytesTo(out.trace_id);
  c.span_id().CopyBytesTo(out.span_id);
  out.sampled = c.IsSampled();
  return out;
}

otel::trace::SpanContext ToOtel(const TraceContext& c) {
  return otel::trace::SpanContext(OtelTraceId(c.trace_id), OtelSpanId(c.span_id),
                                  otel::trace::TraceFlags(c.sampled ? otel::trace::TraceFlags::kIsSampled : 0),
                                  /*is_remote=*/false);
}

// The SDK's own messages ("Export() failed ...") go to our log as JSON lines, at most one a
// minute: a receiver that is down would otherwise write one per batch, and the dropped spans
// are counted anyway (carapace_trace_spans_dropped_total, and a line at exit).
class SdkLogHandler : public otel::sdk::common::internal_log::LogHandler {
 public:
  void Handle(otel::sdk::common::internal_log::LogLevel level, const char*, int, const char* msg,
              const otel::sdk::common::AttributeMap&) noexcept override {
    const int64_t now = MonoNowMillis();
    int64_t last = last_ms_.load();
    if (last != 0 && now - last < 60'000) return;
    if (!last_ms_.compare_exchange_strong(last, now)) return;
    try {
      const bool error = level == otel::sdk::common::internal_log::LogLevel::Error;
      log::Write(error ? log::Level::kWarn : log::Level::kInfo, "tracing: " + Redact(msg != nullptr ? msg : ""),
                 {{"note", "repeats of tracing messages are left out for a minute"}});
    } catch (...) {
    }
  }

 private:
  std::atomic<int64_t> last_ms_{0};
};

// ---- the process's tracer -------------------------------------------------------------

struct State {
  TracingConfig config;
  std::shared_ptr<sdktrace::TracerProvider> provider;
  otel::nostd::shared_ptr<otel::trace::Tracer> tracer;
  std::unique_ptr<sdktrace::Sampler> sampler;  // the provider's twin, for SampledTrace
  std::shared_ptr<ExportQueueCounters> counters = std::make_shared<ExportQueueCounters>();
  SpanExportQueue* queue = nullptr;  // the provider's processor
};

std::atomic<bool> enabled{false};
std::atomic<bool> capture_content{false};
std::mutex state_mu;
State* state = nullptr;  // set once by InitTracing; kept until exit (spans may end late)

}  // namespace

TracingConfig ParseTracingEnv(std::string_view default_service_name, const char* (*getenv_fn)(const char*)) {
  auto env = [&](const char* name) -> const char* {
    const char* v = getenv_fn != nullptr ? getenv_fn(name) : std::getenv(name);
    return v != nullptr && *v != '\0' ? v : nullptr;
  };
  TracingConfig c;
  // service.name: OTEL_SERVICE_NAME, else OTEL_RESOURCE_ATTRIBUTES's (the SDK's resource
  // detector reads those), else the program's.
  const char* attributes = env("OTEL_RESOURCE_ATTRIBUTES");
  const bool named_in_attributes = attributes != nullptr && std::string_view(attributes).find("service.name=") != std::string_view::npos;
  if (env("OTEL_SERVICE_NAME")) {
    c.service_name = env("OTEL_SERVICE_NAME");
  } else if (!named_in_attributes) {
    c.service_name = std::string(default_service_name);
  }
  c.capture_content = Truthy(env("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"));
  const char* endpoint_var = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") ? "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
                                                                       : "OTEL_EXPORTER_OTLP_ENDPOINT";
  const char* endpoint = env(endpoint_var);
  // OTEL_TRACES_EXPORTER is a list: otlp in it exports, the others are not built in.
  bool otlp = true;
  if (const char* exporters = env("OTEL_TRACES_EXPORTER")) {
    otlp = false;
    for (const std::string& name : SplitCommaList(exporters)) {
      if (name == "otlp") {
        otlp = true;
      } else if (name != "none") {
        c.warnings.push_back("OTEL_TRACES_EXPORTER: " + name + " is not supported (only otlp); ignored");
      }
    }
  }
  if (Truthy(env("OTEL_SDK_DISABLED")) || !otlp || endpoint == nullptr) return c;
  c.endpoint = endpoint;
  if (c.endpoint.rfind("http://", 0) != 0 && c.endpoint.rfind("https://", 0) != 0) {
    c.warnings.push_back(std::string(endpoint_var) + "=" + c.endpoint + ": must be an http:// or https:// URL (OTLP "
                         "over gRPC, usually port 4317); traces are not exported");
    return c;
  }
  for (const char* name : {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"}) {
    const char* protocol = env(name);
    if (protocol == nullptr) continue;
    if (std::strcmp(protocol, "grpc") != 0) {
      c.warnings.push_back(std::string(name) + "=" + protocol +
                           " is not supported: Carapace exports OTLP over gRPC only (set grpc, and point the endpoint "
                           "at the collector's gRPC port, usually 4317); traces are not exported");
      return c;
    }
    break;  // the traces-specific one wins
  }
  if (const char* s = env("OTEL_TRACES_SAMPLER")) {
    static const char* kKnown[] = {"always_on", "always_off", "traceidratio", "parentbased_always_on",
                                   "parentbased_always_off", "parentbased_traceidratio"};
    bool known = false;
    for (const char* k : kKnown) known = known || std::strcmp(s, k) == 0;
    if (known) {
      c.sampler = s;
    } else {
      c.warnings.push_back(std::string("OTEL_TRACES_SAMPLER=") + s + " is not one of always_on, always_off, "
                           "traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio; "
                           "using parentbased_always_on");
    }
  }
  const bool ratio_sampler = c.sampler.find("traceidratio") != std::string::npos;
  if (const char* arg = env("OTEL_TRACES_SAMPLER_ARG"); arg != nullptr && ratio_sampler) {
    char* end = nullptr;
    const double ratio = std::strtod(arg, &end);
    if (*end != '\0' || !(ratio >= 0.0 && ratio <= 1.0)) {
      c.warnings.push_back(std::string("OTEL_TRACES_SAMPLER_ARG=") + arg + ": must be a number from 0 to 1; using 1");
    } else {
      c.sampler_ratio = ratio;
    }
  }
  c.max_queue_size = std::max<size_t>(1, PositiveEnv("OTEL_BSP_MAX_QUEUE_SIZE", env("OTEL_BSP_MAX_QUEUE_SIZE"), 2048, &c.warnings));
  c.max_export_batch_size = std::max<size_t>(
      1, PositiveEnv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", env("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"), 512, &c.warnings));
  if (c.max_export_batch_size > c.max_queue_size) c.max_export_batch_size = c.max_queue_size;  // as the spec says
  c.schedule_delay = std::chrono::milliseconds(
      PositiveEnv("OTEL_BSP_SCHEDULE_DELAY", env("OTEL_BSP_SCHEDULE_DELAY"), 5000, &c.warnings));
  c.enabled = true;
  return c;
}

Status InitTracing(const TracingConfig& config, const std::vector<std::pair<std::string, std::string>>& resource,
                   prometheus::Registry* metrics) {
  std::lock_guard<std::mutex> lock(state_mu);
  if (state != nullptr) return FailedPrecondition("tracing was already started");
  for (const auto& w : config.warnings) log::Warn("tracing: " + w);
  if (!config.enabled) return Status::Ok();
  auto s = std::make_unique<State>();
  s->config = config;
  otel::sdk::common::internal_log::GlobalLogHandler::SetLogHandler(
      otel::nostd::shared_ptr<otel::sdk::common::internal_log::LogHandler>(new SdkLogHandler));
  otel::sdk::common::internal_log::GlobalLogHandler::SetLogLevel(otel::sdk::common::internal_log::LogLevel::Warning);

  // The exporter reads the rest of the OTEL_EXPORTER_OTLP_* variables itself (headers,
  // certificate, timeout, compression). Header values are credentials for the collector:
  // they are registered as secrets, so no log line or span ever shows them.
  otel::exporter::otlp::OtlpGrpcExporterOptions options;
  options.endpoint = config.endpoint;
  for (const auto& [name, value] : options.metadata) RegisterSecret(value);
  auto exporter = otel::exporter::otlp::OtlpGrpcExporterFactory::Create(options);

  if (metrics != nullptr) {
    auto& exported = prometheus::BuildCounter()
                         .Name("carapace_trace_spans_exported_total")
                         .Help("Spans the OTLP receiver accepted")
                         .Register(*metrics)
                         .Add({});
    auto& dropped = prometheus::BuildCounter()
                        .Name("carapace_trace_spans_dropped_total")
                        .Help("Spans that never reached the OTLP receiver: the export queue was full "
                              "(queue_full) or the export failed (export_failed)")
                        .Register(*metrics);
    auto& full = dropped.Add({{"reason", "queue_full"}});
    auto& failed = dropped.Add({{"reason", "export_failed"}});
    // Removed by ShutdownTracing, before the registry can go.
    s->counters->SetHook([&exported, &full, &failed](ExportQueueCounters::Kind kind, uint64_t n) {
      switch (kind) {
        case ExportQueueCounters::Kind::kExported: exported.Increment(static_cast<double>(n)); break;
        case ExportQueueCounters::Kind::kDroppedFull: full.Increment(static_cast<double>(n)); break;
        case ExportQueueCounters::Kind::kDroppedFailed: failed.Increment(static_cast<double>(n)); break;
      }
    });
  }
  ExportQueueOptions queue_options{config.max_queue_size, config.max_export_batch_size, config.schedule_delay};
  auto processor = std::make_unique<SpanExportQueue>(std::move(exporter), queue_options, s->counters);
  s->queue = processor.get();

  otel::sdk::resource::ResourceAttributes attributes;
  if (!config.service_name.empty()) attributes.SetAttribute("service.name", config.service_name);
  for (const auto& [k, v] : resource) attributes.SetAttribute(k, v);
  // Resource::Create adds OTEL_RESOURCE_ATTRIBUTES and the SDK's own (telemetry.sdk.*).
  s->provider = std::make_shared<sdktrace::TracerProvider>(std::move(processor),
                                                           otel::sdk::resource::Resource::Create(attributes),
                                                           MakeSampler(config), std::make_unique<FixableIdGenerator>());
  s->tracer = s->provider->GetTracer("carapace", CARAPACE_VERSION_STRING);
  s->sampler = MakeSampler(config);
  state = s.release();
  capture_content.store(config.capture_content);
  enabled.store(true);
  return Status::Ok();
}

void ShutdownTracing(std::chrono::milliseconds timeout) {
  std::lock_guard<std::mutex> lock(state_mu);
  if (state == nullptr || !enabled.load()) return;
  enabled.store(false);
  state->provider->Shutdown(std::chrono::duration_cast<std::chrono::microseconds>(timeout));
  state->counters->SetHook({});  // the metrics registry may go once this returns
  // The provider is never destroyed (a thread may still be in an export); what it did is
  // said once, where whoever reads the logs of a trace with holes will look.
  const auto& c = *state->counters;
  const uint64_t lost = c.dropped_full.load() + c.dropped_failed.load();
  if (lost > 0) {
    log::Warn(std::to_string(lost) + " spans were not exported", {{"endpoint", state->config.endpoint},
                                                                  {"exported", c.exported.load()},
                                                                  {"droppedQueueFull", c.dropped_full.load()},
                                                                  {"droppedExportFailed", c.dropped_failed.load()}});
  }
}

void ExportSoon() {
  if (TracingEnabled()) state->queue->ForceFlush(std::chrono::microseconds(0));
}

bool TracingEnabled() { return enabled.load(std::memory_order_relaxed); }

bool CaptureContent() { return capture_content.load(std::memory_order_relaxed); }

SpanCounts CurrentSpanCounts() {
  std::lock_guard<std::mutex> lock(state_mu);
  if (state == nullptr) return {};
  const auto& c = *state->counters;
  return {c.ended.load(), c.exported.load(), c.dropped_full.load(), c.dropped_failed.load()};
}

bool SampledTrace(const TraceContext& ids) {
  if (!TracingEnabled()) return false;
  static const std::map<std::string, int> kNone;
  otel::common::KeyValueIterableView<std::map<std::string, int>> no_attributes(kNone);
  const auto result = state->sampler->ShouldSample(otel::trace::SpanContext::GetInvalid(),
                                                   OtelTraceId(ids.trace_id), "turn",
                                                   otel::trace::SpanKind::kInternal, no_attributes,
                                                   otel::trace::NullSpanContext());
  return result.decision == sdktrace::Decision::RECORD_AND_SAMPLE;
}

// ---- spans ----------------------------------------------------------------------------

struct Span::Impl {
  otel::nostd::shared_ptr<otel::trace::Span> span;
  int64_t start_wall_ms = 0;
  std::chrono::steady_clock::time_point start_steady;
  bool ended = false;
};

Span::Span() = default;
Span::Span(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Span::Span(Span&&) noexcept = default;
Span& Span::operator=(Span&& other) noexcept {
  if (this != &other) {
    End();
    impl_ = std::move(other.impl_);
  }
  return *this;
}
Span::~Span() { End(); }

Span StartSpan(std::string_view name, const SpanOptions& options) {
  if (!TracingEnabled()) return Span();
  otel::trace::StartSpanOptions o;
  switch (options.kind) {
    case SpanKind::kInternal: o.kind = otel::trace::SpanKind::kInternal; break;
    case SpanKind::kClient: o.kind = otel::trace::SpanKind::kClient; break;
    case SpanKind::kServer: o.kind = otel::trace::SpanKind::kServer; break;
  }
  auto impl = std::make_unique<Span::Impl>();
  const auto now_system = std::chrono::system_clock::now();
  impl->start_steady = std::chrono::steady_clock::now();
  impl->start_wall_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now_system.time_since_epoch()).count();
  if (options.start_wall_ms > 0 && options.start_wall_ms < impl->start_wall_ms) {
    // Made after the fact: both clocks moved back by the same span of time, to the
    // nanosecond, so the span's end lands on the real end.
    const auto back = now_system.time_since_epoch() - std::chrono::milliseconds(options.start_wall_ms);
    impl->start_wall_ms = options.start_wall_ms;
    impl->start_steady -= std::chrono::duration_cast<std::chrono::steady_clock::duration>(back);
    o.start_system_time = otel::common::SystemTimestamp(std::chrono::milliseconds(options.start_wall_ms));
    o.start_steady_time = otel::common::SteadyTimestamp(impl->start_steady);
  }
  // Otherwise unset: the SDK takes now, in nanoseconds.
  if (options.parent && options.parent->valid()) {
    o.parent = ToOtel(*options.parent);
  } else {
    // A root: never the ambient context's span (the runtime keeps none active anyway).
    o.parent = otel::context::Context().SetValue(otel::trace::kIsRootSpanKey, true);
  }
  if (options.ids && !(options.parent && options.parent->valid())) fixed_ids = options.ids;
  impl->span = state->tracer->StartSpan(otel::nostd::string_view(name.data(), name.size()), o);
  fixed_ids.reset();
  return Span(std::move(impl));
}

TraceContext Span::context() const { return impl_ ? FromOtel(impl_->span->GetContext()) : TraceContext{}; }

Span& Span::Set(std::string_view key, std::string_view value) {
  if (impl_) {
    const std::string redacted = NoSecrets() ? std::string(value) : Redact(value);
    impl_->span->SetAttribute(otel::nostd::string_view(key.data(), key.size()), redacted);
  }
  return *this;
}

Span& Span::Set(std::string_view key, int64_t value) {
  if (impl_) impl_->span->SetAttribute(otel::nostd::string_view(key.data(), key.size()), value);
  return *this;
}

Span& Span::Set(std::string_view key, double value) {
  if (impl_) impl_->span->SetAttribute(otel::nostd::string_view(key.data(), key.size()), value);
  return *this;
}

Span& Span::Set(std::string_view key, bool value) {
  if (impl_) impl_->span->SetAttribute(otel::nostd::string_view(key.data(), key.size()), value);
  return *this;
}

Span& Span::Set(std::string_view key, const std::vector<std::string>& values) {
  if (impl_) {
    std::vector<std::string> redacted;
    for (const auto& v : values) redacted.push_back(Redact(v));
    std::vector<otel::nostd::string_view> views(redacted.begin(), redacted.end());
    impl_->span->SetAttribute(otel::nostd::string_view(key.data(), key.size()),
                              otel::nostd::span<const otel::nostd::string_view>(views.data(), views.size()));
  }
  return *this;
}

Span& Span::SetError(std::string_view error_type, std::string_view description) {
  if (impl_) {
    Set("error.type", error_type);
    impl_->span->SetStatus(otel::trace::StatusCode::kError, Redact(description));
  }
  return *this;
}

void Span::End(int64_t end_wall_ms) {
  if (!impl_ || impl_->ended) return;
  impl_->ended = true;
  otel::trace::EndSpanOptions o;
  if (end_wall_ms > 0) {
    o.end_steady_time = otel::common::SteadyTimestamp(
        impl_->start_steady + std::chrono::milliseconds(std::max<int64_t>(0, end_wall_ms - impl_->start_wall_ms)));
  }
  impl_->span->End(o);
}

}  // namespace carapace::telemetry
