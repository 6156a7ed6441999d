// RunStatus and event descriptions.
#include "worker/cli/status_view.h"

#include <google/protobuf/util/json_util.h>

#include <cstdio>

#include "common/time.h"

namespace carapace {

namespace v1 = worker::v1;

static v1::Phase ToProto(Phase p) {
  switch (p) {
    case Phase::kPending: return v1::PHASE_PENDING;
    case Phase::kRunning: return v1::PHASE_RUNNING;
    case Phase::kWaitingForApproval: return v1::PHASE_WAITING_FOR_APPROVAL;
    case Phase::kSucceeded: return v1::PHASE_SUCCEEDED;
    case Phase::kFailed: return v1::PHASE_FAILED;
    case Phase::kBudgetExhausted: return v1::PHASE_BUDGET_EXHAUSTED;
    case Phase::kIdle: return v1::PHASE_IDLE;
    case Phase::kPaused: return v1::PHASE_PAUSED;
    case Phase::kDegraded: return v1::PHASE_DEGRADED;
    case Phase::kCancelled: return v1::PHASE_CANCELLED;
  }
  return v1::PHASE_UNSPECIFIED;
}

v1::RunStatus BuildRunStatus(const RunIdentity& identity, const RunState& state, const BudgetSpec* budget) {
  v1::RunStatus s;
  s.set_name(identity.name);
  s.set_namespace_(identity.ns);
  s.set_run_id(state.run_id.empty() ? identity.run_id : state.run_id);
  s.set_phase(ToProto(state.phase));
  // A fence outranks the phase's reason (an agent paused before it was exported says so too):
  // the operator and `status` show it.
  s.set_reason(state.handoff_id.empty() || IsTerminal(state.phase)
                   ? state.reason
                   : "handed off (export " + state.handoff_id + "): it goes on where its archive is imported");
  s.set_result(state.result);
  s.set_step(state.step);
  s.set_last_checkpoint_step(state.last_checkpoint_step);
  s.set_last_event_seq(state.last_seq);
  s.set_spec_hash(identity.spec_hash);
  auto* b = s.mutable_budget();
  b->set_steps(state.used.steps);
  b->set_tokens(state.used.tokens);
  b->set_tool_calls(state.used.tool_calls);
  b->set_wall_clock_ms(state.used.wall_ms);
  if (budget) {
    b->set_max_steps(budget->max_steps);
    b->set_max_tokens(budget->max_tokens);
    b->set_max_tool_calls(budget->max_tool_calls);
    b->set_max_wall_clock_seconds(budget->max_wall_clock_seconds);
  }
  nlohmann::json spec = budget ? nlohmann::json() : nlohmann::json::parse(identity.spec_json, nullptr, false);
  if (spec.is_object() && spec.contains("budget")) {
    const auto& budget = spec["budget"];
    b->set_max_steps(budget.value("maxSteps", int64_t{0}));
    b->set_max_tokens(budget.value("maxTokens", int64_t{0}));
    b->set_max_tool_calls(budget.value("maxToolCalls", int64_t{0}));
    b->set_max_wall_clock_seconds(budget.value("maxWallClockSeconds", int64_t{0}));
  }
  s.set_idle_since_ms(state.idle_since_ms);
  s.set_inbox_depth(static_cast<int64_t>(state.inbox.size()));
  s.set_turns(state.turns);
  s.set_revision(state.revision);
  s.set_context_window(state.context_window);
  s.set_last_prompt_tokens(state.last_prompt_tokens);
  s.set_tokens_estimated(state.tokens_estimated);
  for (const auto& [endpoint, f] : state.model_figures) {
    v1::ModelFigures* m = s.add_models();
    m->set_endpoint(endpoint);
    m->set_replies(f.replies);
    m->set_retries(f.retries);
    if (f.first_tokens > 0) m->set_first_token_ms_mean(f.first_token_ms_total / f.first_tokens);
    if (f.rates > 0) m->set_tokens_per_second_mean(f.tokens_per_second_total / static_cast<double>(f.rates));
  }
  s.set_compactions(state.compactions);
  s.set_summary_bytes(static_cast<int64_t>(state.summary.size()));
  if (state.WaitingForModel()) {
    s.set_waiting_for("ModelUnavailable");
    s.set_waiting_detail(state.model_error);
  } else if (state.phase == Phase::kRunning && !state.deferred_reason.empty()) {
    s.set_waiting_for("PeriodBudget");
    s.set_waiting_detail(state.deferred_reason);
  }
  if (state.phase == Phase::kDegraded && state.degraded_hold) s.set_degraded_cause(state.degraded_cause);
  s.set_handoff_id(state.handoff_id);
  for (const auto& c : state.calls) {
    if (c.status == CallStatus::kInFlight) {
      s.set_current_call_id(c.call.id);
      s.set_current_tool(c.call.name);
    }
  }
  for (const auto* c : state.WaitingCalls()) {
    auto* w = s.add_waiting();
    w->set_call_id(c->call.id);
    w->set_tool(c->call.name);
    w->set_arguments_json(c->call.arguments.dump());
    w->set_reason(c->wait_reason);
  }
  return s;
}

std::string RunStatusJson(const v1::RunStatus& status) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = false;
  (void)google::protobuf::util::MessageToJsonString(status, &out, options);
  return out;
}

std::string LongLifeLines(const v1::RunStatus& s) {
  std::string out = "revision: " + std::to_string(s.revision()) + " (spec " + s.spec_hash().substr(0, 12) + ")\n";
  if (!s.waiting_for().empty()) {
    out += "waiting for: " + s.waiting_for();
    if (s.next_try_at_ms() > 0) out += ", next try at " + FormatRfc3339Millis(s.next_try_at_ms());
    if (!s.waiting_detail().empty()) out += " (" + s.waiting_detail() + ")";
    out += "\n";
  }
  if (s.context_window() > 0) {
    out += "context: last prompt " + std::to_string(s.last_prompt_tokens()) + " of " +
           std::to_string(s.context_window()) + " tokens (" +
           std::to_string(s.last_prompt_tokens() * 100 / s.context_window()) + "%), " +
           std::to_string(s.compactions()) + " compaction" + (s.compactions() == 1 ? "" : "s") +
           (s.summary_bytes() > 0 ? ", summary " + std::to_string(s.summary_bytes()) + " bytes" : "") +
           (s.tokens_estimated() ? "; token counts estimated (the model service reports none)" : "") + "\n";
  }
  if (!s.degraded_cause().empty()) out += "held by: " + s.degraded_cause() + "; `carapace resume` or a spec revision tries again\n";
  if (!s.handoff_id().empty()) {
    out += "handed off: export " + s.handoff_id() + "; this copy never acts again, the agent goes on where the archive is imported\n";
  }
  for (const auto& m : s.models()) {
    if (m.first_token_ms_mean() == 0 && m.retries() == 0) continue;  // nothing streamed: nothing to tell
    char line[512];
    std::snprintf(line, sizeof line, "model:   %s  %lld replies, first token %lld ms mean, %.1f tokens/s mean, %lld retries\n",
                  m.endpoint().empty() ? "(unknown)" : m.endpoint().c_str(), static_cast<long long>(m.replies()),
                  static_cast<long long>(m.first_token_ms_mean()), m.tokens_per_second_mean(),
                  static_cast<long long>(m.retries()));
    out += line;
  }
  return out;
}

std::string DescribeEvent(const Event& e) {
  const auto& d = e.data;
  std::string s = e.type;
  auto args = [&]() {
    std::string a = d.value("arguments", nlohmann::json::object()).dump();
    return a.size() > 100 ? a.substr(0, 97) + "..." : a;
  };
  if (e.type == event_type::kRunStarted) {
    s += " run " + d.value("runId", "") + ": " + d.value("goal", "");
  } else if (e.type == event_type::kMessageReceived) {
    std::string text = d.value("text", "");
    if (text.size() > 100) text = text.substr(0, 97) + "...";
    s += " from " + d.value("from", "api") + ": \"" + text + "\"";
    if (d.value("occurrences", 1) > 1) s += " (" + std::to_string(d.value("occurrences", 1)) + " occurrences coalesced)";
  } else if (e.type == event_type::kTurnStarted) {
    s += " message #" + std::to_string(d.value("messageSeq", 0)) + " from " + d.value("from", "api");
  } else if (e.type == event_type::kInterrupted) {
    s += " " + d.value("what", "");
  } else if (e.type == event_type::kModelResponse) {
    s += " tokens " + std::to_string(d.value("promptTokens", 0) + d.value("completionTokens", 0));
    if (!d.value("text", "").empty()) s += " text \"" + d.value("text", "") + "\"";
    for (const auto& c : d.value("toolCalls", nlohmann::json::array())) {
      s += " call " + c.value("id", "") + " " + c.value("name", "");
    }
  } else if (e.type == event_type::kToolIntent) {
    s += " " + d.value("callId", "") + " " + d.value("tool", "") + " " + args() + " [" + d.value("effect", "") +
         ", key " + d.value("idempotencyKey", "").substr(0, 12) + (d.value("retry", false) ? ", retry" : "") + "]";
  } else if (e.type == event_type::kToolResult) {
    s += " " + d.value("callId", "") + " " + d.value("tool", "") + (d.value("ok", false) ? " ok " : " error ");
    std::string body = d.value("ok", false) ? d.value("output", nlohmann::json()).dump() : d.value("error", "");
    s += body.size() > 120 ? body.substr(0, 117) + "..." : body;
  } else if (e.type == event_type::kToolOutcomeUnknown || e.type == event_type::kApprovalRequested ||
             e.type == event_type::kApprovalDecided) {
    s += " " + d.value("callId", "") + " " + d.value("tool", "") + " " + d.value("reason", "");
    if (e.type == event_type::kApprovalDecided) s += d.value("approved", false) ? " approved" : " denied";
  } else if (e.type == event_type::kPhaseChanged) {
    s += " -> " + d.value("phase", "") + " (" + d.value("reason", "") + ")";
  } else if (e.type == event_type::kSpecRevised) {
    std::string changed;
    for (const auto& f : d.value("changed", nlohmann::json::array())) changed += (changed.empty() ? "" : ", ") + f.get<std::string>();
    s += " revision " + std::to_string(d.value("revision", 0)) + " (spec " + d.value("specHash", "").substr(0, 12) +
         "; changed: " + (changed.empty() ? "nothing the agent sees" : changed) + ")";
  } else if (e.type == event_type::kModelUnavailable) {
    s += " attempt " + std::to_string(d.value("attempt", 0)) + ", next try in " +
         std::to_string(d.value("retryInMs", 0)) + " ms: " + d.value("error", "");
  } else if (e.type == event_type::kModelReplyCut) {
    s += " finish_reason " + d.value("finishReason", "") + " after " + std::to_string(d.value("completionTokens", 0)) +
         " tokens: not an answer";
  } else if (e.type == event_type::kBudgetDeferred) {
    s += " " + d.value("reason", "");
  } else if (e.type == event_type::kForked) {
    s += " from " + d.value("from", "") + " step " + std::to_string(d.value("fromStep", 0));
  }
  return s;
}

}  // namespace carapace
