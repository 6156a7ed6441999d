// Runner: the agent loop with durable execution. It asks the model for the next step,
// makes the tool calls the model asked for, records every fact in the store before or right
// after the action, and resumes exactly where the store says it stopped (DESIGN.md).
//
// Not thread-safe: one Runner per store, driven by one thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/agentrun/spec.h"
#include "common/status.h"
#include "common/time.h"
#include "worker/model/model_backend.h"
#include "worker/runtime/context_window.h"
#include "worker/runtime/run_state.h"
#include "worker/runtime/run_tracing.h"
#include "worker/store/run_store.h"
#include "worker/tools/tool.h"

namespace carapace {

struct RunnerOptions {
  Clock* clock = RealClock();
  // Called after each event is stored, with the state it produced (for live output). Also
  // for events others appended (the control API), once the runner has applied them.
  std::function<void(const Event&, const RunState&)> on_event;
  // The long-lived worker: a finished turn goes Idle (not Succeeded) and the run waits for
  // the next inbox message. A start in the middle of a step is recorded (`recovered`); the
  // third for the same step within five minutes trips the crash-loop breaker (Degraded).
  bool persistent = false;
  // Checked between actions; when it returns true, Run() returns at once and the run stays
  // as it is (SIGTERM).
  std::function<bool()> stop_requested;
  // The duration of each store write that carried a checkpoint (metrics).
  std::function<void(double seconds)> on_checkpoint_written;
  // Unix ms: event times and the windows of period budgets. Tests pass a fake one.
  Clock* wall_clock = SystemWallClock();
  // A store write refused because the volume is full (IsVolumeFull): when set, it is called
  // with the refusal, and the same write is tried again for as long as it returns true (it
  // waits between tries). The write lock is held meanwhile, so the refused write is the next
  // one stored and the run carries on from where it was, with nothing lost or done twice.
  // When it returns false, or is unset, Run() returns the refusal (`carapace run` stops).
  std::function<bool(const Status& refused)> wait_for_space;
};

class Runner {
 public:
  // Binds `run` to `store`. A store that holds another AgentRun is refused with
  // kFailedPrecondition. A store that holds this one under another spec continues it: the
  // spec becomes a new revision of the same run when Run() next starts (spec_revision.cc).
  // Errors from building the model backend or tools are kInvalidArgument.
  static Result<std::unique_ptr<Runner>> Create(RunStore* store, const AgentRun& run, const ModelRegistry& models,
                                                const ToolRegistry& tools, RunnerOptions options = {});

  // Runs until the run ends (Succeeded, Failed, BudgetExhausted, Cancelled) or waits: for a
  // person (WaitingForApproval, Paused, Degraded), when persistent for a message (Idle), or,
  // still Running, for a time (NextTryAtMs: a model no endpoint answered, a period budget).
  // Call it again after new events were appended (AppendExternalEvent): it applies them
  // first. A finished run is returned as it is, with nothing redone.
  // Errors: kIoError / kCorruption from the store, or the volume full (IsVolumeFull) when
  // options.wait_for_space let go; after one, stop using this Runner.
  Result<Phase> Run();

  const RunState& state() const { return state_; }
  // `carapace compact`: records a person's request and compacts now (events others appended
  // are applied first), without running the agent on. Returns whether the context changed.
  // Errors: kFailedPrecondition when the run has ended or a step is in progress (a running
  // worker takes the request through its control API instead); the store's.
  Result<bool> CompactNow(const std::string& by);
  // When Run() has something to do again without any new event, in options.clock ms: the
  // next try of a model call that no endpoint answered, or the end of a period budget's
  // wait. Empty when nothing is scheduled.
  std::optional<int64_t> NextTryAtMs() const;
  // options.clock ms since which the current model call has found no model; 0 when the
  // last call was answered.
  int64_t ModelUnavailableSinceMs() const { return model_unavailable_since_ms_; }
  // What the model is offered: the spec's tools as named to the model, then finish.
  const std::vector<ToolSchema>& tool_schemas() const { return schemas_; }
  // The model (with its fallbacks), for health checks from another thread.
  ModelBackend& model() { return *model_; }

  // The name of the built-in tool that ends a run with a result.
  static constexpr const char* kFinishTool = "finish";

 private:
  Runner(RunStore* store, AgentRun run, RunnerOptions options);

  Status Start();
  // Applies events others appended since the state's last_seq. Hold the store's WriteLock.
  Status SyncExternal();
  Status CheckCrashLoop();
  // The phase a finished turn leaves the run in.
  Phase TurnDone() const { return options_.persistent ? Phase::kIdle : Phase::kSucceeded; }
  Status StartStep();
  Status CallModel();
  Status HandleCall(CallState* call, size_t index);
  Status Execute(CallState* call, size_t index, bool retry);
  Status Finish(Phase phase, const std::string& reason, const std::string& result, std::vector<Event> before = {});
  // Ends the current turn early, without an answer: every open call of the step gets a
  // result saying why it was not run, the step completes, and the run goes Idle with the
  // reason (persistent) or to `one_shot_phase`. The turn's message is not asked again.
  Status EndTurn(Phase one_shot_phase, const std::string& reason);
  // A failed result ("not run: <why>") for each call of the step from `from` on that has none.
  std::vector<Event> NotRunResults(size_t from, const std::string& why) const;

  // spec_revision.cc: the stored run has another spec than run_: record the new revision
  // (and wake a run whose lifetime budget the new spec raised).
  Status ApplySpecRevision();
  // model_outcome.cc: a model call that no endpoint answered (after the model layer's
  // retries and fallbacks) waits and is tried again, holds the turn (Degraded) or, for a
  // backend that never will answer, fails the run.
  Status ModelCallFailed(const Status& failure);
  // model_outcome.cc: a reply that stopped short without a complete tool call is asked for
  // once more, then ends the turn as failed. Returns false when `response` is an answer.
  Result<bool> HandleCutReply(const ModelResponse& response, int64_t duration_ms);
  // budgets.cc: the reason the run's lifetime budget is spent, else empty.
  std::optional<std::string> BudgetExhaustedReason(bool for_tool_call) const;
  // budgets.cc: the reason this turn's per-turn budget is spent, else empty.
  std::optional<std::string> TurnBudgetReason(bool for_tool_call) const;
  // budgets.cc: while the period budget allows no more tokens, records why (once) and
  // returns true with next_try_at_ms_ set to when the window allows work again.
  Result<bool> DeferForPeriodBudget();
  // Data a reply's tokens are recorded with: the period budget's window, when there is one.
  void AddTokenWindow(nlohmann::json* data) const;

  // compaction.cc: the context window in force (the spec's, else what the service said).
  ContextLimits Limits();
  // The prompt the next model call sends.
  const std::vector<Message>& Prompt() { return prompt_.Get(state_, run_.spec.instructions, Limits()); }
  // Its size, for estimates (without copying the messages).
  int64_t PromptSize() { return PromptBytes(state_, run_.spec.instructions, Limits()); }
  // Before a model call: finishes a compaction a crash cut off, makes one a person asked for,
  // or one the next prompt needs (over compactAtRatio of the window). Returns true when the
  // turn must wait instead (the summary's model call found no model; it is tried again).
  Result<bool> FitContext();
  // Folds older messages into the summary (after leaving out old large tool results, which
  // may be enough). `aggressive` keeps only the current turn: the service refused the
  // prompt. Returns false when nothing could be folded; true when the context changed or the
  // turn waits for the summary's model call (next_try_at_ms_).
  Result<bool> Compact(const std::string& reason, bool aggressive);
  // Before messages [from, to) are folded, when the run has memory tools: a silent turn
  // (not in the transcript) in which the model may store what it wants to keep, within its
  // own small budget, recorded by a memory_flushed event. Returns false when the run has no
  // memory tools. Errors: the model call's.
  Result<bool> FlushToMemory(int64_t from, int64_t to, const ContextLimits& limits);
  // The summary of messages [from, to) folded into the current one, made by the model in
  // requests that each fit the window. Errors: the model call's.
  Result<std::string> Summarize(int64_t from, int64_t to, const ContextLimits& limits, int64_t* prompt_tokens,
                                int64_t* completion_tokens);

  // Applies events to the state and writes them, with a checkpoint when the batch ends a
  // step, and any artifacts, in one atomic batch.
  Status Record(std::vector<Event> events, bool sync, std::vector<std::pair<std::string, std::string>> artifacts = {},
                std::vector<std::pair<std::string, std::string>> meta = {},
                std::optional<HistoryTrim> trim = std::nullopt);
  // spec.retention, when the agent goes idle: removes the history it allows (retention.h),
  // recorded by a history_trimmed event in the same write.
  Status ApplyRetention();
  Event Make(const char* type, nlohmann::json data = nlohmann::json::object()) const;
  int64_t ActiveMsSinceAccounted();
  bool SyncStepBoundaries() const { return run_.spec.durability == Durability::kSync; }

  RunStore* store_;
  AgentRun run_;
  RunnerOptions options_;
  RunState state_;
  std::unique_ptr<ModelBackend> model_;
  std::unique_ptr<ModelBackend> embedder_;  // spec.embedding; null when unset
  std::unique_ptr<ModelBackend> summarizer_;  // spec.context.summaryModel; null: model_ writes summaries
  std::map<std::string, std::unique_ptr<Tool>> tools_;
  std::map<std::string, const ToolSpec*> tool_specs_;
  std::vector<ToolSchema> schemas_;
  int64_t accounted_at_ms_ = 0;
  bool crash_loop_checked_ = false;
  bool revision_checked_ = false;
  int64_t next_try_at_ms_ = 0;              // options.clock ms; 0: nothing scheduled
  int64_t model_unavailable_since_ms_ = 0;  // options.clock ms; 0: the model answered
  std::optional<int64_t> learned_window_;  // what the service said of its window (health check, refusal)
  bool summarizing_ = false;  // a summary's model call failed: its refusal is not compacted again
  int64_t retention_checked_ms_ = 0;  // options.wall_clock ms of the last retention plan
  PromptCache prompt_;
  RunTracer tracer_;  // spans, when tracing is on (docs/tracing.md)
};

// A new id for a run (or a hand-off): 32 random hex characters.
std::string NewRunId();

// Calls a tool; an exception out of it is a failed result, for the model to route around.
ToolResult CallTool(Tool& tool, const nlohmann::json& arguments, const ToolContext& ctx);

// Appends one event written by someone other than the runner (the control API: a message,
// a decision, pause, resume, cancel). It is stored durably (synced) before this returns,
// and the runner applies it when it next records or runs. Returns its sequence number.
// `wall_clock` stamps it (tests on a simulated clock); null: the system's.
Result<uint64_t> AppendExternalEvent(RunStore* store, Event event, Clock* wall_clock = nullptr);

// Restarts of one step within this window, this many times, trip the crash-loop breaker.
inline constexpr int64_t kCrashLoopWindowMs = 5 * 60 * 1000;
inline constexpr int kCrashLoopRestarts = 3;

// The idempotency key of a tool call: 32 hex characters of sha256 over run id, step, call
// index, tool name and arguments. A retry of a recorded call carries the same key; a
// different call at the same position (a model asked again after a crash may answer
// differently) gets another one.
std::string IdempotencyKey(const std::string& run_id, int64_t step, size_t index, const ToolCall& call);

// Settles a call that waits for a person: approve lets it run (for outcome_unknown: run it
// again, accepting it may happen twice); deny skips it and tells the model. The decision is
// recorded durably; the next Run() acts on it.
// Errors: kNotFound when no such call waits; kFailedPrecondition when the run is not waiting.
Status SettleWaitingCall(RunStore* store, const std::string& call_id, bool approve, const std::string& who);

// Copies the run in `source` up to the checkpoint of step `step` into `dest_dir` (a new or
// empty dir) as a new run with its own run id. Errors: kNotFound when step N has no
// checkpoint (the message lists those that exist).
Status ForkRun(const RunStore& source, int64_t step, const std::string& dest_dir);

}  // namespace carapace
