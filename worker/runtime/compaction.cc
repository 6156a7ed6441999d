// Keeping the prompt inside the model's window: pruning old tool results, and folding older
// messages into a summary the model writes. Durable: `compaction_started` names the range
// before the summary is asked for, `context_compacted` (synced) records the result. A crash
// in between asks for the same range's summary again; one after uses it. The transcript is
// never changed: the summary only changes what the model is shown (docs/context.md).
#include "common/json_text.h"
#include "common/log.h"
#include "common/redact.h"
#include "worker/runtime/handoff.h"
#include "worker/runtime/model_outcome.h"
#include "worker/runtime/runner.h"

namespace carapace {

namespace {

// A summary longer than this share of the window would crowd out what it makes room for.
constexpr double kSummaryShare = 0.15;
// Each summary request holds at most this share of the window (the rest: the instructions,
// the previous summary, the reply).
constexpr double kSummaryRequestShare = 0.5;
// The memory flush's own budget: model calls, and memory tool calls over all of them.
constexpr int kFlushRounds = 3;
constexpr int kFlushMaxToolCalls = 8;

// Bytes of the messages given to one summary (or memory flush) request.
int64_t SummaryRequestBytes(const ContextLimits& limits) {
  return static_cast<int64_t>(static_cast<double>(limits.window - limits.reply_reserve) * kSummaryRequestShare * 4);
}

}  // namespace

const char* const kMemoryFlushInstructions =
    "Your context is about to be compacted: the messages below will be replaced by a short summary. "
    "Before that, use your memory tools to store anything in them you will need later and that is not "
    "stored yet: identifiers, decisions, commitments, the person's preferences. When you are done, answer "
    "with the single word: done.";

ContextLimits Runner::Limits() {
  if (!run_.spec.model.context_tokens) {
    if (auto w = model_->ContextWindow()) learned_window_ = w;
  }
  return ContextLimitsFor(run_, learned_window_);
}

Result<bool> Runner::CompactNow(const std::string& by) {
  {
    auto lock = store_->WriteLock();
    CARAPACE_RETURN_IF_ERROR(SyncExternal());
  }
  if (IsTerminal(state_.phase) || state_.phase == Phase::kPending) {
    return FailedPrecondition(std::string("the run is ") + PhaseName(state_.phase) + ": there is no context to compact");
  }
  // A summary is a model call: an exported copy makes none (worker/runtime/handoff.h).
  if (!state_.handoff_id.empty()) return FailedPrecondition(HandedOffRefusal(state_.handoff_id));
  if (state_.awaiting_model || state_.NextOpenCall() != nullptr) {
    return FailedPrecondition("step " + std::to_string(state_.step) +
                              " is in progress: `carapace run` finishes it (compacting first when it must)");
  }
  CARAPACE_RETURN_IF_ERROR(Record({Make(event_type::kCompactionRequested, {{"by", by}})}, true));
  CARAPACE_ASSIGN_OR_RETURN(bool changed, Compact("requested", true));
  if (next_try_at_ms_ > 0) {
    return Unavailable("the summary's model call failed (" + state_.model_error +
                       "); the request is kept and done at the next run");
  }
  return changed;
}

Result<bool> Runner::FitContext() {
  const ContextLimits limits = Limits();
  std::string reason;
  if (state_.compaction_pending_to > 0) {
    reason = "a compaction cut off by a restart";
  } else if (state_.compaction_requested) {
    return Compact("requested", true);  // all but the latest turn: what a person asking expects
  } else if (EstimateContextTokens(state_, PromptSize()) > limits.CompactAt()) {
    reason = "the prompt passed " + std::to_string(static_cast<int>(limits.spec.compact_at_ratio * 100)) +
             "% of the window";
  } else {
    return false;
  }
  // Changed (or waiting for the summary's model): the caller comes back and looks again.
  // Nothing to fold: the call goes ahead, and a refusal compacts harder.
  return Compact(reason, false);
}

Result<bool> Runner::Compact(const std::string& reason, bool aggressive) {
  const ContextLimits limits = Limits();
  const int64_t from = FirstUncompacted(state_);
  const int64_t before = EstimateContextTokens(state_, PromptSize());
  const int64_t n = state_.messages.size();
  // Ends when this returns, whichever way.
  telemetry::Span span = tracer_.StartChild(state_, "compaction", true);
  span.Set("carapace.compaction.reason", reason)
      .Set("carapace.compaction.aggressive", aggressive)
      .Set("carapace.context.tokens_before", before);
  int64_t to = 0;
  const bool resumed = state_.compaction_pending_to > from && state_.compaction_pending_to <= n;
  if (resumed) {
    to = state_.compaction_pending_to;  // the same range: one summary for it, whatever happened
  } else {
    std::optional<int64_t> split = CompactionSplit(state_, limits, aggressive);
    if (!split) {
      if (state_.compaction_requested || state_.compaction_pending_to > 0) {
        // Said, so the request is settled: there is nothing older than what is kept.
        CARAPACE_RETURN_IF_ERROR(Record({Make(event_type::kContextCompacted,
                                              {{"reason", reason}, {"from", from}, {"to", state_.compacted_to},
                                               {"nothingToFold", true}, {"tokensBefore", before},
                                               {"tokensAfter", before}})},
                                        true));
      }
      return false;
    }
    to = *split;
  }

  // First, older large tool results left out: often enough, and no model call. Every one
  // before the current turn at once, so that it happens rarely (each changes the prompt's
  // prefix a server caches).
  const int64_t prune_to = std::max(to, CompactionSplit(state_, limits, true).value_or(to));
  if (!resumed && !aggressive && state_.pruned_to < prune_to && !state_.compaction_requested) {
    const int64_t pruned_before = state_.pruned_to;
    state_.pruned_to = prune_to;
    const int64_t after = EstimateContextTokens(state_, PromptSize());
    state_.pruned_to = pruned_before;
    // Enough only when it leaves real room (halfway down to what a summary leaves), or the
    // next turns would prune one result at a time.
    if (after <= (limits.CompactAt() + limits.KeepRecent()) / 2) {
      log::Info("older tool results left out of the context", {{"agentrun", run_.metadata.name}, {"before", before},
                                                                 {"after", after}, {"window", limits.window}});
      CARAPACE_RETURN_IF_ERROR(Record({Make(event_type::kContextCompacted,
                                            {{"reason", reason}, {"from", from}, {"to", state_.compacted_to},
                                             {"prunedTo", prune_to}, {"tokensBefore", before}, {"tokensAfter", after}})},
                                      true));
      return true;
    }
  }

  if (!resumed) {
    // Not synced: lost, the compaction is simply decided again.
    CARAPACE_RETURN_IF_ERROR(Record({Make(event_type::kCompactionStarted,
                                          {{"reason", reason}, {"from", from}, {"to", to}, {"tokensBefore", before}})},
                                    false));
  }
  // The agent keeps what it wants before the turns leave its context: once per range, so a
  // compaction a crash cut off after the flush goes straight to the summary.
  Result<bool> flushed = state_.memory_flushed_to < to ? FlushToMemory(from, to, limits) : Result<bool>(false);
  int64_t prompt_tokens = 0, completion_tokens = 0;
  Result<std::string> summary =
      flushed.ok() ? Summarize(from, to, limits, &prompt_tokens, &completion_tokens) : Result<std::string>(flushed.status());
  if (!summary.ok()) {
    // The same as a turn's model call: waited out, or the turn held for a person (a summary
    // request the service refuses is not compacted in turn).
    summarizing_ = true;
    Status handled = ModelCallFailed(summary.status());
    summarizing_ = false;
    CARAPACE_RETURN_IF_ERROR(handled);
    return true;
  }
  next_try_at_ms_ = 0;
  model_unavailable_since_ms_ = 0;
  // What the prompt will be, for the record: the state as the event will leave it, tried
  // and put back (a copy would copy the whole history).
  std::swap(state_.summary, *summary);
  const int64_t compacted_before = state_.compacted_to, pruned_before = state_.pruned_to;
  state_.compacted_to = to;
  state_.pruned_to = std::max(pruned_before, to);
  const int64_t after = EstimateContextTokens(state_, PromptSize());
  state_.compacted_to = compacted_before;
  state_.pruned_to = pruned_before;
  std::swap(state_.summary, *summary);
  nlohmann::json data = {{"reason", reason},          {"from", from},
                         {"to", to},                  {"prunedTo", std::max(state_.pruned_to, to)},
                         {"summary", ValidUtf8(*summary)}, {"tokensBefore", before},
                         {"tokensAfter", after},      {"promptTokens", prompt_tokens},
                         {"completionTokens", completion_tokens}};
  AddTokenWindow(&data);
  CARAPACE_RETURN_IF_ERROR(Record({Make(event_type::kContextCompacted, data)}, true));
  log::Info("context compacted", {{"agentrun", run_.metadata.name}, {"reason", reason}, {"messages", to - from},
                                  {"before", before}, {"after", after}, {"window", limits.window},
                                  {"summaryBytes", state_.summary.size()}});
  return true;
}

Result<bool> Runner::FlushToMemory(int64_t from, int64_t to, const ContextLimits& limits) {
  std::vector<ToolSchema> memory_tools;
  for (const auto& schema : schemas_) {
    auto spec = tool_specs_.find(schema.name);
    if (spec != tool_specs_.end() && spec->second->kind == "memory") memory_tools.push_back(schema);
  }
  if (memory_tools.empty()) return false;
  // Every message about to leave the context, each cut to an equal share of one request
  // (so it fits whatever the prompt's size: a refusal may be what started the compaction),
  // and never less than 256 bytes: a person's messages are short, tool results are what is cut.
  const int64_t request_bytes = SummaryRequestBytes(limits) - static_cast<int64_t>(state_.summary.size());
  const int64_t share = std::max<int64_t>(256, request_bytes / std::max<int64_t>(1, to - from) - 64);  // 64: its label
  std::string shown;
  for (int64_t i = from; i < to; ++i) {
    std::string line = RenderForSummary(state_, i, i + 1, share);
    if (static_cast<int64_t>(shown.size() + line.size()) > request_bytes) {
      shown += "[... " + std::to_string(to - i) + " more messages]\n";
      break;
    }
    shown += line;
  }
  // The prompt's own system message (instructions and summary): its prefix is the one a
  // server has cached.
  const std::string system = PromptSystemContent(state_, run_.spec.instructions);
  std::vector<Message> conversation;
  if (!system.empty()) conversation.push_back(Message{"system", system, {}, "", ""});
  conversation.push_back(Message{"user", std::string(kMemoryFlushInstructions) + "\n\nMessages about to be compacted (index, role):\n" + shown, {}, "", ""});

  int64_t prompt_tokens = 0, completion_tokens = 0;
  int calls = 0;
  std::string skipped;
  nlohmann::json stored = nlohmann::json::array();
  for (int round = 0; round < kFlushRounds; ++round) {
    ModelRequest request{state_.step, &conversation, memory_tools};
    telemetry::Span span = tracer_.StartModelCall(state_, request, "memory_flush");
    request.traceparent = span.context().Traceparent();
    Result<ModelResponse> reply = model_->Complete(request);
    tracer_.EndModelCall(span, reply, conversation);
    if (!reply.ok()) {
      // A service that will not take even this: the flush is skipped, the summary still made.
      if (!IsContextLengthError(reply.status().message())) return reply.status();
      skipped = reply.status().message();
      break;
    }
    prompt_tokens += reply->prompt_tokens;
    completion_tokens += reply->completion_tokens;
    if (reply->tool_calls.empty()) break;
    Message asked{"assistant", reply->text, {}, "", ""};
    for (size_t i = 0; i < reply->tool_calls.size(); ++i) {
      ToolCall c = reply->tool_calls[i];
      c.id = "flush" + std::to_string(to) + "r" + std::to_string(round) + "c" + std::to_string(i);
      asked.tool_calls.push_back(std::move(c));
    }
    conversation.push_back(asked);
    for (const ToolCall& c : asked.tool_calls) {
      ToolResult result;
      auto tool = tools_.find(c.name);
      const bool memory = std::any_of(memory_tools.begin(), memory_tools.end(), [&](const ToolSchema& t) { return t.name == c.name; });
      if (!memory || tool == tools_.end()) {
        result = ToolResult::Fail("only the memory tools can be used before a compaction");
      } else if (calls >= kFlushMaxToolCalls) {
        result = ToolResult::Fail("the memory flush allows " + std::to_string(kFlushMaxToolCalls) + " tool calls");
      } else {
        ++calls;
        // Memory entries are stored by id: a flush repeated after a crash replaces them.
        // (Positions past any step's own calls.)
        ToolContext ctx{c.id, IdempotencyKey(state_.run_id, state_.step, static_cast<size_t>(100000 + calls), c)};
        result = CallTool(*tool->second, c.arguments, ctx);
      }
      nlohmann::json d = {{"ok", result.ok}, {"output", RedactJson(ValidUtf8(result.output))}};
      if (!result.ok) d["error"] = ValidUtf8(result.error);
      conversation.push_back(Message{"tool", ToolResultContent(d), {}, c.id, c.name});
      stored.push_back({{"tool", c.name}, {"arguments", c.arguments}, {"ok", result.ok}});
    }
  }
  nlohmann::json data = {{"from", from}, {"to", to}, {"calls", stored}, {"promptTokens", prompt_tokens},
                         {"completionTokens", completion_tokens}};
  if (!skipped.empty()) data["skipped"] = ValidUtf8(skipped);
  AddTokenWindow(&data);
  // Synced, as the memory entries it stored are.
  CARAPACE_RETURN_IF_ERROR(Record({Make(event_type::kMemoryFlushed, data)}, true));
  return true;
}

Result<std::string> Runner::Summarize(int64_t from, int64_t to, const ContextLimits& limits, int64_t* prompt_tokens,
                                      int64_t* completion_tokens) {
  const int64_t request_bytes = SummaryRequestBytes(limits);
  const auto max_summary_bytes = static_cast<int64_t>(static_cast<double>(limits.window) * kSummaryShare * 4);
  const int64_t max_message_bytes = std::max<int64_t>(512, request_bytes / 4);
  std::string summary = state_.summary;
  int64_t i = from;
  while (i < to) {
    // As many messages as fit one request, at least one.
    std::string chunk;
    while (i < to) {
      std::string line = RenderForSummary(state_, i, i + 1, max_message_bytes);
      if (!chunk.empty() && static_cast<int64_t>(chunk.size() + line.size() + summary.size()) > request_bytes) break;
      chunk += line;
      ++i;
    }
    const std::vector<Message> request_messages = {
        Message{"system", kSummaryInstructions, {}, "", ""},
        Message{"user",
                "Previous summary:\n" + (summary.empty() ? std::string("(none)") : summary) +
                    "\n\nMessages to fold in (index, role):\n" + chunk,
                {}, "", ""}};
    ModelRequest request{state_.step, &request_messages, {}};
    ModelBackend& writer = summarizer_ ? *summarizer_ : *model_;
    telemetry::Span span = tracer_.StartModelCall(state_, request, "summary", summarizer_ != nullptr);
    request.traceparent = span.context().Traceparent();
    Result<ModelResponse> answered = writer.Complete(request);
    tracer_.EndModelCall(span, answered, request_messages);
    CARAPACE_ASSIGN_OR_RETURN(ModelResponse reply, std::move(answered));
    *prompt_tokens += reply.prompt_tokens;
    *completion_tokens += reply.completion_tokens;
    if (reply.text.empty()) return Unavailable("the model answered the summary request with nothing");
    summary = reply.text;
    if (static_cast<int64_t>(summary.size()) > max_summary_bytes) {
      summary = summary.substr(0, static_cast<size_t>(max_summary_bytes)) + "\n[summary cut to fit the context]";
    }
  }
  return summary;
}

}  // namespace carapace
