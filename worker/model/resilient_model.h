// Behaving well against real inference services: every endpoint of spec.model (the primary,
// then spec.model.fallbacks in order) behind a circuit breaker, retries with exponential
// backoff and full jitter before the first token, failover to the next endpoint when one
// cannot answer, and metrics for all of it. A reply that breaks after tokens arrived is not
// retried here: the partial reply has been streamed, so the runtime asks again whole.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "worker/model/model_backend.h"
#include "worker/model/model_metrics.h"

namespace carapace {

// Closed: calls pass. After `threshold` failures in a row: open, calls are refused for
// `open_for`. Then half-open: one trial call passes; its success closes the breaker, its
// failure opens it again. Thread-safe.
class CircuitBreaker {
 public:
  using Clock = std::chrono::steady_clock;
  CircuitBreaker(int64_t threshold, std::chrono::milliseconds open_for) : threshold_(threshold), open_for_(open_for) {}

  bool Allow(Clock::time_point now);
  void Success();
  void Failure(Clock::time_point now);
  bool open(Clock::time_point now) const;

 private:
  mutable std::mutex mu_;
  int64_t threshold_;
  std::chrono::milliseconds open_for_;
  int64_t failures_ = 0;
  bool tripped_ = false;
  bool trial_in_flight_ = false;
  Clock::time_point opened_at_;
};

struct ModelEndpoint {
  std::string describe;  // ModelEndpointSpec::Describe()
  std::string backend;   // "openai", "triton", "scripted"
  std::string model;     // the model's name ("scripted" for the scripted backend)
  std::unique_ptr<ModelBackend> client;
};

struct ResilienceOptions {
  RetrySpec retry;
  CircuitBreakerSpec breaker;
  // How to wait between attempts; tests replace it to run without sleeping.
  std::function<void(std::chrono::milliseconds)> sleep;
};

class ResilientModel : public ModelBackend {
 public:
  // `metrics` may be null (no metrics).
  ResilientModel(std::vector<ModelEndpoint> endpoints, ResilienceOptions options, prometheus::Registry* metrics);

  Status Chat(const ModelRequest& request, ChatStream* out) override;
  Result<std::vector<std::vector<float>>> Embed(const std::vector<std::string>& texts) override;
  // Ok when any endpoint answers; otherwise the first endpoint's error.
  Status CheckHealth() override;
  // The primary endpoint's: the window the spec's model has.
  std::optional<int64_t> ContextWindow() override;

  // The delay before attempt `attempt` + 1 (attempt >= 1): uniform in [0, min(max, initial * 2^(attempt-1))].
  std::chrono::milliseconds Backoff(int64_t attempt);

 private:
  // Runs `call` against each endpoint in turn with retries; `started` says whether output
  // already reached the caller (then nothing is retried).
  Status Each(const std::function<Status(ModelEndpoint&)>& call, const std::function<bool()>& started);

  std::vector<ModelEndpoint> endpoints_;
  std::vector<std::unique_ptr<CircuitBreaker>> breakers_;
  ResilienceOptions options_;
  std::unique_ptr<ModelMetrics> metrics_;
  std::mutex rng_mu_;
  std::mt19937_64 rng_;
};

}  // namespace carapace
