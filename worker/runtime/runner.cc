// The agent loop. Every decision is made from RunState, and RunState only changes through
// recorded events, so the live loop and a loop resumed after kill -9 take the same path.
#include "worker/runtime/runner.h"

#include <filesystem>
#include <random>

#include "common/hash.h"
#include "common/json_text.h"
#include "common/redact.h"
#include "common/log.h"
#include "worker/runtime/handoff.h"
#include "worker/runtime/model_outcome.h"
#include "worker/runtime/retention.h"
#include "worker/runtime/run_loader.h"

namespace carapace {

std::string NewRunId() {
  std::random_device rd;
  static const char* kHex = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 32; ++i) id.push_back(kHex[rd() & 0xf]);
  return id;
}

namespace {

// Tool output larger than the tool's maxOutputBytes goes to the artifacts column family in
// full; the event log and the model get a preview. It keeps the log, checkpoints and
// prompts small.
constexpr size_t kPreviewBytes = 4 * 1024;

bool IsLastOpenCall(const RunState& s, const CallState* call) {
  for (const auto& c : s.calls) {
    if (&c != call && c.status != CallStatus::kDone) return false;
  }
  return true;
}

ToolSchema FinishSchema() {
  return {Runner::kFinishTool,
          "End the run and report its result.",
          {{"type", "object"}, {"properties", {{"result", {{"type", "string"}}}}}, {"required", {"result"}}}};
}

}  // namespace

// Derived from run, step and call position, and from the call itself: a retry of the call
// (same recorded intent) carries the same key, while a different call at the same position
// gets another one. That matters when a model answer was lost in a crash before it was
// synced and the model, asked again, answers differently: a service that honours
// Idempotency-Key must not answer the new request with the old one's result.
std::string IdempotencyKey(const std::string& run_id, int64_t step, size_t index, const ToolCall& call) {
  return Sha256Hex(run_id + "/" + std::to_string(step) + "/" + std::to_string(index) + "/" + call.name + "/" +
                   call.arguments.dump())
      .substr(0, 32);
}

Runner::Runner(RunStore* store, AgentRun run, RunnerOptions options)
    : store_(store), run_(std::move(run)), options_(std::move(options)), tracer_(run_) {}

Result<std::unique_ptr<Runner>> Runner::Create(RunStore* store, const AgentRun& run, const ModelRegistry& models,
                                               const ToolRegistry& tools, RunnerOptions options) {
  CARAPACE_ASSIGN_OR_RETURN(auto identity, LoadRunIdentity(*store));
  const std::string spec_hash = run.SpecHash();
  bool moved = false;  // a restored agent no one has run yet: it takes this run's name
  if (identity) {
    CARAPACE_ASSIGN_OR_RETURN(auto awaiting_home, store->GetMeta(meta_key::kAwaitingHome));
    moved = awaiting_home && *awaiting_home == "1";
    if (!moved && (identity->name != run.metadata.name || identity->ns != run.metadata.ns)) {
      return FailedPrecondition("state dir " + store->state_dir() + " holds AgentRun " + identity->ns + "/" +
                                identity->name + ", not " + run.metadata.ns + "/" + run.metadata.name +
                                "; use another --state-dir");
    }
    // Another spec is a new revision of this run, applied when Run() starts.
  }

  std::unique_ptr<Runner> r(new Runner(store, run, std::move(options)));
  CARAPACE_ASSIGN_OR_RETURN(r->model_, models.Create(r->run_));
  CARAPACE_ASSIGN_OR_RETURN(r->embedder_, models.CreateEmbedder(r->run_));
  if (r->run_.spec.context && r->run_.spec.context->summary_model) {
    AgentRun summary_run = r->run_;
    ModelSpec summary_model;
    static_cast<ModelEndpointSpec&>(summary_model) = *r->run_.spec.context->summary_model;
    summary_run.spec.model = summary_model;
    auto made = models.Create(summary_run);
    if (!made.ok()) return made.status().WithContext("spec.context.summaryModel");
    r->summarizer_ = std::move(made).value();
  }
  ToolEnvironment env{store->workspace_dir(), store, r->embedder_.get()};
  std::vector<std::pair<const ToolSpec*, std::unique_ptr<Tool>>> made_tools;
  std::map<std::string, int> name_count;
  for (const auto& spec : r->run_.spec.tools) {
    auto made = tools.Create(spec, env);
    if (!made.ok()) return made.status().WithContext("spec.tools");
    for (auto& tool : *made) {
      ++name_count[tool->Schema().name];
      made_tools.emplace_back(&spec, std::move(tool));
    }
  }
  for (auto& [spec, tool] : made_tools) {
    // Two servers exposing the same name: each gets its entry's name as a prefix.
    std::string name = tool->Schema().name;
    if (name_count[name] > 1) tool->Rename(spec->name + "_" + name);
    ToolSchema schema = tool->Schema();
    if (r->tools_.count(schema.name) || schema.name == kFinishTool) {
      return InvalidArgument("spec.tools: the tool name \"" + schema.name + "\" is given twice (by " + spec->name + ")");
    }
    r->schemas_.push_back(schema);
    r->tool_specs_[schema.name] = spec;
    r->tools_[schema.name] = std::move(tool);
  }
  r->schemas_.push_back(FinishSchema());

  if (moved) {
    // Once all that could fail has not: a run that cannot start leaves the name to the next.
    StoreBatch home;
    home.meta = {{meta_key::kName, run.metadata.name}, {meta_key::kNamespace, run.metadata.ns},
                 {meta_key::kAwaitingHome, ""}};
    if (identity->name != run.metadata.name || identity->ns != run.metadata.ns) {
      log::Info("a restored agent takes its new name", {{"from", identity->ns + "/" + identity->name},
                                                          {"to", run.metadata.ns + "/" + run.metadata.name}});
    }
    CARAPACE_RETURN_IF_ERROR(store->Commit(home, true).status());
  }
  if (!identity) {
    StoreBatch meta;
    meta.meta = {{meta_key::kRunId, NewRunId()},
                 {meta_key::kName, run.metadata.name},
                 {meta_key::kNamespace, run.metadata.ns},
                 {meta_key::kSpecHash, spec_hash},
                 {meta_key::kSpec, run.SpecJson().dump()}};
    CARAPACE_RETURN_IF_ERROR(store->Commit(meta, true).status());
  }
  CARAPACE_ASSIGN_OR_RETURN(r->state_, LoadRunState(*store));
  // The fence of an exported agent holds for every process that opens its store.
  if (!r->state_.handoff_id.empty()) store->RefuseExternalWrites(HandedOffRefusal(r->state_.handoff_id));
  return r;
}

Event Runner::Make(const char* type, nlohmann::json data) const {
  Event e;
  e.type = type;
  e.step = state_.step;
  e.data = std::move(data);
  return e;
}

int64_t Runner::ActiveMsSinceAccounted() {
  int64_t now = options_.clock->NowMillis();
  int64_t d = now - accounted_at_ms_;
  accounted_at_ms_ = now;
  return d;
}

Status Runner::SyncExternal() {
  if (store_->last_seq() == state_.last_seq) return Status::Ok();
  Status st;
  CARAPACE_RETURN_IF_ERROR(store_->ForEachEvent(state_.last_seq + 1, [&](uint64_t seq, std::string_view value) {
    auto e = Event::Decode(seq, value);
    if (!e.ok()) {
      st = e.status();
      return false;
    }
    st = Apply(&state_, *e);
    if (st.ok() && options_.on_event) options_.on_event(*e, state_);
    return st.ok();
  }));
  return st;
}

ToolResult CallTool(Tool& tool, const nlohmann::json& arguments, const ToolContext& ctx) {
  try {
    return tool.Call(arguments, ctx);
  } catch (const std::exception& ex) {
    // A tool's bug is the model's problem to route around, not the worker's end.
    return ToolResult::Fail(std::string("the tool failed: ") + ex.what());
  }
}

Result<uint64_t> AppendExternalEvent(RunStore* store, Event e, Clock* wall_clock) {
  CARAPACE_ASSIGN_OR_RETURN(auto lock, store->WriteLockUnlessFull());
  e.ts_ms = wall_clock != nullptr ? wall_clock->NowMillis() : WallNowMillis();
  e.data = RedactJson(e.data);
  StoreBatch batch;
  batch.events.push_back(e.Encode());
  return store->Commit(batch, true);
}

Status Runner::Record(std::vector<Event> events, bool sync, std::vector<std::pair<std::string, std::string>> artifacts,
                      std::vector<std::pair<std::string, std::string>> meta, std::optional<HistoryTrim> trim) {
  // Events others appended come first: the checkpoint below must cover every event up to
  // its sequence number, theirs included.
  auto lock = store_->WriteLock();
  CARAPACE_RETURN_IF_ERROR(SyncExternal());
  StoreBatch batch;
  batch.artifacts = std::move(artifacts);
  batch.meta = std::move(meta);
  batch.trim = std::move(trim);
  bool checkpoint = false;
  std::optional<RunTracer::TurnEnd> turn_ended;
  uint64_t seq = store_->last_seq();
  for (auto& e : events) {
    e.seq = ++seq;
    e.ts_ms = options_.wall_clock->NowMillis();
    if (e.type == event_type::kStepCompleted || e.type == event_type::kPhaseChanged) {
      e.data["activeMs"] = ActiveMsSinceAccounted();
    }
    // Secrets the run knows never reach the log, the transcript or the model.
    e.data = RedactJson(e.data);
    const RunTracer::Before before = RunTracer::Capture(state_);
    CARAPACE_RETURN_IF_ERROR(Apply(&state_, e));
    // Every event of a turn names the turn's trace (and a model or tool call's event its
    // span, set by the caller): from a trace to its events, and back.
    if (before.in_turn || InTurn(state_)) RunTracer::Stamp(&e.data, tracer_.TurnContext(state_));
    if (auto ended = tracer_.EndedTurn(e, before, state_)) turn_ended = std::move(ended);
    batch.events.push_back(e.Encode());
    // Checkpoints only at step boundaries, so "the checkpoint of step N" is always the state
    // at the end of step N (what fork starts from). Anything later is replayed from events.
    checkpoint = checkpoint || e.type == event_type::kStepCompleted || e.type == event_type::kRunStarted;
  }
  if (checkpoint) {
    for (int64_t i = state_.persisted_messages; i < state_.messages.size(); ++i) {
      batch.transcript.emplace_back(i, ToJson(state_.messages[i]).dump());
    }
    state_.persisted_messages = state_.messages.size();
    state_.last_checkpoint_step = state_.step;
    batch.checkpoint = std::make_pair(state_.step, state_.ToCheckpointJson().dump());
  }
  // state_ already holds these events: the write either lands or this Runner is done.
  telemetry::Span checkpoint_span;
  if (checkpoint) {
    checkpoint_span = tracer_.StartChild(state_, "checkpoint");
    checkpoint_span.Set("carapace.sync", sync).Set("carapace.events", static_cast<int64_t>(events.size()));
  }
  int64_t commit_started = MonoNowNanos();
  Status written = store_->Commit(batch, sync).status();
  while (IsVolumeFull(written) && options_.wait_for_space && options_.wait_for_space(written)) {
    commit_started = MonoNowNanos();
    written = store_->Commit(batch, sync).status();
  }
  if (!written.ok()) checkpoint_span.SetError(StatusCodeName(written.code()), written.message());
  checkpoint_span.End();
  CARAPACE_RETURN_IF_ERROR(written);
  if (turn_ended) tracer_.SendTurnSpan(*turn_ended);
  // Messages in the transcript that the prompt no longer shows (folded into the summary)
  // leave memory: it holds the live context, not the run's whole life.
  if (checkpoint) state_.messages.ForgetBefore(std::min(FirstUncompacted(state_), state_.persisted_messages));
  if (checkpoint && options_.on_checkpoint_written) {
    options_.on_checkpoint_written(static_cast<double>(MonoNowNanos() - commit_started) / 1e9);
  }
  lock.unlock();
  if (options_.on_event) {
    for (const auto& e : events) options_.on_event(e, state_);
  }
  return Status::Ok();
}

Status Runner::CheckCrashLoop() {
  crash_loop_checked_ = true;
  const bool mid_step = state_.phase == Phase::kRunning && (state_.awaiting_model || state_.NextOpenCall() != nullptr);
  if (!mid_step) return Status::Ok();
  // A stop that recorded itself (SIGTERM, in or past its grace) is a rollout or a drain,
  // not a crash: the breaker does not count the restart after it.
  const bool after_shutdown = state_.last_event_type == event_type::kInterrupted;
  CARAPACE_RETURN_IF_ERROR(Record({Make(event_type::kRecovered, {{"awaitingModel", state_.awaiting_model},
                                                                  {"afterShutdown", after_shutdown}})},
                                  true));
  if (after_shutdown) return Status::Ok();
  const int64_t now = options_.wall_clock->NowMillis();
  int restarts = 0;
  for (const auto& [step, at] : state_.recoveries) restarts += step == state_.step && now - at <= kCrashLoopWindowMs;
  if (restarts < kCrashLoopRestarts) return Status::Ok();
  return Record({Make(event_type::kPhaseChanged,
                      {{"phase", PhaseName(Phase::kDegraded)},
                       {"reason", "step " + std::to_string(state_.step) + " was restarted " + std::to_string(restarts) +
                                      " times within 5 minutes; the worker stopped re-dispatching it. Resume once the "
                                      "cause is fixed"}})},
                true);
}

Result<Phase> Runner::Run() {
  accounted_at_ms_ = options_.clock->NowMillis();
  {
    auto lock = store_->WriteLock();
    CARAPACE_RETURN_IF_ERROR(SyncExternal());
  }
  if (state_.phase == Phase::kPending) CARAPACE_RETURN_IF_ERROR(Start());
  if (!revision_checked_) CARAPACE_RETURN_IF_ERROR(ApplySpecRevision());
  if (options_.persistent && !crash_loop_checked_) CARAPACE_RETURN_IF_ERROR(CheckCrashLoop());
  auto resume_to = [&](Phase phase, const std::string& reason) {
    return Record({Make(event_type::kPhaseChanged, {{"phase", PhaseName(phase)}, {"reason", reason}})}, true);
  };
  for (;;) {
    if (store_->last_seq() != state_.last_seq) {
      auto lock = store_->WriteLock();
      CARAPACE_RETURN_IF_ERROR(SyncExternal());
    }
    if (IsTerminal(state_.phase)) return state_.phase;
    if (options_.stop_requested && options_.stop_requested()) return state_.phase;
    if (state_.cancel_requested) {
      CARAPACE_RETURN_IF_ERROR(Finish(Phase::kCancelled, "cancelled by a person" + (state_.cancel_reason.empty() ? std::string() : ": " + state_.cancel_reason), ""));
      continue;
    }
    if (state_.phase == Phase::kDegraded) {
      if (state_.degraded_hold) return Phase::kDegraded;  // Resume or a spec revision lets go
      CARAPACE_RETURN_IF_ERROR(resume_to(Phase::kRunning, "resumed after " + state_.reason));
      continue;
    }
    if (state_.pause_requested) {
      if (state_.phase != Phase::kPaused) {
        CARAPACE_RETURN_IF_ERROR(Record({Make(event_type::kPhaseChanged, {{"phase", PhaseName(Phase::kPaused)},
                                                                           {"reason", state_.handoff_id.empty() ? "paused by a person" : "handed off"},
                                                                           {"pausedFrom", PhaseName(state_.phase)}})},
                                        true));
      }
      return Phase::kPaused;
    }
    if (state_.phase == Phase::kPaused) {
      // Back to what it was doing: an idle agent stays idle until a message comes; a call
      // that waited for a person waits on (unless it was settled while paused).
      Phase back = state_.paused_from == Phase::kIdle ? Phase::kIdle : Phase::kRunning;
      if (!state_.WaitingCalls().empty()) back = Phase::kWaitingForApproval;
      CARAPACE_RETURN_IF_ERROR(resume_to(back, "resumed by a person"));
      continue;
    }
    if (!state_.WaitingCalls().empty()) return Phase::kWaitingForApproval;
    // A compaction a person asked for, between steps (a step in progress does it before its
    // model call). A summary whose model call found no model is tried again at next_try.
    if (state_.compaction_requested && !state_.awaiting_model && state_.NextOpenCall() == nullptr &&
        next_try_at_ms_ <= options_.clock->NowMillis()) {
      CARAPACE_RETURN_IF_ERROR(Compact("requested", true).status());
      continue;
    }
    if (state_.phase == Phase::kWaitingForApproval) {
      CARAPACE_RETURN_IF_ERROR(Record({Make(event_type::kPhaseChanged, {{"phase", PhaseName(Phase::kRunning)},
                                                                          {"reason", "a person settled the waiting call"}})},
                                      true));
      continue;
    }
    // A model that could not be reached, or a period budget, is waited out Running: the
    // caller comes back at NextTryAtMs (or sooner, for a new event).
    if (next_try_at_ms_ > options_.clock->NowMillis()) return state_.phase;
    if (state_.awaiting_model) {
      CARAPACE_RETURN_IF_ERROR(CallModel());
      continue;
    }
    CallState* open = state_.NextOpenCall();
    if (open == nullptr) {
      if (state_.phase == Phase::kIdle) {
        if (state_.inbox.empty()) {
          CARAPACE_RETURN_IF_ERROR(ApplyRetention());
          return Phase::kIdle;
        }
        // Not synced: a lost turn_started leaves the message in the inbox, taken again.
        CARAPACE_RETURN_IF_ERROR(Record({Make(event_type::kTurnStarted, {{"messageSeq", state_.inbox.front().seq},
                                                                          {"from", state_.inbox.front().from}})},
                                        false));
        continue;
      }
      CARAPACE_RETURN_IF_ERROR(StartStep());
      continue;
    }
    CARAPACE_RETURN_IF_ERROR(HandleCall(open, static_cast<size_t>(open - state_.calls.data())));
  }
}

Status Runner::ApplyRetention() {
  // At most once an hour (of the run's clock): a plan reads a few checkpoints.
  const int64_t now = options_.wall_clock->NowMillis();
  if (!run_.spec.retention || now - retention_checked_ms_ < 3600 * 1000) return Status::Ok();
  retention_checked_ms_ = now;
  Result<std::optional<HistoryTrim>> planned = PlanHistoryTrim(*store_, *run_.spec.retention, now);
  if (!planned.ok()) {
    // Housekeeping: an agent that cannot plan a removal keeps its history and goes on.
    log::Warn("spec.retention: nothing removed", {{"agentrun", run_.metadata.name}, {"error", planned.status().ToString()}});
    return Status::Ok();
  }
  std::optional<HistoryTrim> trim = std::move(planned).value();
  if (!trim) return Status::Ok();
  nlohmann::json d = {{"eventsBefore", trim->events_before},
                      {"checkpointsBefore", trim->checkpoints_before},
                      {"messagesBefore", trim->transcript_before},
                      {"artifacts", trim->artifacts.size()}};
  if (run_.spec.retention->max_age_days) d["maxAgeDays"] = *run_.spec.retention->max_age_days;
  if (run_.spec.retention->max_events) d["maxEvents"] = *run_.spec.retention->max_events;
  log::Info("history removed by spec.retention", d);
  return Record({Make(event_type::kHistoryTrimmed, d)}, true, {}, {{meta_key::kHistoryTrimmed, d.dump()}}, std::move(trim));
}

Status Runner::Start() {
  Event e = Make(event_type::kRunStarted, {{"name", run_.metadata.name},
                                           {"namespace", run_.metadata.ns},
                                           {"specHash", run_.SpecHash()},
                                           {"instructions", run_.spec.instructions},
                                           {"goal", run_.spec.goal}});
  CARAPACE_ASSIGN_OR_RETURN(auto identity, LoadRunIdentity(*store_));
  e.data["runId"] = identity ? identity->run_id : "";
  // The spec the run starts with is the store's, in the same write: a worker killed between
  // creating the store and this start may come back with another spec.
  return Record({e}, true, {}, {{meta_key::kSpecHash, run_.SpecHash()}, {meta_key::kSpec, run_.SpecJson().dump()}});
}

Status Runner::Finish(Phase phase, const std::string& reason, const std::string& result, std::vector<Event> before) {
  // Reasons quote services (error bodies, gRPC messages) that may not be valid UTF-8.
  nlohmann::json d = {{"phase", PhaseName(phase)}, {"reason", ValidUtf8(reason)}};
  if (phase == Phase::kSucceeded || phase == Phase::kIdle) d["result"] = ValidUtf8(result);
  before.push_back(Make(event_type::kPhaseChanged, d));
  CARAPACE_RETURN_IF_ERROR(Record(std::move(before), true));
  // A run that ended leaves nothing for the next open to replay from the WAL. (Not after
  // every turn of a long-lived agent: that would make one small file per turn.)
  return IsTerminal(phase) ? store_->Flush() : Status::Ok();
}

std::vector<Event> Runner::NotRunResults(size_t from, const std::string& why) const {
  // A model API wants an answer for every call of an earlier turn, run or not.
  std::vector<Event> events;
  for (size_t i = from; i < state_.calls.size(); ++i) {
    const CallState& c = state_.calls[i];
    if (c.status == CallStatus::kDone) continue;
    events.push_back(Make(event_type::kToolResult, {{"callId", c.call.id}, {"tool", c.call.name}, {"ok", false},
                                                    {"output", nullptr}, {"error", "not run: " + why}}));
  }
  return events;
}

Status Runner::EndTurn(Phase one_shot_phase, const std::string& reason) {
  std::vector<Event> events = NotRunResults(0, reason);
  if (!events.empty() || state_.awaiting_model) events.push_back(Make(event_type::kStepCompleted));
  if (!options_.persistent) return Finish(one_shot_phase, reason, "", std::move(events));
  // No result: the turn has no answer, and an agent whose goal turn ends so is not shown as
  // having reached it. The reason says why.
  return Finish(Phase::kIdle, "turn " + std::to_string(state_.turns) + " ended without an answer: " + reason, "",
                std::move(events));
}

Status Runner::StartStep() {
  if (auto reason = BudgetExhaustedReason(false)) return Finish(Phase::kBudgetExhausted, *reason, "");
  if (auto reason = TurnBudgetReason(false)) {
    return EndTurn(Phase::kBudgetExhausted, *reason);
  }
  CARAPACE_ASSIGN_OR_RETURN(bool deferred, DeferForPeriodBudget());
  if (deferred) return Status::Ok();
  CARAPACE_ASSIGN_OR_RETURN(bool waits, FitContext());
  if (waits) return Status::Ok();
  const int64_t window = Limits().window;
  Event e = Make(event_type::kModelRequest, {{"messages", state_.messages.size()},
                                             {"estimatedPromptTokens", EstimateContextTokens(state_, PromptSize())},
                                             {"contextWindow", window}});
  e.step = state_.step + 1;
  // Not synced: a lost request is simply asked again. It reaches disk with the next sync.
  CARAPACE_RETURN_IF_ERROR(Record({e}, false));
  return CallModel();
}

std::optional<int64_t> Runner::NextTryAtMs() const {
  if (next_try_at_ms_ == 0) return std::nullopt;
  return next_try_at_ms_;
}

Status Runner::CallModel() {
  CARAPACE_ASSIGN_OR_RETURN(bool waits, FitContext());
  if (waits) return Status::Ok();
  // The instructions of the revision in force (the transcript keeps the ones the run started
  // with), the summary of compacted turns, and what came after (context_window.h).
  const std::vector<Message>& prompt = Prompt();
  ModelRequest request{state_.step, &prompt, schemas_, ""};
  telemetry::Span span = tracer_.StartModelCall(state_, request);
  request.traceparent = span.context().Traceparent();
  int64_t started = MonoNowMillis();
  // The model layer has already retried the endpoint and tried the fallbacks. A reply that
  // broke off after tokens arrived (kAborted) or ran past its deadline (a slow moment of
  // the service) is asked for again whole, twice at most: nothing of it was recorded, and
  // a model call has no side effect.
  Result<ModelResponse> response = model_->Complete(request);
  auto ask_again = [](const Status& s) {
    return s.code() == StatusCode::kAborted || s.code() == StatusCode::kDeadlineExceeded;
  };
  for (int attempt = 1; !response.ok() && ask_again(response.status()) && attempt <= 2; ++attempt) {
    log::Warn("model reply broke off; asking again", {{"agentrun", run_.metadata.name}, {"step", state_.step},
                                                      {"attempt", attempt}, {"error", response.status().ToString()}});
    response = model_->Complete(request);
  }
  tracer_.EndModelCall(span, response, prompt);
  if (!response.ok()) return ModelCallFailed(response.status());
  next_try_at_ms_ = 0;
  model_unavailable_since_ms_ = 0;
  CARAPACE_ASSIGN_OR_RETURN(bool cut, HandleCutReply(*response, MonoNowMillis() - started));
  if (cut) return Status::Ok();

  nlohmann::json calls = nlohmann::json::array();
  for (size_t i = 0; i < response->tool_calls.size(); ++i) {
    ToolCall c = response->tool_calls[i];
    c.id = "s" + std::to_string(state_.step) + "c" + std::to_string(i);
    calls.push_back(ToJson(c));
  }
  const std::string text = ValidUtf8(response->text).get<std::string>();
  Event e = Make(event_type::kModelResponse, {{"text", text},
                                              {"toolCalls", ValidUtf8(calls)},
                                              {"promptTokens", response->prompt_tokens},
                                              {"promptBytes", PromptSize()},
                                              {"completionTokens", response->completion_tokens},
                                              {"finishReason", response->finish_reason},
                                              {"answeredBy", response->answered_by},
                                              {"durationMs", MonoNowMillis() - started}});
  AddTokenWindow(&e.data);
  AddStreamFigures(*response, &e.data);
  RunTracer::Stamp(&e.data, tracer_.TurnContext(state_), &span);
  if (response->tokens_estimated) e.data["tokensEstimated"] = true;
  if (calls.empty()) {
    return Finish(TurnDone(), "the model answered without tool calls", text, {e, Make(event_type::kStepCompleted)});
  }
  // Not synced on its own: it becomes durable with the first tool intent or step end.
  return Record({e}, false);
}

Status Runner::HandleCall(CallState* call, size_t index) {
  const std::string name = call->call.name;
  const std::string id = call->call.id;
  const bool last = IsLastOpenCall(state_, call);
  auto result_events = [&](bool ok, nlohmann::json output, const std::string& error) {
    nlohmann::json d = {{"callId", id}, {"tool", name}, {"ok", ok}, {"output", std::move(output)}};
    if (!ok) d["error"] = error;
    std::vector<Event> ev{Make(event_type::kToolResult, d)};
    if (last) ev.push_back(Make(event_type::kStepCompleted));
    return ev;
  };

  switch (call->status) {
    case CallStatus::kPlanned: {
      if (!call->call.malformed.empty()) {
        // The model's mistake to correct, not the run's end: it sees the error and its call.
        const std::string raw = call->call.arguments.is_string() ? call->call.arguments.get<std::string>() : "";
        return Record(result_events(false, nullptr, "malformed tool call: " + call->call.malformed +
                                                        ". You wrote: " + raw.substr(0, 2000) +
                                                        "\nWrite the call again as a JSON object with \"name\" and \"arguments\"."),
                      last && SyncStepBoundaries());
      }
      if (name == kFinishTool) {
        const nlohmann::json& r = call->call.arguments.contains("result") ? call->call.arguments["result"] : nlohmann::json("");
        std::string result = r.is_string() ? r.get<std::string>() : r.dump();
        std::vector<Event> events = {
            Make(event_type::kToolResult, {{"callId", id}, {"tool", name}, {"ok", true}, {"output", {{"finished", true}}}})};
        // Calls after finish are not run (the turn is over).
        for (auto& e : NotRunResults(index + 1, "the agent called finish first")) events.push_back(std::move(e));
        events.push_back(Make(event_type::kStepCompleted));
        return Finish(TurnDone(), "the agent called finish", result, std::move(events));
      }
      auto spec = tool_specs_.find(name);
      if (spec == tool_specs_.end()) {
        std::string available;
        for (const auto& s : schemas_) available += (available.empty() ? "" : ", ") + s.name;
        return Record(result_events(false, nullptr, "unknown tool \"" + name + "\"; available: " + available),
                      last && SyncStepBoundaries());
      }
      if (auto reason = BudgetExhaustedReason(true)) return Finish(Phase::kBudgetExhausted, *reason, "");
      if (auto reason = TurnBudgetReason(true)) {
        return EndTurn(Phase::kBudgetExhausted, *reason);
      }
      std::string sig = name + " " + call->call.arguments.dump();
      if (sig == state_.last_call_signature && state_.repeat_count >= 4) {
        return Finish(Phase::kFailed, "loop detected: tool " + name + " was called 5 times in a row with the same arguments", "");
      }
      if (spec->second->require_approval || tools_.at(name)->RequiresApproval()) {
        return Record({Make(event_type::kApprovalRequested, {{"callId", id}, {"tool", name},
                                                              {"arguments", call->call.arguments},
                                                              {"reason", "approval_required"}})},
                      true);
      }
      return Execute(call, index, false);
    }
    case CallStatus::kApproved:
      if (!tool_specs_.count(name)) {
        // Approved under an earlier revision whose tool this one no longer has.
        return Record(result_events(false, nullptr, "not run: the tool \"" + name + "\" is no longer in the spec (revision " +
                                                        std::to_string(state_.revision) + ")"),
                      true);
      }
      return Execute(call, index, call->wait_reason == "outcome_unknown");
    case CallStatus::kDenied: {
      const CallState settled = *call;
      CARAPACE_RETURN_IF_ERROR(Record(result_events(false, nullptr,
                                                    call->wait_reason == "outcome_unknown"
                                                        ? "outcome_unknown: this call was in flight when the worker "
                                                          "stopped; it may or may not have taken effect, and a person "
                                                          "chose not to repeat it"
                                                        : "a person denied this call"),
                                      true));
      tracer_.ApprovalSettled(state_, settled);  // once the decision's outcome is stored
      return Status::Ok();
    }
    case CallStatus::kInFlight: {
      // Only reachable after a restart: the intent is on disk, the result is not. A call
      // whose tool a spec revision removed cannot be re-run: its outcome is unknown, and
      // recovery.unknownOutcome decides, as after a crash.
      const bool repeatable = call->effect == EffectName(Effect::kReadOnly) || call->effect == EffectName(Effect::kIdempotent);
      if (repeatable && tool_specs_.count(name)) {
        log::Info("re-running an interrupted call", {{"agentrun", run_.metadata.name}, {"call", id},
                                                     {"tool", name}, {"effect", call->effect}});
        return Execute(call, index, true);
      }
      log::Warn("a side-effecting call was interrupted; its outcome is unknown",
                {{"agentrun", run_.metadata.name}, {"call", id}, {"tool", name}});
      return Record({Make(event_type::kToolOutcomeUnknown, {{"callId", id}, {"tool", name}})}, true);
    }
    case CallStatus::kOutcomeUnknown:
      switch (run_.spec.unknown_outcome) {
        case UnknownOutcomePolicy::kAsk:
          return Record({Make(event_type::kApprovalRequested, {{"callId", id}, {"tool", name},
                                                                {"arguments", call->call.arguments},
                                                                {"reason", "outcome_unknown"}})},
                        true);
        case UnknownOutcomePolicy::kTellModel:
          return Record(result_events(false, nullptr,
                                      "outcome_unknown: this call was in flight when the worker stopped; it may or may "
                                      "not have taken effect. Check before repeating it."),
                        true);
        case UnknownOutcomePolicy::kFail:
          return Finish(Phase::kFailed,
                        "tool call " + id + " (" + name +
                            ") was in flight when the worker stopped; its outcome is unknown and recovery.unknownOutcome is fail",
                        "");
      }
      return Internal("unhandled unknownOutcome policy");
    case CallStatus::kAwaitingApproval:
    case CallStatus::kDone:
      break;
  }
  return Internal("call " + id + " is not runnable in status " + CallStatusName(call->status));
}

Status Runner::Execute(CallState* call, size_t index, bool retry) {
  const std::string name = call->call.name;
  const std::string id = call->call.id;
  const ToolSpec* spec = tool_specs_.at(name);
  Tool* tool = tools_.at(name).get();
  const Effect effect = spec->effect.value_or(tool->DefaultEffect());
  const bool side_effecting = effect == Effect::kSideEffecting;
  const bool last = IsLastOpenCall(state_, call);
  ToolContext ctx{id, IdempotencyKey(state_.run_id, state_.step, index, call->call), ""};
  nlohmann::json arguments = call->call.arguments;
  telemetry::Span span = tracer_.StartToolCall(state_, *call, EffectName(effect), ctx.idempotency_key, retry);
  ctx.traceparent = span.context().Traceparent();
  const telemetry::TraceContext turn = tracer_.TurnContext(state_);

  // The intent must be on disk before a side-effecting call leaves the process.
  Event intent = Make(event_type::kToolIntent, {{"callId", id},
                                                {"tool", name},
                                                {"arguments", arguments},
                                                {"effect", EffectName(effect)},
                                                {"idempotencyKey", ctx.idempotency_key},
                                                {"retry", retry}});
  RunTracer::Stamp(&intent.data, turn, &span);
  // An approved call's wait is a span once the call's intent is stored (made then, so a
  // process that dies before cannot send it twice).
  std::optional<CallState> approved;
  if (call->status == CallStatus::kApproved) approved = *call;
  if (Status s = Record({intent}, side_effecting); !s.ok()) {
    span.SetError(StatusCodeName(s.code()), s.message());
    return s;
  }
  if (approved) tracer_.ApprovalSettled(state_, *approved);
  int64_t started = MonoNowNanos();
  ToolResult result = CallTool(*tool, arguments, ctx);
  double ms = static_cast<double>(MonoNowNanos() - started) / 1e6;
  tracer_.EndToolCall(span, result);

  // Redacted here as well as in Record: the full output may go to the artifacts.
  nlohmann::json output = RedactJson(ValidUtf8(result.output));
  std::vector<std::pair<std::string, std::string>> artifacts;
  std::string full = output.dump();
  if (full.size() > static_cast<size_t>(spec->max_output_bytes)) {
    std::string key = "tool-output/" + id;
    std::string preview = full.substr(0, std::min(kPreviewBytes, static_cast<size_t>(spec->max_output_bytes)));
    output = ValidUtf8(nlohmann::json{{"truncated", true}, {"bytes", full.size()}, {"artifact", key}, {"preview", preview}});
    artifacts.emplace_back(key, std::move(full));
  }
  nlohmann::json d = {{"callId", id}, {"tool", name}, {"ok", result.ok}, {"output", output}, {"durationMs", ms}};
  if (!result.ok) d["error"] = ValidUtf8(result.error);
  RunTracer::Stamp(&d, turn, &span);
  std::vector<Event> events{Make(event_type::kToolResult, d)};
  if (last) events.push_back(Make(event_type::kStepCompleted));
  return Record(std::move(events), side_effecting || (last && SyncStepBoundaries()), std::move(artifacts));
}

Status SettleWaitingCall(RunStore* store, const std::string& call_id, bool approve, const std::string& who) {
  // The check and the write, with no runner commit between.
  CARAPACE_ASSIGN_OR_RETURN(auto lock, store->WriteLockUnlessFull());
  CARAPACE_ASSIGN_OR_RETURN(RunState state, LoadRunState(*store));
  if (state.phase != Phase::kWaitingForApproval && state.phase != Phase::kPaused) {
    return FailedPrecondition(std::string("the run is not waiting for approval (phase ") + PhaseName(state.phase) + ")");
  }
  CallState* call = state.FindCall(call_id);
  if (call == nullptr || call->status != CallStatus::kAwaitingApproval) {
    std::string waiting;
    for (const auto* c : state.WaitingCalls()) waiting += (waiting.empty() ? "" : ", ") + c->call.id;
    return NotFound("no call \"" + call_id + "\" is waiting; waiting: " + (waiting.empty() ? "none" : waiting));
  }
  if (!state.handoff_id.empty()) return FailedPrecondition(HandedOffRefusal(state.handoff_id));
  Event e;
  e.type = event_type::kApprovalDecided;
  e.step = state.step;
  e.ts_ms = WallNowMillis();
  e.data = {{"callId", call_id}, {"approved", approve}, {"by", who}, {"reason", call->wait_reason}};
  StoreBatch batch;
  batch.events.push_back(e.Encode());
  return store->Commit(batch, true).status();
}

Status ForkRun(const RunStore& source, int64_t step, const std::string& dest_dir) {
  CARAPACE_ASSIGN_OR_RETURN(auto cp, source.LatestCheckpoint(step));
  if (!cp || cp->first != step) {
    // Every step has one while the run is young; a long life has many: the first twenty and
    // the last are named.
    std::string steps;
    int64_t count = 0, last = 0;
    CARAPACE_RETURN_IF_ERROR(source.ForEachCheckpoint([&](int64_t s, std::string_view) {
      if (++count <= 20) steps += (steps.empty() ? "" : ", ") + std::to_string(s);
      last = s;
      return true;
    }));
    if (count > 20) steps += ", ... " + std::to_string(last) + " (" + std::to_string(count) + " checkpoints)";
    std::string removed;
    CARAPACE_ASSIGN_OR_RETURN(auto trimmed, LastRemovedHistory(source));
    if (trimmed) {
      removed = "; checkpoints before step " + std::to_string(trimmed->checkpoints_before) +
                " were removed by spec.retention";
    }
    return NotFound("no checkpoint for step " + std::to_string(step) + "; checkpoints exist for steps " + steps + removed);
  }
  CARAPACE_ASSIGN_OR_RETURN(auto identity, LoadRunIdentity(source));
  if (!identity) return NotFound("state dir " + source.state_dir() + " holds no run");
  nlohmann::json cp_json = nlohmann::json::parse(cp->second, nullptr, false);
  if (cp_json.is_discarded()) return Corruption("checkpoint of step " + std::to_string(step) + " is not valid JSON");
  CARAPACE_ASSIGN_OR_RETURN(RunState state, RunState::FromCheckpointJson(cp_json));
  if (IsTerminal(state.phase)) {
    return FailedPrecondition("step " + std::to_string(step) + " ended the run (" + PhaseName(state.phase) +
                              "); fork from an earlier step");
  }
  std::error_code ec;
  if (std::filesystem::equivalent(source.state_dir(), dest_dir, ec)) {
    return InvalidArgument("fork target " + dest_dir + " is the source state dir; give a new directory");
  }

  CARAPACE_ASSIGN_OR_RETURN(auto dest, RunStore::Open(dest_dir, RunStore::OpenMode::kCreateIfMissing));
  if (dest->last_seq() != 0) {
    return FailedPrecondition("fork target " + dest_dir + " already holds a run; give a new or empty directory");
  }
  // The workspace first: the run is written last, so a fork cut short leaves no run behind
  // and can simply be repeated. Files are not versioned per step: the fork starts with the
  // workspace as it is now. Symlinks are copied as links, never followed out of the workspace.
  std::filesystem::copy(source.workspace_dir(), dest->workspace_dir(),
                        std::filesystem::copy_options::recursive | std::filesystem::copy_options::overwrite_existing |
                            std::filesystem::copy_options::copy_symlinks,
                        ec);
  if (ec) return IoError("copying the workspace: " + ec.message());
  StoreBatch batch;
  Status st;
  CARAPACE_RETURN_IF_ERROR(source.ForEachEvent(1, [&](uint64_t seq, std::string_view v) {
    if (seq > state.last_seq) return false;
    // The oldest events may have been removed by spec.retention: the copies keep their numbers.
    if (!batch.first_seq) batch.first_seq = seq;
    batch.events.emplace_back(v);
    return true;
  }));
  CARAPACE_RETURN_IF_ERROR(source.ForEachTranscript(0, [&](int64_t i, std::string_view m) {
    if (i >= state.persisted_messages) return false;
    batch.transcript.emplace_back(i, std::string(m));
    return true;
  }));
  batch.checkpoint = std::make_pair(cp->first, cp->second);
  std::string new_id = NewRunId();
  Event forked;
  forked.type = event_type::kForked;
  forked.step = step;
  forked.ts_ms = WallNowMillis();
  forked.data = {{"runId", new_id}, {"from", source.state_dir()}, {"sourceRunId", identity->run_id}, {"fromStep", step}};
  batch.events.push_back(forked.Encode());
  batch.meta = {{meta_key::kRunId, new_id},
                {meta_key::kName, identity->name},
                {meta_key::kNamespace, identity->ns},
                {meta_key::kSpecHash, identity->spec_hash},
                {meta_key::kSpec, identity->spec_json}};
  // Memory is the agent's, not the step's: the fork remembers what the source remembers now.
  std::vector<std::pair<std::string, std::string>> memory;
  CARAPACE_RETURN_IF_ERROR(source.ForEachMemory([&](std::string_view k, std::string_view v) {
    memory.emplace_back(std::string(k), std::string(v));
    return true;
  }));
  if (!memory.empty()) CARAPACE_RETURN_IF_ERROR(dest->PutMemory(memory, false));
  CARAPACE_RETURN_IF_ERROR(dest->Commit(batch, true).status());
  return dest->Flush();
}

}  // namespace carapace
