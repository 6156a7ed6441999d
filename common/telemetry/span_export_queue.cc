#include "common/telemetry/span_export_queue.h"

#include <opentelemetry/nostd/span.h>
#include <opentelemetry/sdk/common/exporter_utils.h>

namespace carapace::telemetry {

namespace sdktrace = opentelemetry::sdk::trace;

void ExportQueueCounters::Add(Kind kind, uint64_t n) {
  switch (kind) {
    case Kind::kExported: exported.fetch_add(n, std::memory_order_relaxed); break;
    case Kind::kDroppedFull: dropped_full.fetch_add(n, std::memory_order_relaxed); break;
    case Kind::kDroppedFailed: dropped_failed.fetch_add(n, std::memory_order_relaxed); break;
  }
  std::lock_guard<std::mutex> lock(hook_mu_);
  if (hook_) hook_(kind, n);
}

void ExportQueueCounters::SetHook(std::function<void(Kind, uint64_t)> hook) {
  std::lock_guard<std::mutex> lock(hook_mu_);
  hook_ = std::move(hook);
}

namespace {

// std::chrono::microseconds::max() is the SDK's "no timeout": waited for without a deadline
// (a deadline that far out overflows the clock).
template <typename Predicate>
bool WaitUpTo(std::condition_variable& cv, std::unique_lock<std::mutex>& lock, std::chrono::microseconds timeout,
              Predicate done) {
  if (timeout >= std::chrono::hours(24 * 365)) {
    cv.wait(lock, done);
    return true;
  }
  return cv.wait_for(lock, timeout, done);
}

}  // namespace

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
      // The first span starts the schedule's clock; a whole batch need not wait for it.
      if (queue_.size() == 1 || queue_.size() >= options_.max_export_batch_size) wake_.notify_one();
    }
  }
  if (full) counters_->Add(ExportQueueCounters::Kind::kDroppedFull, 1);
}

void SpanExportQueue::ExportBatch(Batch batch) {
  const uint64_t n = batch.size();
  const auto result =
      exporter_->Export(opentelemetry::nostd::span<std::unique_ptr<sdktrace::Recordable>>(batch.data(), batch.size()));
  counters_->Add(result == opentelemetry::sdk::common::ExportResult::kSuccess ? ExportQueueCounters::Kind::kExported
                                                                              : ExportQueueCounters::Kind::kDroppedFailed,
                 n);
}

void SpanExportQueue::Drain() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    // An idle agent ends no spans: the thread sleeps until one comes (no wake-up every
    // schedule_delay, and no spinning when OTEL_BSP_SCHEDULE_DELAY is 0), then gives the
    // batch up to schedule_delay to fill.
    wake_.wait(lock, [&] { return stopping_ || flush_requested_ || !queue_.empty(); });
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
    if (stopping_) return;
  }
}

bool SpanExportQueue::ForceFlush(std::chrono::microseconds timeout) noexcept {
  std::unique_lock<std::mutex> lock(mu_);
  if (stopped_) return true;
  const uint64_t target = enqueued_;
  flush_requested_ = true;
  wake_.notify_one();
  return WaitUpTo(progress_, lock, timeout, [&] { return finished_ >= target; });
}

bool SpanExportQueue::Shutdown(std::chrono::microseconds timeout) noexcept {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return true;
  }
  const bool flushed = ForceFlush(timeout);
  uint64_t left = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    stopping_ = true;
    // What is still queued is dropped (a receiver that did not take it within the timeout),
    // and counted so.
    left = queue_.size();
    queue_.clear();
  }
  if (left > 0) counters_->Add(ExportQueueCounters::Kind::kDroppedFailed, left);
  wake_.notify_one();
  // An export in flight ends within its deadline; nothing may outlive the exporter.
  if (thread_.joinable()) thread_.join();
  exporter_->Shutdown(std::chrono::microseconds(0));
  return flushed;
}

}  // namespace carapace::telemetry
