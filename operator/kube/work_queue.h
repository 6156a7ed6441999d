// The operator's work queue, with the semantics controllers rely on: a key is queued at
// most once however often it is added; a key being worked on is never handed to a second
// worker, and one added meanwhile is queued again when the first is done; failed keys come
// back after their rate limiter's delay. Keys are "namespace/name".
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "operator/kube/rate_limiter.h"

namespace carapace::kube {

// What the queue reports, for the workqueue_* metrics controller-runtime users know.
// Called with the queue's lock held: implementations must be quick and must not call back.
class WorkQueueMetrics {
 public:
  virtual ~WorkQueueMetrics() = default;
  virtual void Added() = 0;                 // a key was newly queued (workqueue_adds_total)
  virtual void Depth(size_t depth) = 0;     // keys waiting for a worker
  virtual void Queued(Duration waited) = 0;  // from being queued to being handed out
  virtual void Worked(Duration took) = 0;    // from being handed out to Done()
  virtual void Retried() = 0;               // AddRateLimited
};

class WorkQueue {
 public:
  explicit WorkQueue(std::unique_ptr<RateLimiter> limiter = std::make_unique<DefaultControllerRateLimiter>());
  ~WorkQueue();

  void Add(const std::string& key);
  // Adds `key` once `delay` has passed (at once when it is not positive). An earlier
  // pending time for the same key wins.
  void AddAfter(const std::string& key, Duration delay);
  // After a failure: adds `key` after its rate limiter's delay.
  void AddRateLimited(const std::string& key);
  // After a success: the key's backoff starts afresh.
  void Forget(const std::string& key);
  int Requeues(const std::string& key) const { return limiter_->Requeues(key); }

  // Blocks until a key is ready (true) or the queue is shut down and drained (false).
  bool Get(std::string* key);
  // The worker is done with `key`; if it was added meanwhile, it is queued again.
  void Done(const std::string& key);

  // Wakes every Get(); queued keys are still handed out, added ones are dropped.
  void ShutDown();
  size_t Len() const;
  // Set before the queue is used; not owned.
  void SetMetrics(WorkQueueMetrics* metrics) { metrics_ = metrics; }

 private:
  void AddLocked(const std::string& key);
  void Enqueue(const std::string& key);
  void DelayLoop();

  std::unique_ptr<RateLimiter> limiter_;
  mutable std::mutex mu_;
  std::condition_variable ready_;    // a key was queued, or shutdown
  std::condition_variable delayed_;  // the delay loop's wake-up
  std::deque<std::string> queue_;
  std::set<std::string> dirty_;       // queued, or added while being processed
  std::set<std::string> processing_;
  std::map<std::string, TimePoint> waiting_;  // key -> when it is due
  std::map<std::string, TimePoint> since_;    // queued or processing key -> since when (metrics)
  WorkQueueMetrics* metrics_ = nullptr;
  bool shutting_down_ = false;
  std::thread delay_thread_;
};

}  // namespace carapace::kube
