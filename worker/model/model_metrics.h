// Prometheus metrics of model calls (docs/models.md lists them). One instance per registry
// user; families are shared, so several backends can report into one registry.
#pragma once

#include <cstdint>
#include <string>

namespace prometheus {
class Registry;
template <typename T>
class Family;
class Counter;
class Histogram;
}  // namespace prometheus

namespace carapace {

class ModelMetrics {
 public:
  explicit ModelMetrics(prometheus::Registry& registry);

  // Creates the endpoint's counters at zero, every request outcome included, so every
  // family is exported (dashboards and alerts see 0, not "no data") and the first error of
  // a kind is an increase rate() can see.
  void Declare(const std::string& backend, const std::string& model);
  // One finished call; outcome is "ok" or the error's code name ("unavailable", ...).
  void Request(const std::string& backend, const std::string& model, const std::string& outcome, double seconds);
  void FirstToken(const std::string& backend, const std::string& model, double seconds);
  void Tokens(const std::string& backend, const std::string& model, int64_t prompt, int64_t completion);
  void Retry(const std::string& backend, const std::string& model);
  // The endpoint (backend, model) could not answer and the next one was tried.
  void Fallback(const std::string& backend, const std::string& model);
  void MalformedToolCall(const std::string& backend, const std::string& model);

 private:
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& duration_;
  prometheus::Family<prometheus::Histogram>& first_token_;
  prometheus::Family<prometheus::Counter>& tokens_;
  prometheus::Family<prometheus::Counter>& retries_;
  prometheus::Family<prometheus::Counter>& fallbacks_;
  prometheus::Family<prometheus::Counter>& malformed_;
};

}  // namespace carapace
