#include "worker/runtime/run_tracing.h"

#include "common/redact.h"

namespace carapace {

namespace {

// Failed turns: the run's end other than success, or a turn that ended without an answer.
bool FailedTurn(const RunState& s) {
  return s.phase == Phase::kFailed || s.phase == Phase::kBudgetExhausted ||
         (s.phase == Phase::kIdle && s.reason.find("ended without an answer") != std::string::npos);
}

}  // namespace

bool InTurn(const RunState& s) { return s.turns > 0 && !s.turn_ended && s.phase != Phase::kPending; }

RunTracer::RunTracer(const AgentRun& run)
    : agent_name_(run.metadata.name),
      agent_namespace_(run.metadata.ns),
      model_name_(run.spec.model.name),
      model_backend_(run.spec.model.backend) {
  if (run.spec.context && run.spec.context->summary_model) {
    summary_model_name_ = run.spec.context->summary_model->name;
    summary_model_backend_ = run.spec.context->summary_model->backend;
  }
}

telemetry::TraceContext RunTracer::TurnContext(const std::string& run_id, int64_t turn) {
  if (!telemetry::TracingEnabled() || run_id.empty() || turn <= 0) return {};
  if (run_id != cached_run_id_ || turn != cached_turn_) {
    cached_ = telemetry::DerivedContext("carapace/turn/" + run_id + "/" + std::to_string(turn), false);
    cached_.sampled = telemetry::SampledTrace(cached_);
    cached_run_id_ = run_id;
    cached_turn_ = turn;
  }
  return cached_;
}

telemetry::TraceContext RunTracer::TurnContext(const RunState& s) { return TurnContext(s.run_id, s.turns); }

telemetry::Span RunTracer::StartChild(const RunState& s, const std::string& name, bool own_trace) {
  if (!telemetry::TracingEnabled()) return {};
  const bool in_turn = InTurn(s);
  if (!in_turn && !own_trace) return {};
  telemetry::SpanOptions o;
  if (in_turn) o.parent = TurnContext(s);
  telemetry::Span span = telemetry::StartSpan(name, o);
  span.Set("carapace.step", s.step);
  return span;
}

telemetry::Span RunTracer::StartModelCall(const RunState& s, const ModelRequest& request, const char* purpose,
                                          bool by_summary_model) {
  if (!telemetry::TracingEnabled()) return {};
  telemetry::SpanOptions o;
  o.kind = telemetry::SpanKind::kClient;
  if (InTurn(s)) o.parent = TurnContext(s);
  const bool summarizer = by_summary_model && !summary_model_backend_.empty();
  const std::string& model = summarizer ? summary_model_name_ : model_name_;
  // GenAI semantic conventions: "{gen_ai.operation.name} {gen_ai.request.model}".
  telemetry::Span span = telemetry::StartSpan("chat " + model, o);
  span.Set("gen_ai.operation.name", "chat")
      .Set("gen_ai.request.model", model)
      .Set("gen_ai.provider.name", summarizer ? summary_model_backend_ : model_backend_)
      .Set("gen_ai.agent.name", agent_name_)
      .Set("carapace.step", request.step)
      .Set("carapace.tools_offered", static_cast<int64_t>(request.tools.size()));
  if (purpose != nullptr) span.Set("carapace.model.purpose", purpose);
  return span;
}

void RunTracer::EndModelCall(telemetry::Span& span, const Result<ModelResponse>& response,
                             const std::vector<Message>& prompt) {
  if (!span.recording()) return;
  if (!response.ok()) {
    span.SetError(StatusCodeName(response.status().code()), response.status().message());
    span.End();
    return;
  }
  const ModelResponse& r = *response;
  span.Set("gen_ai.usage.input_tokens", r.prompt_tokens)
      .Set("gen_ai.usage.output_tokens", r.completion_tokens)
      .Set("gen_ai.response.finish_reasons", std::vector<std::string>{r.finish_reason})
      .Set("carapace.model.endpoint", r.answered_by)
      .Set("carapace.model.retries", std::max<int64_t>(r.attempts - 1, 0))
      .Set("carapace.model.tokens_estimated", r.tokens_estimated)
      .Set("carapace.model.tool_calls", static_cast<int64_t>(r.tool_calls.size()));
  if (r.first_token_ms >= 0) {
    // The GenAI conventions have time to first token as a metric
    // (gen_ai.server.time_to_first_token); on a span it is ours, in ms like the event log.
    span.Set("carapace.model.time_to_first_token_ms", r.first_token_ms);
  }
  if (telemetry::CaptureContent()) {
    // Only when the user opted in; redacted all the same (Span::Set).
    nlohmann::json input = nlohmann::json::array();
    for (const auto& m : prompt) input.push_back(ToJson(m));
    nlohmann::json calls = nlohmann::json::array();
    for (const auto& c : r.tool_calls) calls.push_back(ToJson(c));
    nlohmann::json output = nlohmann::json::array(
        {{{"role", "assistant"}, {"content", r.text}, {"tool_calls", calls}, {"finish_reason", r.finish_reason}}});
    span.Set("gen_ai.input.messages", input.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    span.Set("gen_ai.output.messages", output.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  span.End();
}

telemetry::Span RunTracer::StartToolCall(const RunState& s, const CallState& call, const std::string& effect,
                                         const std::string& idempotency_key, bool retry) {
  if (!telemetry::TracingEnabled()) return {};
  telemetry::SpanOptions o;
  if (InTurn(s)) o.parent = TurnContext(s);
  telemetry::Span span = telemetry::StartSpan("execute_tool " + call.call.name, o);
  span.Set("gen_ai.operation.name", "execute_tool")
      .Set("gen_ai.tool.name", call.call.name)
      .Set("gen_ai.tool.call.id", call.call.id)
      .Set("carapace.tool.effect", effect)
      .Set("carapace.tool.idempotency_key", idempotency_key)
      .Set("carapace.tool.retry", retry)
      .Set("carapace.step", s.step);
  if (telemetry::CaptureContent()) span.Set("gen_ai.tool.call.arguments", call.call.arguments.dump());
  return span;
}

void RunTracer::EndToolCall(telemetry::Span& span, const ToolResult& result) {
  if (!span.recording()) return;
  span.Set("carapace.tool.outcome", result.ok ? "ok" : "error");
  if (!result.ok) span.SetError("tool_error", result.error);
  if (telemetry::CaptureContent() && result.ok) {
    span.Set("gen_ai.tool.call.result", result.output.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  span.End();
}

RunTracer::Before RunTracer::Capture(const RunState& s) {
  Before b;
  if (!telemetry::TracingEnabled()) return b;
  b.in_turn = InTurn(s);
  b.turns = s.turns;
  b.turn_started_ms = s.turn_started_ms;
  return b;
}

void RunTracer::ApprovalSettled(const RunState& s, const CallState& call) {
  // The decision may have been recorded by another process (`carapace approve`, the control
  // API) while none ran the turn: the span is made when the runner acts on it, from the
  // times both events recorded.
  if (!telemetry::TracingEnabled() || call.waiting_since_ms == 0 || call.decided_ms == 0) return;
  telemetry::SpanOptions o;
  o.parent = TurnContext(s);
  o.start_wall_ms = call.waiting_since_ms;
  telemetry::Span span = telemetry::StartSpan("await_approval " + call.call.name, o);
  span.Set("gen_ai.tool.name", call.call.name)
      .Set("gen_ai.tool.call.id", call.call.id)
      .Set("carapace.approval.reason", call.wait_reason)
      .Set("carapace.approval.approved", call.status == CallStatus::kApproved)
      .Set("carapace.approval.by", call.decided_by);
  span.End(call.decided_ms);
}

std::optional<RunTracer::TurnEnd> RunTracer::EndedTurn(const Event& e, const Before& before, const RunState& after) {
  if (!telemetry::TracingEnabled() || !before.in_turn || InTurn(after) || e.type != event_type::kPhaseChanged) {
    return std::nullopt;
  }
  TurnEnd end;
  end.ids = TurnContext(after.run_id, before.turns);
  if (!end.ids.valid()) return std::nullopt;
  end.turn = before.turns;
  end.started_ms = before.turn_started_ms;
  end.run_id = after.run_id;
  end.phase = PhaseName(after.phase);
  end.reason = after.reason;
  end.steps = after.step;
  end.revision = after.revision;
  end.failed = FailedTurn(after);
  return end;
}

void RunTracer::SendTurnSpan(const TurnEnd& end) {
  // The ids its children already point at, from the time the turn's first event recorded
  // to now (the event that ended it was just stored).
  telemetry::SpanOptions o;
  o.ids = end.ids;
  o.start_wall_ms = end.started_ms;
  telemetry::Span span = telemetry::StartSpan("invoke_agent " + agent_name_, o);
  span.Set("gen_ai.operation.name", "invoke_agent")
      .Set("gen_ai.agent.name", agent_name_)
      .Set("gen_ai.agent.id", end.run_id)
      .Set("carapace.agentrun.namespace", agent_namespace_)
      .Set("carapace.turn", end.turn)
      .Set("carapace.steps", end.steps)
      .Set("carapace.phase", end.phase)
      .Set("carapace.reason", end.reason)
      .Set("carapace.revision", end.revision);
  if (end.failed) span.SetError(end.phase, end.reason);
  span.End();
  // Sent now rather than at the queue's schedule: a process killed in the next seconds would
  // lose it, and no other process will send it again.
  telemetry::ExportSoon();
}

void RunTracer::Stamp(nlohmann::json* data, const telemetry::TraceContext& turn, const telemetry::Span* span) {
  if (!turn.valid()) return;
  if (span != nullptr && span->recording()) {
    const telemetry::TraceContext c = span->context();
    (*data)["traceId"] = c.TraceIdHex();
    (*data)["spanId"] = c.SpanIdHex();
    return;
  }
  if (!data->contains("traceId")) (*data)["traceId"] = turn.TraceIdHex();
}

}  // namespace carapace
