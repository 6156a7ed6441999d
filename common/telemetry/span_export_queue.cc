#include "common/telemetry/span_export_queue.h"

#include <opentelemetry/nostd/span.h>
#include <opentelemetry/sdk/common/exporter_utils.h>

namespace carapace::telemetry {

namespace sdktrace = opentelemetry::sdk::trace;

SpanExportQueue::SpanExportQueue(std::unique_ptr<sdktrace::SpanExporter> exporter, ExportQueueOptions options,
                                 std::shared_ptr<ExportQueueCounters> counters)
    : exporter_(std::move(exporter)), options_(options), counters_(std::move(counters)) {
  thread_ = std::thread([this] { Drain(); });
}

SpanExportQueue::~SpanExportQueue() { Shutdown(std::chrono::seconds(5)); }

std::unique_ptr<sdktrace::Recordable> SpanExportQueue::MakeRecordable() noexcept { return exporter_->MakeRecordable(); }

void SpanExportQueue::OnEnd(std::unique_ptr<sdktrace::Recordable>&& span) noexcept {
  counters_->ended.fetch_add(1, std::memory_order_relaxed);
  bool full = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_ || queue_.size() >= options_.max_queue_size) {
      full = true;
    } else {
      queue_.push_back(std::move(span));
      ++enqueued_;
      // A whole batch need not wait for the schedule.
      if (queue_.size() >= options_.max_export_batch_size) wake_.notify_one();
    }
  }
  if (full) {
    counters_->dropped_full.fetch_add(1, std::memory_order_relaxed);
    if (counters_->on_dropped_full) counters_->on_dropped_full(1);
  }
}

void SpanExportQueue::ExportBatch(Batch batch) {
  const uint64_t n = batch.size();
  const auto result =
      exporter_->Export(opentelemetry::nostd::span<std::unique_ptr<sdktrace::Recordable>>(batch.data(), batch.size()));
  if (result == opentelemetry::sdk::common::ExportResult::kSuccess) {
    counters_->exported.fetch_add(n, std::memory_order_relaxed);
    if (counters_->on_exported) counters_->on_exported(n);
  } else {
    counters_->dropped_failed.fetch_add(n, std::memory_order_relaxed);
    if (counters_->on_dropped_failed) counters_->on_dropped_failed(n);
  }
}

void SpanExportQueue::Drain() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait_for(lock, options_.schedule_delay, [&] {
      return stopping_ || flush_requested_ || queue_.size() >= options_.max_export_batch_size;
    });
    // Everything queued now leaves, batch by batch; the lock is let go while the exporter
    // waits for the network, so OnEnd never waits behind it.
    while (!queue_.empty()) {
      Batch batch;
      while (!queue_.empty() && batch.size() < options_.max_export_batch_size) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      const uint64_t n = batch.size();
      lock.unlock();
      ExportBatch(std::move(batch));
      lock.lock();
      finished_ += n;
      progress_.notify_all();
    }
    flush_requested_ = false;
    if (stopping_) {
      drained_ = true;
      progress_.notify_all();
      return;
    }
  }
}

bool SpanExportQueue::ForceFlush(std::chrono::microseconds timeout) noexcept {
  std::unique_lock<std::mutex> lock(mu_);
  if (stopped_) return true;
  const uint64_t target = enqueued_;
  flush_requested_ = true;
  wake_.notify_one();
  return progress_.wait_for(lock, timeout, [&] { return finished_ >= target; });
}

bool SpanExportQueue::Shutdown(std::chrono::microseconds timeout) noexcept {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return true;
  }
  const bool flushed = ForceFlush(timeout);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    stopping_ = true;
    // What is still queued is dropped (a receiver that did not answer within the timeout),
    // and counted so.
    const uint64_t left = queue_.size();
    queue_.clear();
    if (left > 0) {
      counters_->dropped_failed.fetch_add(left, std::memory_order_relaxed);
      if (counters_->on_dropped_failed) counters_->on_dropped_failed(left);
    }
  }
  wake_.notify_one();
  // An export in flight runs to its own timeout and retries (OTEL_EXPORTER_OTLP_TIMEOUT):
  // a process that stops does not wait for a receiver that is down. A thread still in an
  // export is left to the process's exit, with the exporter it uses (this queue is only
  // shut down when the process ends; see ShutdownTracing).
  std::unique_lock<std::mutex> lock(mu_);
  if (!progress_.wait_for(lock, timeout, [&] { return drained_; })) {
    thread_.detach();
    return false;
  }
  lock.unlock();
  thread_.join();
  exporter_->Shutdown(std::chrono::microseconds(0));
  return flushed;
}

}  // namespace carapace::telemetry
