// The span processor between ended spans and the OTLP exporter: a bounded queue drained by
// one thread of its own, in batches. The SDK's BatchSpanProcessor does the same but drops
// silently when its queue is full; an operator reading a trace with holes must be able to
// see how many spans never left (carapace_trace_spans_dropped_total), so this one counts.
//
// OnEnd never blocks: a full queue drops the span. The export thread waits for the network;
// nothing else does.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include <opentelemetry/sdk/trace/exporter.h>
#include <opentelemetry/sdk/trace/processor.h>

namespace carapace::telemetry {

struct ExportQueueOptions {
  size_t max_queue_size = 2048;
  size_t max_export_batch_size = 512;
  std::chrono::milliseconds schedule_delay{5000};  // the longest a span waits for its batch
};

// What the queue did with the spans it was given, shared with whoever reads the counts.
struct ExportQueueCounters {
  enum class Kind { kExported, kDroppedFull, kDroppedFailed };
  std::atomic<uint64_t> ended{0};
  std::atomic<uint64_t> exported{0};
  std::atomic<uint64_t> dropped_full{0};
  std::atomic<uint64_t> dropped_failed{0};

  void Add(Kind kind, uint64_t n);
  // A hook (metrics) called on the thread that counted; SetHook({}) removes it, after which
  // no call of it is in progress or will start (the metrics it feeds may then go away).
  void SetHook(std::function<void(Kind, uint64_t)> hook);

 private:
  std::mutex hook_mu_;
  std::function<void(Kind, uint64_t)> hook_;
};

class SpanExportQueue : public opentelemetry::sdk::trace::SpanProcessor {
 public:
  SpanExportQueue(std::unique_ptr<opentelemetry::sdk::trace::SpanExporter> exporter, ExportQueueOptions options,
                  std::shared_ptr<ExportQueueCounters> counters);
  ~SpanExportQueue() override;

  std::unique_ptr<opentelemetry::sdk::trace::Recordable> MakeRecordable() noexcept override;
  void OnStart(opentelemetry::sdk::trace::Recordable&, const opentelemetry::trace::SpanContext&) noexcept override {}
  void OnEnd(std::unique_ptr<opentelemetry::sdk::trace::Recordable>&& span) noexcept override;
  // Exports everything queued before the call; false when `timeout` ran out first.
  bool ForceFlush(std::chrono::microseconds timeout) noexcept override;
  // Flushes as ForceFlush, then stops the thread and the exporter; later spans are dropped.
  // An export already in flight is waited for: it ends within its own deadline
  // (OTEL_EXPORTER_OTLP_TIMEOUT, which covers the exporter's retries).
  bool Shutdown(std::chrono::microseconds timeout) noexcept override;

 private:
  void Drain();
  using Batch = std::vector<std::unique_ptr<opentelemetry::sdk::trace::Recordable>>;
  void ExportBatch(Batch batch);

  std::unique_ptr<opentelemetry::sdk::trace::SpanExporter> exporter_;
  const ExportQueueOptions options_;
  std::shared_ptr<ExportQueueCounters> counters_;

  std::mutex mu_;
  std::condition_variable wake_;      // the drain thread: spans to send, a flush, or stop
  std::condition_variable progress_;  // flushers: a batch was sent
  std::deque<std::unique_ptr<opentelemetry::sdk::trace::Recordable>> queue_;
  uint64_t enqueued_ = 0;   // spans put on the queue, ever
  uint64_t finished_ = 0;   // of those, exported or dropped by a failed export
  bool flush_requested_ = false;
  bool stopping_ = false;
  bool stopped_ = false;
  std::thread thread_;
};

}  // namespace carapace::telemetry
