// Waiting out a model outage, holding a turn the service refused, and refusing to take a
// reply cut short for an answer.
#include "worker/runtime/model_outcome.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <random>

#include "common/json_text.h"
#include "common/log.h"
#include "worker/runtime/runner.h"

namespace carapace {

bool IsContextLengthError(const std::string& message) {
  std::string m = message;
  std::transform(m.begin(), m.end(), m.begin(), [](unsigned char c) { return std::tolower(c); });
  // The services' own words:
  //  - OpenAI and vLLM's OpenAI server (400): "This model's maximum context length is 4096
  //    tokens. However, you requested 5000 tokens ..." (OpenAI's error code:
  //    context_length_exceeded);
  //  - vLLM's engine, also what Triton's vLLM backend passes on: "The decoder prompt
  //    (length 5000) is longer than the maximum model length of 4096" / "... exceeds the
  //    maximum model length";
  //  - TensorRT-LLM: "Prompt length (5000) exceeds maximum input length (4096)";
  //  - llama.cpp's llama-server: "the request exceeds the available context size, try
  //    increasing it" (type exceed_context_size_error);
  //  - Anthropic-style gateways: "prompt is too long".
  for (const char* needle : {"maximum context length", "context_length_exceeded", "maximum model length",
                             "exceeds maximum input length", "exceed_context_size", "exceeds the available context size",
                             "prompt is too long", "context window"}) {
    if (m.find(needle) != std::string::npos) return true;
  }
  return false;
}

ModelFailure ClassifyModelFailure(const Status& failure) {
  if (IsContextLengthError(failure.message())) return ModelFailure::kContextLength;
  switch (failure.code()) {
    case StatusCode::kUnavailable:
    case StatusCode::kResourceExhausted:
    case StatusCode::kDeadlineExceeded:
    case StatusCode::kAborted:
    case StatusCode::kIoError:
    case StatusCode::kInternal:
      return ModelFailure::kUnavailable;
    case StatusCode::kFailedPrecondition:
      return ModelFailure::kNeverAnswers;
    default:
      return ModelFailure::kRefused;  // 401/403, unknown model, a request the service calls invalid
  }
}

int64_t ModelRetryDelayMs(int64_t attempt) {
  int64_t ceiling = kModelRetryInitialMs;
  for (int64_t i = 1; i < attempt && ceiling < kModelRetryMaxMs; ++i) ceiling *= 2;
  ceiling = std::min(ceiling, kModelRetryMaxMs);
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_int_distribution<int64_t>(ceiling / 2, ceiling)(rng);
}

void AddStreamFigures(const ModelResponse& r, nlohmann::json* data) {
  (*data)["retries"] = std::max<int64_t>(r.attempts - 1, 0);
  if (r.first_token_ms < 0) return;
  (*data)["firstTokenMs"] = r.first_token_ms;
  // Tokens after the first over the time they took; a reply that came in one piece has none.
  if (r.stream_ms > 0 && r.completion_tokens > 1) {
    const double per_second = static_cast<double>(r.completion_tokens - 1) * 1000.0 / static_cast<double>(r.stream_ms);
    (*data)["tokensPerSecond"] = std::round(per_second * 10) / 10;
  }
}

bool IsCutShortFinish(const std::string& finish_reason) {
  return finish_reason == "length" || finish_reason == "max_tokens" || finish_reason == "content_filter";
}

Status Runner::ModelCallFailed(const Status& failure) {
  const std::string error = ValidUtf8(failure.message()).get<std::string>();
  const ModelFailure kind = ClassifyModelFailure(failure);
  switch (kind) {
    case ModelFailure::kNeverAnswers:
      return Finish(Phase::kFailed, "model call failed: " + error, "");
    case ModelFailure::kContextLength:
      if (auto window = WindowFromRefusal(error); window && !run_.spec.model.context_tokens) learned_window_ = window;
      // The prompt did not fit after all (an estimate is an estimate, a fallback's window is
      // smaller): fold all but the current turn and ask again. Only when nothing is left to
      // fold does the turn wait for a person.
      if (state_.awaiting_model && !summarizing_) {
        CARAPACE_ASSIGN_OR_RETURN(bool compacted, Compact("the model service said the prompt does not fit: " + error, true));
        if (compacted) return Status::Ok();
      }
      [[fallthrough]];
    case ModelFailure::kRefused: {
      const bool context = kind == ModelFailure::kContextLength;
      next_try_at_ms_ = 0;
      model_unavailable_since_ms_ = 0;
      const std::string reason =
          std::string(context ? "ContextLengthExceeded: the prompt does not fit the model's context window: "
                              : "ModelRefused: the model service refused the request: ") +
          error + ". The turn waits: a spec revision that fixes it, or resume, tries it again";
      log::Warn("the model service refused the turn; it waits for a person",
                {{"agentrun", run_.metadata.name}, {"step", state_.step}, {"error", error}});
      return Record({Make(event_type::kPhaseChanged, {{"phase", PhaseName(Phase::kDegraded)},
                                                      {"reason", reason},
                                                      {"cause", context ? "context_length" : "model_refused"}})},
                    true);
    }
    case ModelFailure::kUnavailable:
      break;
  }
  const int64_t now = options_.clock->NowMillis();
  if (model_unavailable_since_ms_ == 0) model_unavailable_since_ms_ = now;
  const int64_t attempt = state_.model_failures + 1;
  const int64_t delay = ModelRetryDelayMs(attempt);
  next_try_at_ms_ = now + delay;
  log::Warn("no model answered; the turn waits and tries again",
            {{"agentrun", run_.metadata.name}, {"step", state_.step}, {"attempt", attempt}, {"retryInMs", delay},
             {"error", error}});
  // Not synced: a lost one only means the next try comes sooner.
  return Record({Make(event_type::kModelUnavailable, {{"attempt", attempt}, {"error", error}, {"retryInMs", delay}})},
                false);
}

Result<bool> Runner::HandleCutReply(const ModelResponse& response, int64_t duration_ms) {
  // A call the cut broke off mid-way parses as malformed: it is no more complete than text.
  const bool complete_call = std::any_of(response.tool_calls.begin(), response.tool_calls.end(),
                                         [](const ToolCall& c) { return c.malformed.empty(); });
  if (complete_call || !IsCutShortFinish(response.finish_reason)) return false;
  // The text before the cut is kept in the log for people, never taken as the answer or
  // shown to the model as its own words.
  Event cut = Make(event_type::kModelReplyCut, {{"finishReason", response.finish_reason},
                                                {"text", ValidUtf8(response.text.substr(0, 4096))},
                                                {"promptTokens", response.prompt_tokens},
                                                {"completionTokens", response.completion_tokens},
                                                {"answeredBy", response.answered_by},
                                                {"durationMs", duration_ms}});
  AddTokenWindow(&cut.data);
  AddStreamFigures(response, &cut.data);
  if (state_.cut_replies == 0) {
    log::Warn("the model's reply was cut short; asking again",
              {{"agentrun", run_.metadata.name}, {"step", state_.step}, {"finishReason", response.finish_reason}});
    CARAPACE_RETURN_IF_ERROR(Record({cut}, false));
    return true;
  }
  CARAPACE_RETURN_IF_ERROR(Record({cut}, false));
  const std::string reason = "the model's reply was cut short twice (finish_reason \"" + response.finish_reason +
                             "\") before a complete answer or tool call";
  CARAPACE_RETURN_IF_ERROR(EndTurn(Phase::kFailed, reason));
  return true;
}

}  // namespace carapace
