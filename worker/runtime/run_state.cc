// Apply(): the one place that says what each event means for the state of a run.
#include "worker/runtime/run_state.h"

#include <algorithm>

namespace carapace {

const char* PhaseName(Phase p) {
  switch (p) {
    case Phase::kPending: return "Pending";
    case Phase::kRunning: return "Running";
    case Phase::kWaitingForApproval: return "WaitingForApproval";
    case Phase::kSucceeded: return "Succeeded";
    case Phase::kFailed: return "Failed";
    case Phase::kBudgetExhausted: return "BudgetExhausted";
    case Phase::kIdle: return "Idle";
    case Phase::kPaused: return "Paused";
    case Phase::kDegraded: return "Degraded";
    case Phase::kCancelled: return "Cancelled";
  }
  return "Pending";
}

std::optional<Phase> ParsePhase(const std::string& s) {
  for (Phase p : {Phase::kPending, Phase::kRunning, Phase::kWaitingForApproval, Phase::kSucceeded, Phase::kFailed,
                  Phase::kBudgetExhausted, Phase::kIdle, Phase::kPaused, Phase::kDegraded, Phase::kCancelled}) {
    if (s == PhaseName(p)) return p;
  }
  return std::nullopt;
}

bool IsTerminal(Phase p) {
  return p == Phase::kSucceeded || p == Phase::kFailed || p == Phase::kBudgetExhausted || p == Phase::kCancelled;
}

const char* CallStatusName(CallStatus s) {
  switch (s) {
    case CallStatus::kPlanned: return "planned";
    case CallStatus::kAwaitingApproval: return "awaiting_approval";
    case CallStatus::kApproved: return "approved";
    case CallStatus::kDenied: return "denied";
    case CallStatus::kInFlight: return "in_flight";
    case CallStatus::kOutcomeUnknown: return "outcome_unknown";
    case CallStatus::kDone: return "done";
  }
  return "planned";
}

static std::optional<CallStatus> ParseCallStatus(const std::string& s) {
  for (CallStatus c : {CallStatus::kPlanned, CallStatus::kAwaitingApproval, CallStatus::kApproved,
                       CallStatus::kDenied, CallStatus::kInFlight, CallStatus::kOutcomeUnknown,
                       CallStatus::kDone}) {
    if (s == CallStatusName(c)) return c;
  }
  return std::nullopt;
}

int64_t MessageBytes(const Message& m) {
  int64_t bytes = static_cast<int64_t>(m.role.size() + m.content.size() + m.tool_call_id.size() + m.name.size()) + 8;
  for (const auto& c : m.tool_calls) bytes += static_cast<int64_t>(c.id.size() + c.name.size() + c.arguments.dump().size()) + 8;
  return bytes;
}

void MessageLog::push_back(Message m) {
  if (m.role == "tool" && static_cast<int64_t>(m.content.size()) > kLargeToolResult) large_.insert(size());
  offsets_.push_back(end_offset_);
  end_offset_ += MessageBytes(m);
  held_.push_back(std::move(m));
}

void MessageLog::resize(int64_t count) {
  while (size() > count && !held_.empty()) {
    large_.erase(size() - 1);
    end_offset_ = offsets_.back();
    offsets_.pop_back();
    held_.pop_back();
  }
}

void MessageLog::Reset(int64_t base, std::vector<Message> held) {
  base_ = base;
  held_.clear();
  offsets_.clear();
  large_.clear();
  end_offset_ = 0;  // offsets count from the first held message: only differences are used
  for (auto& m : held) push_back(std::move(m));
}

void MessageLog::ForgetBefore(int64_t index) {
  while (base_ < index && !held_.empty()) {
    large_.erase(base_);
    held_.pop_front();
    offsets_.pop_front();
    base_ += 1;
  }
}

const CallState* RunState::FindCall(const std::string& call_id) const {
  for (const auto& c : calls) {
    if (c.call.id == call_id) return &c;
  }
  return nullptr;
}

CallState* RunState::FindCall(const std::string& call_id) {
  return const_cast<CallState*>(static_cast<const RunState*>(this)->FindCall(call_id));
}

CallState* RunState::NextOpenCall() {
  for (auto& c : calls) {
    if (c.status != CallStatus::kDone) return &c;
  }
  return nullptr;
}

std::vector<const CallState*> RunState::WaitingCalls() const {
  std::vector<const CallState*> out;
  for (const auto& c : calls) {
    if (c.status == CallStatus::kAwaitingApproval) out.push_back(&c);
  }
  return out;
}

std::string ToolResultContent(const nlohmann::json& d) {
  // Marked as data from a tool: the model must not read it as new instructions.
  nlohmann::json content = {{"tool_result", d.value("ok", false) ? "ok" : "error"}};
  if (d.contains("output") && !d["output"].is_null()) content["output"] = d["output"];
  if (d.contains("error")) content["error"] = d["error"];
  return content.dump();
}

int64_t TokenBucketMs(int64_t period_ms) { return std::max<int64_t>(60 * 1000, period_ms / 120); }

int64_t TokensInWindow(const RunState& s, int64_t period_ms, int64_t now_ms) {
  int64_t sum = 0;
  for (auto it = s.token_buckets.upper_bound(now_ms - period_ms); it != s.token_buckets.end(); ++it) sum += it->second;
  return sum;
}

static void CountModelFigures(RunState* s, const nlohmann::json& d) {
  RunState::ModelFigures& f = s->model_figures[d.value("answeredBy", "")];
  ++f.replies;
  f.retries += d.value("retries", int64_t{0});
  if (d.contains("firstTokenMs")) {
    f.first_token_ms_total += d.value("firstTokenMs", int64_t{0});
    ++f.first_tokens;
  }
  if (d.contains("tokensPerSecond")) {
    f.tokens_per_second_total += d.value("tokensPerSecond", 0.0);
    ++f.rates;
  }
}

// Tokens of a reply count against the lifetime budget and, when the run has a period budget
// (the event carries its window), against the bucket of the event's time.
static void SpendTokens(RunState* s, const Event& e) {
  const int64_t tokens = e.data.value("promptTokens", int64_t{0}) + e.data.value("completionTokens", int64_t{0});
  s->used.tokens += tokens;
  const int64_t window = e.data.value("windowMs", int64_t{0});
  if (window <= 0) return;
  const int64_t width = TokenBucketMs(window);
  s->token_buckets[e.ts_ms - e.ts_ms % width] += tokens;
  s->token_buckets.erase(s->token_buckets.begin(), s->token_buckets.upper_bound(e.ts_ms - window - width));
}

static Status ApplyEvent(RunState* s, const Event& e);

Status Apply(RunState* s, const Event& e) {
  if (!e.data.is_object()) return Corruption("event " + std::to_string(e.seq) + " has data that is not an object");
  try {
    return ApplyEvent(s, e);
  } catch (const nlohmann::json::exception& ex) {
    // A field of the wrong type: the log is not what this runtime wrote.
    return Corruption("event " + std::to_string(e.seq) + " (" + e.type + ") is malformed: " + ex.what());
  }
}

static Status ApplyEvent(RunState* s, const Event& e) {
  const nlohmann::json& d = e.data;
  auto call_for = [&](const char* what) -> Result<CallState*> {
    std::string id = d.value("callId", "");
    CallState* c = s->FindCall(id);
    if (!c) return Corruption(std::string(what) + " event " + std::to_string(e.seq) + " names unknown call \"" + id + "\"");
    return c;
  };
  if (d.contains("activeMs")) s->used.wall_ms += d["activeMs"].get<int64_t>();

  if (e.type == event_type::kRunStarted) {
    s->run_id = d.value("runId", "");
    s->phase = Phase::kRunning;
    s->turns = 1;  // the goal
    s->turn_started_ms = e.ts_ms;
    s->turn_ended = false;
    s->started_ms = e.ts_ms;
    s->revision = 1;
    s->spec_hash = d.value("specHash", "");
    s->first_turn_message = d.value("instructions", "").empty() ? 0 : 1;
    if (s->first_turn_message == 1) s->messages.push_back({"system", d["instructions"], {}, "", ""});
    s->messages.push_back({"user", d.value("goal", ""), {}, "", ""});
  } else if (e.type == event_type::kModelRequest) {
    s->step = e.step;
    s->used.steps = std::max(s->used.steps, e.step);
    s->awaiting_model = true;
    s->calls.clear();
    s->model_failures = 0;
    s->model_error.clear();
    s->cut_replies = 0;
    s->deferred_reason.clear();
    s->context_window = d.value("contextWindow", s->context_window);
  } else if (e.type == event_type::kModelResponse) {
    s->awaiting_model = false;
    s->model_failures = 0;
    s->model_error.clear();
    SpendTokens(s, e);
    CountModelFigures(s, d);
    s->tokens_estimated = d.value("tokensEstimated", false);
    if (d.value("promptBytes", int64_t{0}) > 0 && d.value("promptTokens", int64_t{0}) > 0) {
      s->last_prompt_tokens = d["promptTokens"].get<int64_t>();
      s->last_prompt_bytes = d["promptBytes"].get<int64_t>();
    }
    Message m{"assistant", d.value("text", ""), {}, "", ""};
    s->calls.clear();
    for (const auto& c : d.value("toolCalls", nlohmann::json::array())) {
      ToolCall call = ToolCallFromJson(c);
      m.tool_calls.push_back(call);
      s->calls.push_back(CallState{call, CallStatus::kPlanned, "", "", "", 0, 0, 0, ""});
    }
    s->messages.push_back(std::move(m));
  } else if (e.type == event_type::kToolIntent) {
    CARAPACE_ASSIGN_OR_RETURN(CallState * c, call_for("tool_intent"));
    c->status = CallStatus::kInFlight;
    c->effect = d.value("effect", "");
    c->idempotency_key = d.value("idempotencyKey", "");
    c->attempts += 1;
    s->used.tool_calls += 1;
    if (!d.value("retry", false)) {
      std::string sig = c->call.name + " " + c->call.arguments.dump();
      if (sig == s->last_call_signature) {
        s->repeat_count += 1;
      } else {
        s->last_call_signature = sig;
        s->repeat_count = 1;
      }
    }
  } else if (e.type == event_type::kToolResult) {
    CARAPACE_ASSIGN_OR_RETURN(CallState * c, call_for("tool_result"));
    c->status = CallStatus::kDone;
    s->messages.push_back({"tool", ToolResultContent(d), {}, c->call.id, c->call.name});
  } else if (e.type == event_type::kToolOutcomeUnknown) {
    CARAPACE_ASSIGN_OR_RETURN(CallState * c, call_for("tool_outcome_unknown"));
    c->status = CallStatus::kOutcomeUnknown;
    c->wait_reason = "outcome_unknown";
  } else if (e.type == event_type::kApprovalRequested) {
    CARAPACE_ASSIGN_OR_RETURN(CallState * c, call_for("approval_requested"));
    c->status = CallStatus::kAwaitingApproval;
    c->wait_reason = d.value("reason", "approval_required");
    c->waiting_since_ms = e.ts_ms;
    s->phase = Phase::kWaitingForApproval;
    s->reason = "tool call " + c->call.id + " (" + c->call.name + ") waits for a person: " + c->wait_reason;
  } else if (e.type == event_type::kApprovalDecided) {
    CARAPACE_ASSIGN_OR_RETURN(CallState * c, call_for("approval_decided"));
    c->status = d.value("approved", false) ? CallStatus::kApproved : CallStatus::kDenied;
    c->decided_ms = e.ts_ms;
    c->decided_by = d.value("by", "");
  } else if (e.type == event_type::kPhaseChanged) {
    auto phase = ParsePhase(d.value("phase", ""));
    if (!phase) return Corruption("event " + std::to_string(e.seq) + " has an unknown phase");
    s->phase = *phase;
    s->reason = d.value("reason", "");
    if (s->phase == Phase::kIdle || IsTerminal(s->phase)) s->turn_ended = true;
    if (d.contains("result")) s->result = d["result"].get<std::string>();
    if (s->phase == Phase::kIdle) {
      s->idle_since_ms = e.ts_ms;
      s->awaiting_model = false;  // a turn ended early (a reply cut short) asks nothing more
    }
    if (s->phase == Phase::kPaused) s->paused_from = ParsePhase(d.value("pausedFrom", "Running")).value_or(Phase::kRunning);
    if (s->phase == Phase::kDegraded) {
      s->degraded_hold = true;
      s->degraded_cause = d.value("cause", "crash_loop");
    } else if (s->phase != Phase::kPaused) {
      s->degraded_hold = false;
      s->degraded_cause.clear();
    }
    if (s->phase != Phase::kRunning) s->deferred_reason.clear();
  } else if (e.type == event_type::kMessageReceived) {
    s->inbox.push_back({e.seq, d.value("text", ""), d.value("from", "")});
    if (d.contains("cron") && d.contains("scheduledForMs")) s->cron_fired_ms[d["cron"].get<std::string>()] = d["scheduledForMs"].get<int64_t>();
  } else if (e.type == event_type::kTurnStarted) {
    const uint64_t seq = d.value("messageSeq", uint64_t{0});
    if (s->inbox.empty() || s->inbox.front().seq != seq) {
      return Corruption("event " + std::to_string(e.seq) + " takes message " + std::to_string(seq) + ", which is not next in the inbox");
    }
    s->messages.push_back({"user", s->inbox.front().text, {}, "", ""});
    s->inbox.erase(s->inbox.begin());
    s->turns += 1;
    s->turn_started_ms = e.ts_ms;
    s->turn_ended = false;
    s->turn_start = s->used;
    s->phase = Phase::kRunning;
    s->reason = "turn " + std::to_string(s->turns) + ": a message from " + d.value("from", "api");
  } else if (e.type == event_type::kPauseRequested) {
    s->pause_requested = true;
  } else if (e.type == event_type::kResumeRequested) {
    // An exported copy stays fenced: only handoff_revoked lifts that (AgentService refuses
    // the resume; this holds for any writer of the log).
    s->pause_requested = !s->handoff_id.empty();
    // A person looked: the crash-loop breaker starts counting afresh, and a held turn is
    // tried again.
    if (s->phase == Phase::kDegraded) {
      s->recoveries.clear();
      s->degraded_hold = false;
    }
  } else if (e.type == event_type::kCancelRequested) {
    s->cancel_requested = true;
    s->cancel_reason = d.value("reason", "");
  } else if (e.type == event_type::kRecovered) {
    if (d.value("afterShutdown", false)) {
      // A restart after a recorded stop: not a crash.
    } else {
      s->recoveries.emplace_back(e.step, e.ts_ms);
    }
    if (s->recoveries.size() > 10) s->recoveries.erase(s->recoveries.begin());
  } else if (e.type == event_type::kInterrupted) {
    // A record for people: the call it names resumes as any cut-off call does.
  } else if (e.type == event_type::kHandedOff) {
    // A fence, kept as a pause that only an import (or a person taking it back) lifts.
    if (s->handoff_id.empty()) s->handoff_was_paused = s->pause_requested;
    s->handoff_id = d.value("handoffId", "");
    s->pause_requested = true;
  } else if (e.type == event_type::kImported || e.type == event_type::kHandOffRevoked) {
    if (!s->handoff_id.empty()) {  // a restored backup (forked) was never fenced
      s->pause_requested = s->handoff_was_paused;
      s->handoff_id.clear();
      s->handoff_was_paused = false;
    }
    // A fork is a new agent: a new run id, so new idempotency keys from here on.
    if (d.value("fork", false)) s->run_id = d.value("runId", s->run_id);
  } else if (e.type == event_type::kForked) {
    s->run_id = d.value("runId", s->run_id);  // a fork is a new run: new idempotency keys from here on
  } else if (e.type == event_type::kModelUnavailable) {
    s->model_failures = d.value("attempt", s->model_failures + 1);
    s->model_error = d.value("error", "");
  } else if (e.type == event_type::kModelReplyCut) {
    s->cut_replies += 1;
    SpendTokens(s, e);
    CountModelFigures(s, d);
  } else if (e.type == event_type::kSpecRevised) {
    s->revision = d.value("revision", s->revision + 1);
    s->spec_hash = d.value("specHash", "");
    // A new revision is what a person does to fix what held the agent: it tries again.
    s->degraded_hold = false;
    s->degraded_cause.clear();
    s->recoveries.clear();
    s->model_failures = 0;
  } else if (e.type == event_type::kBudgetDeferred) {
    s->deferred_reason = d.value("reason", "");
  } else if (e.type == event_type::kCompactionRequested) {
    s->compaction_requested = true;
  } else if (e.type == event_type::kCompactionStarted) {
    s->compaction_pending_to = d.value("to", int64_t{0});
  } else if (e.type == event_type::kContextCompacted) {
    const int64_t to = d.value("to", s->compacted_to);
    if (to < s->compacted_to || to > static_cast<int64_t>(s->messages.size())) {
      return Corruption("event " + std::to_string(e.seq) + " compacts to message " + std::to_string(to) + " of " +
                        std::to_string(s->messages.size()) + ", before the last compaction's " +
                        std::to_string(s->compacted_to) + " or past the end");
    }
    s->compacted_to = to;
    s->pruned_to = std::max(s->pruned_to, d.value("prunedTo", int64_t{0}));
    if (d.contains("summary")) {
      s->summary = d["summary"].get<std::string>();
      s->compactions += 1;
    }
    s->compaction_pending_to = 0;
    s->compaction_requested = false;
    SpendTokens(s, e);  // the summary requests'
  } else if (e.type == event_type::kMemoryFlushed) {
    s->memory_flushed_to = std::max(s->memory_flushed_to, d.value("to", int64_t{0}));
    SpendTokens(s, e);
  } else if (e.type == event_type::kHistoryTrimmed) {
    // The store's business: the state needs nothing that was removed.
  } else if (e.type == event_type::kStepCompleted) {
    // Bookkeeping only (activeMs above); the checkpoint is written with it.
  } else {
    return Corruption("event " + std::to_string(e.seq) + " has unknown type \"" + e.type + "\"");
  }
  s->last_seq = e.seq;
  s->last_event_type = e.type;
  return Status::Ok();
}

static nlohmann::json ModelFiguresJson(const std::map<std::string, RunState::ModelFigures>& figures) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [endpoint, f] : figures) {
    out[endpoint] = {{"replies", f.replies},           {"retries", f.retries},
                     {"firstTokenMsTotal", f.first_token_ms_total}, {"firstTokens", f.first_tokens},
                     {"tokensPerSecondTotal", f.tokens_per_second_total}, {"rates", f.rates}};
  }
  return out;
}

nlohmann::json RunState::ToCheckpointJson() const {
  nlohmann::json calls_json = nlohmann::json::array();
  for (const auto& c : calls) {
    calls_json.push_back({{"call", ToJson(c.call)},
                          {"status", CallStatusName(c.status)},
                          {"effect", c.effect},
                          {"idempotencyKey", c.idempotency_key},
                          {"waitReason", c.wait_reason},
                          {"attempts", c.attempts},
                          {"waitingSinceMs", c.waiting_since_ms},
                          {"decidedMs", c.decided_ms},
                          {"decidedBy", c.decided_by}});
  }
  nlohmann::json inbox_json = nlohmann::json::array();
  for (const auto& m : inbox) inbox_json.push_back({{"seq", m.seq}, {"text", m.text}, {"from", m.from}});
  return {{"runId", run_id},
          {"phase", PhaseName(phase)},
          {"reason", reason},
          {"result", result},
          {"step", step},
          {"awaitingModel", awaiting_model},
          {"calls", calls_json},
          {"used", {{"steps", used.steps}, {"tokens", used.tokens}, {"toolCalls", used.tool_calls}, {"wallMs", used.wall_ms}}},
          {"lastCallSignature", last_call_signature},
          {"repeatCount", repeat_count},
          {"lastSeq", last_seq},
          {"messageCount", messages.size()},
          {"inbox", inbox_json},
          {"turns", turns},
          {"turnStartedMs", turn_started_ms},
          {"turnEnded", turn_ended},
          {"startedMs", started_ms},
          {"lastEventType", last_event_type},
          {"idleSinceMs", idle_since_ms},
          {"pauseRequested", pause_requested},
          {"pausedFrom", PhaseName(paused_from)},
          {"cancelRequested", cancel_requested},
          {"cancelReason", cancel_reason},
          {"handoffId", handoff_id},
          {"handoffWasPaused", handoff_was_paused},
          {"cronFiredMs", cron_fired_ms},
          {"recoveries", recoveries},
          {"revision", revision},
          {"specHash", spec_hash},
          {"degradedHold", degraded_hold},
          {"degradedCause", degraded_cause},
          {"modelFailures", model_failures},
          {"modelError", model_error},
          {"cutReplies", cut_replies},
          {"turnStart", {{"steps", turn_start.steps}, {"tokens", turn_start.tokens}, {"toolCalls", turn_start.tool_calls}}},
          {"tokenBuckets", token_buckets},
          {"deferredReason", deferred_reason},
          {"context", {{"compactedTo", compacted_to}, {"prunedTo", pruned_to}, {"summary", summary},
                       {"compactions", compactions}, {"pendingTo", compaction_pending_to},
                       {"requested", compaction_requested}, {"lastPromptTokens", last_prompt_tokens},
                       {"lastPromptBytes", last_prompt_bytes}, {"window", context_window},
                       {"firstTurnMessage", first_turn_message}, {"memoryFlushedTo", memory_flushed_to},
                       {"tokensEstimated", tokens_estimated}}},
          {"modelFigures", ModelFiguresJson(model_figures)}};
}

Result<RunState> RunState::FromCheckpointJson(const nlohmann::json& j) {
  try {
    RunState s;
    s.run_id = j.at("runId").get<std::string>();
    auto phase = ParsePhase(j.at("phase").get<std::string>());
    if (!phase) return Corruption("checkpoint has an unknown phase");
    s.phase = *phase;
    s.reason = j.at("reason").get<std::string>();
    s.result = j.at("result").get<std::string>();
    s.step = j.at("step").get<int64_t>();
    s.awaiting_model = j.at("awaitingModel").get<bool>();
    for (const auto& c : j.at("calls")) {
      auto status = ParseCallStatus(c.at("status").get<std::string>());
      if (!status) return Corruption("checkpoint has an unknown call status");
      s.calls.push_back(CallState{ToolCallFromJson(c.at("call")), *status, c.at("effect").get<std::string>(),
                                  c.at("idempotencyKey").get<std::string>(), c.at("waitReason").get<std::string>(),
                                  c.at("attempts").get<int>(), c.value("waitingSinceMs", int64_t{0}),
                                  c.value("decidedMs", int64_t{0}), c.value("decidedBy", "")});
    }
    const auto& u = j.at("used");
    s.used = {u.at("steps").get<int64_t>(), u.at("tokens").get<int64_t>(), u.at("toolCalls").get<int64_t>(),
              u.at("wallMs").get<int64_t>()};
    s.last_call_signature = j.at("lastCallSignature").get<std::string>();
    s.repeat_count = j.at("repeatCount").get<int64_t>();
    s.last_seq = j.at("lastSeq").get<uint64_t>();
    s.persisted_messages = j.at("messageCount").get<int64_t>();
    // Worker fields; absent from checkpoints written before the worker existed.
    for (const auto& m : j.value("inbox", nlohmann::json::array())) {
      s.inbox.push_back({m.at("seq").get<uint64_t>(), m.at("text").get<std::string>(), m.at("from").get<std::string>()});
    }
    s.turns = j.value("turns", int64_t{0});
    s.turn_started_ms = j.value("turnStartedMs", int64_t{0});
    // Checkpoints from before it: an agent that was idle or done had ended its turn.
    s.turn_ended = j.value("turnEnded", s.phase == Phase::kIdle || IsTerminal(s.phase));
    s.started_ms = j.value("startedMs", int64_t{0});
    s.last_event_type = j.value("lastEventType", "");
    s.idle_since_ms = j.value("idleSinceMs", int64_t{0});
    s.pause_requested = j.value("pauseRequested", false);
    s.paused_from = ParsePhase(j.value("pausedFrom", "Running")).value_or(Phase::kRunning);
    s.cancel_requested = j.value("cancelRequested", false);
    s.cancel_reason = j.value("cancelReason", "");
    s.handoff_id = j.value("handoffId", "");
    s.handoff_was_paused = j.value("handoffWasPaused", false);
    s.cron_fired_ms = j.value("cronFiredMs", std::map<std::string, int64_t>{});
    s.recoveries = j.value("recoveries", std::vector<std::pair<int64_t, int64_t>>{});
    // A long life; absent from checkpoints written before revisions existed (revision 1).
    s.revision = j.value("revision", int64_t{1});
    s.spec_hash = j.value("specHash", "");
    s.degraded_hold = j.value("degradedHold", s.phase == Phase::kDegraded && !s.recoveries.empty());
    s.degraded_cause = j.value("degradedCause", s.degraded_hold ? "crash_loop" : "");
    s.model_failures = j.value("modelFailures", int64_t{0});
    s.model_error = j.value("modelError", "");
    s.cut_replies = j.value("cutReplies", int64_t{0});
    const nlohmann::json turn_start = j.value("turnStart", nlohmann::json::object());
    s.turn_start = {turn_start.value("steps", int64_t{0}), turn_start.value("tokens", int64_t{0}),
                    turn_start.value("toolCalls", int64_t{0}), 0};
    s.token_buckets = j.value("tokenBuckets", std::map<int64_t, int64_t>{});
    s.deferred_reason = j.value("deferredReason", "");
    // Absent from checkpoints written before compaction existed: nothing compacted.
    const nlohmann::json ctx = j.value("context", nlohmann::json::object());
    s.compacted_to = ctx.value("compactedTo", int64_t{0});
    s.pruned_to = ctx.value("prunedTo", int64_t{0});
    s.summary = ctx.value("summary", "");
    s.compactions = ctx.value("compactions", int64_t{0});
    s.compaction_pending_to = ctx.value("pendingTo", int64_t{0});
    s.compaction_requested = ctx.value("requested", false);
    s.last_prompt_tokens = ctx.value("lastPromptTokens", int64_t{0});
    s.last_prompt_bytes = ctx.value("lastPromptBytes", int64_t{0});
    s.context_window = ctx.value("window", int64_t{0});
    // -1: not recorded (an older checkpoint); the loader looks at the transcript's message 0.
    s.first_turn_message = ctx.value("firstTurnMessage", int64_t{-1});
    s.memory_flushed_to = ctx.value("memoryFlushedTo", int64_t{0});
    s.tokens_estimated = ctx.value("tokensEstimated", false);
    // Absent in checkpoints made before the figures were kept: they start from now.
    const nlohmann::json figures = j.value("modelFigures", nlohmann::json::object());
    for (auto it = figures.begin(); it != figures.end(); ++it) {
      const nlohmann::json& f = it.value();
      RunState::ModelFigures& m = s.model_figures[it.key()];
      m.replies = f.value("replies", int64_t{0});
      m.retries = f.value("retries", int64_t{0});
      m.first_token_ms_total = f.value("firstTokenMsTotal", int64_t{0});
      m.first_tokens = f.value("firstTokens", int64_t{0});
      m.tokens_per_second_total = f.value("tokensPerSecondTotal", 0.0);
      m.rates = f.value("rates", int64_t{0});
    }
    s.last_checkpoint_step = s.step;
    return s;
  } catch (const nlohmann::json::exception& e) {
    return Corruption(std::string("checkpoint is not valid: ") + e.what());
  }
}

}  // namespace carapace
