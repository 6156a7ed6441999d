// How long a key waits before it is worked on again (the operator's work queue). The same
// policies as Kubernetes controllers use: per item, exponential backoff from 5 ms to 1000 s
// for a key that keeps failing; overall, a token bucket (10/s, burst 100) so a storm of
// failures cannot flood the API server; the queue waits for the longer of the two.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <string>

namespace carapace::kube {

using Duration = std::chrono::nanoseconds;
using TimePoint = std::chrono::steady_clock::time_point;

class RateLimiter {
 public:
  virtual ~RateLimiter() = default;
  // The delay before `key` may be processed again, given that it is re-queued at `now`.
  virtual Duration When(const std::string& key, TimePoint now) = 0;
  // The key succeeded: its backoff starts afresh.
  virtual void Forget(const std::string& key) = 0;
  virtual int Requeues(const std::string& key) const = 0;
};

// base * 2^failures, at most `max`.
class ItemExponentialRateLimiter : public RateLimiter {
 public:
  ItemExponentialRateLimiter(Duration base = std::chrono::milliseconds(5), Duration max = std::chrono::seconds(1000))
      : base_(base), max_(max) {}
  Duration When(const std::string& key, TimePoint now) override;
  void Forget(const std::string& key) override;
  int Requeues(const std::string& key) const override;

 private:
  Duration base_, max_;
  mutable std::mutex mu_;
  std::map<std::string, int> failures_;
};

// `qps` tokens a second, at most `burst` saved up; each When() takes one, waiting for it.
class TokenBucketRateLimiter : public RateLimiter {
 public:
  TokenBucketRateLimiter(double qps = 10, int burst = 100) : qps_(qps), burst_(burst), tokens_(burst) {}
  Duration When(const std::string& key, TimePoint now) override;
  void Forget(const std::string&) override {}
  int Requeues(const std::string&) const override { return 0; }

 private:
  double qps_;
  int burst_;
  std::mutex mu_;
  double tokens_;
  TimePoint last_{};
  bool started_ = false;
};

// The longest delay of the two: the controller default.
class DefaultControllerRateLimiter : public RateLimiter {
 public:
  Duration When(const std::string& key, TimePoint now) override;
  void Forget(const std::string& key) override { item_.Forget(key); }
  int Requeues(const std::string& key) const override { return item_.Requeues(key); }

 private:
  ItemExponentialRateLimiter item_;
  TokenBucketRateLimiter bucket_;
};

}  // namespace carapace::kube
