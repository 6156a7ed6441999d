// What a failed or cut-short model call means for a long-lived agent (docs/long-life.md):
// nothing outside the agent ends it. A service that cannot be reached is waited out; one
// that refuses the request holds the turn for a person; a reply cut short is not an answer.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "worker/model/model_backend.h"

namespace carapace {

enum class ModelFailure {
  kUnavailable,    // not reachable, overloaded, too slow, failing inside: wait and try again
  kRefused,        // the key, the model name or the request was refused: no retry fixes it
  kContextLength,  // the prompt does not fit the model's context window
  kNeverAnswers,   // the backend says it never will answer (the scripted backend's end)
};

// Classifies the status a model call failed with (after the model layer's own retries and
// fallbacks). A context-length error is recognised by the services' own wording, whatever
// code carried it (vLLM and OpenAI answer 400; Triton may answer INTERNAL).
ModelFailure ClassifyModelFailure(const Status& failure);
bool IsContextLengthError(const std::string& message);

// The wait before try `attempt` + 1 of a model call no endpoint answered: 1 s doubling to
// 5 min, each drawn uniformly from its upper half so agents that lost one service together
// do not come back in lockstep.
int64_t ModelRetryDelayMs(int64_t attempt);
inline constexpr int64_t kModelRetryInitialMs = 1000;
inline constexpr int64_t kModelRetryMaxMs = 5 * 60 * 1000;

// How long a one-shot `carapace run` waits for an unreachable model when the spec does not
// say (recovery.modelUnavailableSeconds).
inline constexpr int64_t kDefaultModelUnavailableSeconds = 300;

// finish_reason values that mean the reply stopped before the model was done: "length"
// (OpenAI, vLLM, llama.cpp, Triton's vLLM backend), "max_tokens" (Anthropic-style
// gateways), "content_filter".
bool IsCutShortFinish(const std::string& finish_reason);

// Adds to a model_response (or model_reply_cut) event what a person comparing model services
// reads off the log: retries (requests past the first, over every endpoint tried),
// firstTokenMs (request to the first text or call on the endpoint that answered) and
// tokensPerSecond (the reply's tokens after the first, over the time they took).
void AddStreamFigures(const ModelResponse& response, nlohmann::json* data);

}  // namespace carapace
