// Retries, circuit breakers, failover and metrics around the model endpoints.
#include "worker/model/resilient_model.h"

#include <algorithm>
#include <thread>

#include "common/log.h"

namespace carapace {

namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The service could not answer now; the same call may succeed later or elsewhere.
bool Transient(StatusCode c) { return c == StatusCode::kUnavailable || c == StatusCode::kResourceExhausted; }

// The endpoint failed, rather than the request: count it against the endpoint and try the next.
bool EndpointFailure(StatusCode c) { return Transient(c) || c == StatusCode::kDeadlineExceeded || c == StatusCode::kAborted; }

// This endpoint refused (its key, its model name) but another, with its own key and model,
// may not: try the next without retrying this one or counting it as an outage.
bool EndpointRefused(StatusCode c) { return c == StatusCode::kPermissionDenied || c == StatusCode::kNotFound; }

}  // namespace

bool CircuitBreaker::Allow(Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!tripped_) return true;
  if (now - opened_at_ < open_for_ || trial_in_flight_) return false;
  trial_in_flight_ = true;  // half-open: this call decides
  return true;
}

void CircuitBreaker::Success() {
  std::lock_guard<std::mutex> lock(mu_);
  failures_ = 0;
  tripped_ = false;
  trial_in_flight_ = false;
}

void CircuitBreaker::Failure(Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  ++failures_;
  if (trial_in_flight_ || failures_ >= threshold_) {
    tripped_ = true;
    opened_at_ = now;
  }
  trial_in_flight_ = false;
}

bool CircuitBreaker::open(Clock::time_point now) const {
  std::lock_guard<std::mutex> lock(mu_);
  return tripped_ && (now - opened_at_ < open_for_ || trial_in_flight_);
}

ResilientModel::ResilientModel(std::vector<ModelEndpoint> endpoints, ResilienceOptions options,
                               prometheus::Registry* metrics)
    : endpoints_(std::move(endpoints)), options_(std::move(options)), rng_(std::random_device{}()) {
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    breakers_.push_back(std::make_unique<CircuitBreaker>(options_.breaker.failure_threshold,
                                                         std::chrono::seconds(options_.breaker.open_seconds)));
  }
  if (metrics) {
    metrics_ = std::make_unique<ModelMetrics>(*metrics);
    for (const auto& ep : endpoints_) metrics_->Declare(ep.backend, ep.model);
  }
  if (!options_.sleep) options_.sleep = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
}

std::chrono::milliseconds ResilientModel::Backoff(int64_t attempt) {
  const int64_t shift = std::min<int64_t>(attempt - 1, 30);
  const int64_t cap = std::min(options_.retry.max_backoff_ms, options_.retry.initial_backoff_ms << shift);
  std::lock_guard<std::mutex> lock(rng_mu_);
  return std::chrono::milliseconds(std::uniform_int_distribution<int64_t>(0, std::max<int64_t>(cap, 0))(rng_));
}

Status ResilientModel::Each(const std::function<Status(ModelEndpoint&)>& call, const std::function<bool()>& started) {
  std::string failures;
  Status last = Unavailable("spec.model has no endpoints");
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    ModelEndpoint& ep = endpoints_[i];
    CircuitBreaker& breaker = *breakers_[i];
    if (i > 0 && metrics_) metrics_->Fallback(endpoints_[i - 1].backend, endpoints_[i - 1].model);
    if (!breaker.Allow(Clock::now())) {
      last = Unavailable(ep.describe + ": circuit open after repeated failures; skipped");
      failures += (failures.empty() ? "" : "; ") + last.message();
      continue;
    }
    for (int64_t attempt = 1;; ++attempt) {
      Status s = call(ep);
      if (s.ok()) {
        breaker.Success();
        return s;
      }
      // Settle the breaker either way: an endpoint that answered, even with a refusal, is up.
      if (EndpointFailure(s.code())) breaker.Failure(Clock::now());
      else breaker.Success();
      last = s;
      if (started()) return s;  // output already went out: the caller asks again whole
      if (!Transient(s.code()) || attempt >= options_.retry.max_attempts || !breaker.Allow(Clock::now())) break;
      auto delay = Backoff(attempt);
      log::Warn("model call failed; retrying", {{"endpoint", ep.describe}, {"attempt", attempt},
                                                {"delayMs", delay.count()}, {"error", s.ToString()}});
      if (metrics_) metrics_->Retry(ep.backend, ep.model);
      options_.sleep(delay);
    }
    failures += (failures.empty() ? "" : "; ") + last.message();
    if (!EndpointFailure(last.code()) && !EndpointRefused(last.code())) return last;  // a bad request everywhere
  }
  if (endpoints_.size() > 1) return Status(last.code(), "no model endpoint could answer: " + failures);
  return last;
}

Status ResilientModel::Chat(const ModelRequest& request, ChatStream* out) {
  int64_t attempts = 0;
  return Each(
      [&](ModelEndpoint& ep) {
        ++attempts;
        const Clock::time_point start = Clock::now();
        std::optional<Clock::time_point> first_token;
        ChatStream attempt([&](const ChatStreamEvent& e) {
          using K = ChatStreamEvent::Kind;
          if (!first_token && e.kind == K::kGenerating) {
            first_token = Clock::now();
            if (metrics_) metrics_->FirstToken(ep.backend, ep.model, SecondsSince(start));
          }
          switch (e.kind) {
            case K::kGenerating: out->Generating(); break;
            case K::kText: out->Text(e.text); break;
            case K::kToolCall:
              if (!e.call.malformed.empty() && metrics_) metrics_->MalformedToolCall(ep.backend, ep.model);
              out->Call(e.call);
              break;
            case K::kUsage: out->Usage(e.prompt_tokens, e.completion_tokens, e.tokens_estimated); break;
            case K::kFinish: out->Finish(e.text); break;
            case K::kError: out->Error(e.text); break;
          }
        });
        Status s = ep.client->Chat(request, &attempt);
        if (metrics_) {
          metrics_->Request(ep.backend, ep.model, s.ok() ? "ok" : StatusCodeName(s.code()), SecondsSince(start));
          if (s.ok()) metrics_->Tokens(ep.backend, ep.model, attempt.response().prompt_tokens, attempt.response().completion_tokens);
        }
        if (s.ok()) {
          out->AnsweredBy(ep.describe);
          out->Attempts(attempts);
          auto ms = [](Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
          if (first_token) out->Timing(ms(*first_token - start), ms(Clock::now() - *first_token));
        } else {
          out->Error(s.message());
        }
        return s;
      },
      [&] { return out->started(); });
}

Result<std::vector<std::vector<float>>> ResilientModel::Embed(const std::vector<std::string>& texts) {
  std::vector<std::vector<float>> vectors;
  Status s = Each(
      [&](ModelEndpoint& ep) {
        auto r = ep.client->Embed(texts);
        if (!r.ok()) return r.status();
        vectors = std::move(*r);
        return Status::Ok();
      },
      [] { return false; });
  if (!s.ok()) return s;
  return vectors;
}

std::optional<int64_t> ResilientModel::ContextWindow() {
  if (endpoints_.empty()) return std::nullopt;
  return endpoints_[0].client->ContextWindow();
}

Status ResilientModel::CheckHealth() {
  Status first;
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    Status s = endpoints_[i].client->CheckHealth();
    if (s.ok()) return s;
    if (i == 0) first = s;
  }
  return first;
}

}  // namespace carapace
