// Model call metrics.
#include "worker/model/model_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "common/status.h"

namespace carapace {

namespace {

// Model calls take from milliseconds (a cached reply) to minutes (a long generation).
const prometheus::Histogram::BucketBoundaries kDurationBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                                  2.5,   5,    10,    30,   60,  120, 300};
// The outcomes besides "ok" (StatusCodeName's names). All of them, not only those the
// backends produce today: a few zero series per endpoint cost less than a missed error.
const StatusCode kErrorCodes[] = {StatusCode::kInvalidArgument, StatusCode::kNotFound,
                                  StatusCode::kAlreadyExists,   StatusCode::kFailedPrecondition,
                                  StatusCode::kBusy,            StatusCode::kCorruption,
                                  StatusCode::kIoError,         StatusCode::kPermissionDenied,
                                  StatusCode::kDeadlineExceeded, StatusCode::kUnavailable,
                                  StatusCode::kResourceExhausted, StatusCode::kInternal,
                                  StatusCode::kAborted,         StatusCode::kVolumeFull};
const prometheus::Histogram::BucketBoundaries kFirstTokenBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                                    0.25,  0.5,    1,     2.5,  5,     10};

}  // namespace

ModelMetrics::ModelMetrics(prometheus::Registry& r)
    : requests_(prometheus::BuildCounter()
                    .Name("carapace_model_requests_total")
                    .Help("Model calls by backend, model and outcome (ok or the error code).")
                    .Register(r)),
      duration_(prometheus::BuildHistogram()
                    .Name("carapace_model_request_duration_seconds")
                    .Help("Time from sending a model call to its last token.")
                    .Register(r)),
      first_token_(prometheus::BuildHistogram()
                       .Name("carapace_model_time_to_first_token_seconds")
                       .Help("Time from sending a model call to the first streamed text or tool call.")
                       .Register(r)),
      tokens_(prometheus::BuildCounter()
                  .Name("carapace_model_tokens_total")
                  .Help("Tokens used by model calls, by direction (prompt or completion).")
                  .Register(r)),
      retries_(prometheus::BuildCounter()
                   .Name("carapace_model_retries_total")
                   .Help("Model calls sent again to the same endpoint after a retryable error.")
                   .Register(r)),
      fallbacks_(prometheus::BuildCounter()
                     .Name("carapace_model_fallbacks_total")
                     .Help("Times an endpoint could not answer and the next one in spec.model.fallbacks was tried.")
                     .Register(r)),
      malformed_(prometheus::BuildCounter()
                     .Name("carapace_model_malformed_tool_calls_total")
                     .Help("Tool calls the model wrote that could not be parsed; each is returned to the model as an error.")
                     .Register(r)) {}

void ModelMetrics::Declare(const std::string& backend, const std::string& model) {
  // Every outcome, errors included: a series that first appears with the value 1 is a rise
  // rate() and increase() cannot see, so each process would hide its first error of a kind.
  requests_.Add({{"backend", backend}, {"model", model}, {"outcome", "ok"}});
  for (StatusCode code : kErrorCodes) {
    requests_.Add({{"backend", backend}, {"model", model}, {"outcome", StatusCodeName(code)}});
  }
  for (const char* direction : {"prompt", "completion"}) {
    tokens_.Add({{"backend", backend}, {"model", model}, {"direction", direction}});
  }
  retries_.Add({{"backend", backend}, {"model", model}});
  fallbacks_.Add({{"backend", backend}, {"model", model}});
  malformed_.Add({{"backend", backend}, {"model", model}});
}

void ModelMetrics::Request(const std::string& backend, const std::string& model, const std::string& outcome,
                           double seconds) {
  requests_.Add({{"backend", backend}, {"model", model}, {"outcome", outcome}}).Increment();
  duration_.Add({{"backend", backend}, {"model", model}}, kDurationBuckets).Observe(seconds);
}

void ModelMetrics::FirstToken(const std::string& backend, const std::string& model, double seconds) {
  first_token_.Add({{"backend", backend}, {"model", model}}, kFirstTokenBuckets).Observe(seconds);
}

void ModelMetrics::Tokens(const std::string& backend, const std::string& model, int64_t prompt, int64_t completion) {
  tokens_.Add({{"backend", backend}, {"model", model}, {"direction", "prompt"}}).Increment(static_cast<double>(prompt));
  tokens_.Add({{"backend", backend}, {"model", model}, {"direction", "completion"}})
      .Increment(static_cast<double>(completion));
}

void ModelMetrics::Retry(const std::string& backend, const std::string& model) {
  retries_.Add({{"backend", backend}, {"model", model}}).Increment();
}

void ModelMetrics::Fallback(const std::string& backend, const std::string& model) {
  fallbacks_.Add({{"backend", backend}, {"model", model}}).Increment();
}

void ModelMetrics::MalformedToolCall(const std::string& backend, const std::string& model) {
  malformed_.Add({{"backend", backend}, {"model", model}}).Increment();
}

}  // namespace carapace
