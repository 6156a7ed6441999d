// Work-queue rate limiters.
#include "operator/kube/rate_limiter.h"

#include <algorithm>
#include <cmath>

namespace carapace::kube {

Duration ItemExponentialRateLimiter::When(const std::string& key, TimePoint) {
  std::lock_guard<std::mutex> lock(mu_);
  const int failures = failures_[key]++;
  // 2^failures overflows long before the cap matters; compare in floating point.
  const double delay = static_cast<double>(base_.count()) * std::pow(2.0, std::min(failures, 62));
  if (delay >= static_cast<double>(max_.count())) return max_;
  return Duration(static_cast<Duration::rep>(delay));
}

void ItemExponentialRateLimiter::Forget(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  failures_.erase(key);
}

int ItemExponentialRateLimiter::Requeues(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = failures_.find(key);
  return it == failures_.end() ? 0 : it->second;
}

Duration TokenBucketRateLimiter::When(const std::string&, TimePoint now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (started_) {
    const double elapsed = std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min(static_cast<double>(burst_), tokens_ + std::max(0.0, elapsed) * qps_);
  }
  started_ = true;
  last_ = now;
  tokens_ -= 1;  // taken now; a negative balance is a wait
  if (tokens_ >= 0) return Duration::zero();
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(-tokens_ / qps_));
}

Duration DefaultControllerRateLimiter::When(const std::string& key, TimePoint now) {
  return std::max(item_.When(key, now), bucket_.When(key, now));
}

}  // namespace carapace::kube
