// The deduplicating, rate-limited work queue.
#include "operator/kube/work_queue.h"

namespace carapace::kube {

WorkQueue::WorkQueue(std::unique_ptr<RateLimiter> limiter)
    : limiter_(std::move(limiter)), delay_thread_([this] { DelayLoop(); }) {}

WorkQueue::~WorkQueue() {
  ShutDown();
  if (delay_thread_.joinable()) delay_thread_.join();
}

void WorkQueue::AddLocked(const std::string& key) {
  if (shutting_down_ || dirty_.count(key)) return;
  dirty_.insert(key);
  if (metrics_) metrics_->Added();
  if (processing_.count(key)) return;  // queued again by Done()
  Enqueue(key);
}

void WorkQueue::Enqueue(const std::string& key) {
  queue_.push_back(key);
  if (metrics_) {
    since_[key] = std::chrono::steady_clock::now();
    metrics_->Depth(queue_.size());
  }
  ready_.notify_one();
}

void WorkQueue::Add(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  AddLocked(key);
}

void WorkQueue::AddAfter(const std::string& key, Duration delay) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shutting_down_) return;
  if (delay <= Duration::zero()) {
    AddLocked(key);
    return;
  }
  const TimePoint due = std::chrono::steady_clock::now() + delay;
  auto it = waiting_.find(key);
  if (it != waiting_.end() && it->second <= due) return;
  waiting_[key] = due;
  delayed_.notify_one();
}

void WorkQueue::AddRateLimited(const std::string& key) {
  if (metrics_) {
    std::lock_guard<std::mutex> lock(mu_);
    metrics_->Retried();
  }
  AddAfter(key, limiter_->When(key, std::chrono::steady_clock::now()));
}

void WorkQueue::Forget(const std::string& key) { limiter_->Forget(key); }

bool WorkQueue::Get(std::string* key) {
  std::unique_lock<std::mutex> lock(mu_);
  ready_.wait(lock, [&] { return !queue_.empty() || shutting_down_; });
  if (queue_.empty()) return false;
  *key = queue_.front();
  queue_.pop_front();
  processing_.insert(*key);
  dirty_.erase(*key);
  if (metrics_) {
    const TimePoint now = std::chrono::steady_clock::now();
    auto it = since_.find(*key);
    if (it != since_.end()) {
      metrics_->Queued(now - it->second);
      it->second = now;
    }
    metrics_->Depth(queue_.size());
  }
  return true;
}

void WorkQueue::Done(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  processing_.erase(key);
  if (metrics_) {
    auto it = since_.find(key);
    if (it != since_.end()) {
      metrics_->Worked(std::chrono::steady_clock::now() - it->second);
      since_.erase(it);
    }
  }
  if (dirty_.count(key)) Enqueue(key);
}

void WorkQueue::ShutDown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutting_down_ = true;
  ready_.notify_all();
  delayed_.notify_all();
}

size_t WorkQueue::Len() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

void WorkQueue::DelayLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!shutting_down_) {
    const TimePoint now = std::chrono::steady_clock::now();
    TimePoint next = TimePoint::max();
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if (it->second <= now) {
        AddLocked(it->first);
        it = waiting_.erase(it);
      } else {
        next = std::min(next, it->second);
        ++it;
      }
    }
    if (next == TimePoint::max()) delayed_.wait(lock);
    else delayed_.wait_until(lock, next);
  }
}

}  // namespace carapace::kube
