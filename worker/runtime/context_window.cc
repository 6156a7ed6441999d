// Building the prompt from the state, estimating its tokens, and choosing where a
// compaction ends.
#include "worker/runtime/context_window.h"

#include <algorithm>
#include <regex>

namespace carapace {

const char* const kSummaryInstructions =
    "You keep the memory of a long-running agent. Its conversation no longer fits the model's context "
    "window, so older messages are replaced by your summary. Write the new summary: merge the previous "
    "summary (if any) with the messages given, oldest first. Keep, word for word, every identifier, name, "
    "number, date, path, URL, ticket and key the messages mention; every decision made and why; every "
    "open task, promise and commitment, with who it is for and any deadline; the goal and the person's "
    "standing preferences; what tools returned that is still needed. Drop greetings, repetition and "
    "anything superseded. Write plain text in short sections (Goal, Decisions, Open tasks, Facts). "
    "Answer with the summary only.";

int64_t ContextLimits::CompactAt() const {
  const auto at = static_cast<int64_t>(static_cast<double>(window) * spec.compact_at_ratio);
  return std::min(at, window - reply_reserve);
}

int64_t MaxToolResultBytes(const ContextLimits& limits) {
  // A quarter of what the prompt may hold, at four bytes a token: fixed by the limits alone,
  // so the cut never moves between prompts (the prefix cache).
  return std::max<int64_t>(1024, limits.window - limits.reply_reserve);
}

int64_t ContextLimits::KeepRecent() const {
  return static_cast<int64_t>(static_cast<double>(window) * spec.keep_recent_ratio);
}

ContextLimits ContextLimitsFor(const AgentRun& run, std::optional<int64_t> learned_window) {
  ContextLimits l;
  const ModelSpec& m = run.spec.model;
  l.window = m.context_tokens.value_or(learned_window.value_or(kDefaultContextTokens));
  l.reply_reserve = m.reply_reserve_tokens.value_or(m.max_tokens.value_or(kDefaultReplyReserveTokens));
  // A reserve the window cannot hold (a small learned window, a large maxTokens) keeps half.
  l.reply_reserve = std::min(l.reply_reserve, l.window / 2);
  if (run.spec.context) l.spec = *run.spec.context;
  return l;
}

int64_t PromptBytes(const std::vector<Message>& prompt) {
  int64_t bytes = 0;
  for (const auto& m : prompt) bytes += MessageBytes(m);
  return bytes;
}

int64_t EstimateContextTokens(const RunState& s, int64_t bytes) {
  if (s.last_prompt_tokens > 0 && s.last_prompt_bytes > 0) {
    // The service's tokenizer, as measured on the last prompt it counted (rounded up).
    return (bytes * s.last_prompt_tokens + s.last_prompt_bytes - 1) / s.last_prompt_bytes;
  }
  return bytes / 4 + 1;
}

int64_t FirstUncompacted(const RunState& s) {
  // The instructions the run started with (a system message first) are never folded: the
  // prompt carries the revision's own.
  return std::max(s.compacted_to, s.first_turn_message);
}

std::string PromptSystemContent(const RunState& s, const std::string& instructions) {
  std::string system = instructions;
  if (!s.summary.empty()) {
    // In the system message, not a message of its own: some chat templates take exactly one
    // system message, first.
    system += std::string(system.empty() ? "" : "\n\n") +
              "Summary of the conversation before the messages below (older messages were compacted to fit "
              "the context window):\n" + s.summary;
  }
  return system;
}

namespace {

// What message i is shown as when it is not shown whole: an older large tool result left out,
// or a tool result longer than the window cut. Empty: shown as it is.
std::optional<std::string> CutContent(const RunState& s, int64_t i, const ContextLimits& limits) {
  const Message& m = s.messages[i];
  if (m.role != "tool") return std::nullopt;
  const auto size = static_cast<int64_t>(m.content.size());
  if (i < s.pruned_to && size > limits.spec.prune_tool_results_over_bytes) {
    return "[an older result of " + m.name + ", " + std::to_string(size) +
           " bytes, left out to save room in the context; call the tool again if it is needed]";
  }
  const int64_t max_result = MaxToolResultBytes(limits);
  if (size > max_result) {
    return m.content.substr(0, static_cast<size_t>(max_result)) + "\n[cut: this result is " + std::to_string(size) +
           " bytes, more than the context window holds; the first " + std::to_string(max_result) + " are shown]";
  }
  return std::nullopt;
}

}  // namespace

std::vector<Message> BuildPrompt(const RunState& s, const std::string& instructions, const ContextLimits& limits) {
  std::vector<Message> prompt;
  const std::string system = PromptSystemContent(s, instructions);
  if (!system.empty()) prompt.push_back(Message{"system", system, {}, "", ""});
  for (int64_t i = FirstUncompacted(s); i < s.messages.size(); ++i) {
    prompt.push_back(s.messages[i]);
    if (auto cut = CutContent(s, i, limits)) prompt.back().content = std::move(*cut);
  }
  return prompt;
}

const std::vector<Message>& PromptCache::Get(const RunState& s, const std::string& instructions,
                                            const ContextLimits& limits) {
  std::string system = PromptSystemContent(s, instructions);
  const int64_t from = FirstUncompacted(s);
  const bool same = system == system_ && from == from_ && s.pruned_to == pruned_to_ && next_ <= s.messages.size() &&
                    limits.window == window_ && limits.reply_reserve == reserve_ &&
                    limits.spec.prune_tool_results_over_bytes == prune_over_;
  if (!same) {
    prompt_ = BuildPrompt(s, instructions, limits);
    system_ = std::move(system);
    from_ = from;
    pruned_to_ = s.pruned_to;
    window_ = limits.window;
    reserve_ = limits.reply_reserve;
    prune_over_ = limits.spec.prune_tool_results_over_bytes;
  } else {
    for (int64_t i = next_; i < s.messages.size(); ++i) {
      prompt_.push_back(s.messages[i]);
      if (auto cut = CutContent(s, i, limits)) prompt_.back().content = std::move(*cut);
    }
  }
  next_ = s.messages.size();
  return prompt_;
}

int64_t PromptBytes(const RunState& s, const std::string& instructions, const ContextLimits& limits) {
  const std::string system = PromptSystemContent(s, instructions);
  const int64_t from = FirstUncompacted(s);
  int64_t bytes = (system.empty() ? 0 : MessageBytes(Message{"system", system, {}, "", ""})) +
                  s.messages.BytesOf(from, s.messages.size());
  // Only a large tool result is ever cut (both limits are above kLargeToolResult).
  const auto& large = s.messages.large_tool_results();
  for (auto it = large.lower_bound(from); it != large.end(); ++it) {
    if (auto cut = CutContent(s, *it, limits)) {
      bytes += static_cast<int64_t>(cut->size()) - static_cast<int64_t>(s.messages[*it].content.size());
    }
  }
  return bytes;
}

std::optional<int64_t> CompactionSplit(const RunState& s, const ContextLimits& limits, bool aggressive) {
  const int64_t from = FirstUncompacted(s);
  const int64_t n = s.messages.size();
  // Whole turns only: the kept part starts at a user message (a turn's start), so the
  // current turn's question is always shown as it was asked, and a tool call never parts
  // from its result. The newest turns that fit keepRecentRatio are kept; the current turn
  // always is. `aggressive` keeps the current turn alone.
  const int64_t keep = aggressive ? 0 : limits.KeepRecent();
  int64_t split = -1;
  int64_t kept = 0;
  for (int64_t i = n - 1; i >= from; --i) {
    const Message& m = s.messages[i];
    kept += EstimateContextTokens(s, s.messages.BytesAt(i));
    if (m.role != "user") continue;
    if (split >= 0 && kept > keep) break;
    split = i;
  }
  if (split <= from) return std::nullopt;
  return split;
}

std::string RenderForSummary(const RunState& s, int64_t from, int64_t to, int64_t max_message_bytes) {
  std::string out;
  for (int64_t i = from; i < to && i < s.messages.size(); ++i) {
    const Message& m = s.messages[i];
    std::string text = m.content;
    for (const auto& c : m.tool_calls) text += (text.empty() ? "" : "\n") + ("calls " + c.name + " " + c.arguments.dump());
    if (static_cast<int64_t>(text.size()) > max_message_bytes) {
      text = text.substr(0, static_cast<size_t>(max_message_bytes)) + " [... " +
             std::to_string(text.size() - static_cast<size_t>(max_message_bytes)) + " more bytes]";
    }
    const std::string who = m.role == "tool" ? "result of " + m.name : m.role;
    out += "[" + std::to_string(i) + " " + who + "] " + text + "\n";
  }
  return out;
}

std::optional<int64_t> WindowFromRefusal(const std::string& message) {
  // OpenAI and vLLM: "This model's maximum context length is 4096 tokens"; vLLM's engine:
  // "... longer than the maximum model length of 4096"; TensorRT-LLM: "exceeds maximum input
  // length (4096)"; llama-server: "exceeds the available context size (4096 tokens)".
  static const std::regex kWindow(
      R"((maximum context length is|maximum model length of|maximum input length \(|available context size \()\s*(\d{2,9}))",
      std::regex::icase);
  std::smatch m;
  if (!std::regex_search(message, m, kWindow)) return std::nullopt;
  return std::stoll(m[2].str());
}

}  // namespace carapace
