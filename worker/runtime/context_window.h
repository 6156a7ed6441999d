// What the model sees of a run, kept inside its context window (docs/context.md).
//
// The transcript keeps every message of the run's life. The prompt is built from the state
// alone: the instructions (with the summary of compacted turns), then the messages after
// the compacted part, older large tool results cut to a reference. The same state always
// gives the same prompt, and between compactions a new step only appends to it, so an
// inference server's prefix cache (vLLM automatic prefix caching, TensorRT-LLM KV reuse)
// is reused turn after turn.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/agentrun/spec.h"
#include "worker/model/chat.h"
#include "worker/runtime/run_state.h"

namespace carapace {

struct ContextLimits {
  int64_t window = kDefaultContextTokens;  // tokens, prompt and reply
  int64_t reply_reserve = kDefaultReplyReserveTokens;
  ContextSpec spec;

  // The prompt's share that starts a compaction, in tokens: compactAtRatio of the window,
  // and never more than the window less the reply's reserve.
  int64_t CompactAt() const;
  // Tokens of the newest messages kept word for word at a compaction.
  int64_t KeepRecent() const;
};

// The spec's limits; `learned_window` (what the service said) when the spec gives none.
ContextLimits ContextLimitsFor(const AgentRun& run, std::optional<int64_t> learned_window);

// The most bytes of one tool result the model is shown: a longer one is shown cut, with its
// size (the event log and artifacts keep it whole), so that no single result can fill the
// window.
int64_t MaxToolResultBytes(const ContextLimits& limits);

// The prompt's system message: the instructions, with the summary of compacted turns.
std::string PromptSystemContent(const RunState& s, const std::string& instructions);
// The prompt for the next model call.
std::vector<Message> BuildPrompt(const RunState& s, const std::string& instructions, const ContextLimits& limits);

// BuildPrompt, kept between calls: between compactions a step only appends to the prompt,
// so only the new messages are copied (a turn of a thousand tool calls must not copy a
// thousand messages a step). Rebuilt whole when anything else changed.
class PromptCache {
 public:
  const std::vector<Message>& Get(const RunState& s, const std::string& instructions, const ContextLimits& limits);

 private:
  std::vector<Message> prompt_;
  std::string system_;
  int64_t from_ = -1, pruned_to_ = -1, next_ = 0;
  int64_t window_ = 0, reserve_ = 0, prune_over_ = 0;
};

// Bytes of a prompt as the runtime counts them for estimates (MessageBytes of each).
int64_t PromptBytes(const std::vector<Message>& prompt);
// PromptBytes(BuildPrompt(s, instructions, limits)), without building it.
int64_t PromptBytes(const RunState& s, const std::string& instructions, const ContextLimits& limits);
// Tokens of `bytes` of prompt, at the ratio the service reported for the last prompt it
// answered (its own tokenizer), else one token per four bytes.
int64_t EstimateContextTokens(const RunState& s, int64_t bytes);

// The first message shown word for word: after the summary's and the run's own first
// instructions.
int64_t FirstUncompacted(const RunState& s);

// Where a compaction ends: the index of the first message kept word for word, always a
// turn's first (user) message. Messages from the last compaction up to it are folded into the
// summary: whole turns, so a tool call never parts from its result and the current turn is
// always kept. `aggressive` (the service said the prompt does not fit) keeps only the current
// turn. Empty when nothing can be folded.
std::optional<int64_t> CompactionSplit(const RunState& s, const ContextLimits& limits, bool aggressive);

// The text of messages [from, to) for the summary request, each message cut to
// `max_message_bytes`.
std::string RenderForSummary(const RunState& s, int64_t from, int64_t to, int64_t max_message_bytes);

// What the summary request tells the model.
extern const char* const kSummaryInstructions;
// What the memory flush before a compaction asks of the agent (compaction.cc).
extern const char* const kMemoryFlushInstructions;

// The window a service's context-length refusal names ("maximum context length is 4096
// tokens"), if it names one.
std::optional<int64_t> WindowFromRefusal(const std::string& message);

}  // namespace carapace
