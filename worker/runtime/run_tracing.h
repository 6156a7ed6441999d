// The spans of one run (docs/tracing.md): a trace per turn, with a span for each model
// call, tool call, approval waited on, checkpoint and compaction, following the OpenTelemetry
// GenAI semantic conventions where they name the thing (gen_ai.*), carapace.* otherwise.
//
// A turn's trace and span ids are derived from the run id and the turn's number, so a turn
// that a crash cut in two is one trace: the spans the first process sent and those of the
// process that finished the turn share it. The turn's own span is made when the turn ends,
// from the times its events recorded, by whichever process ends it; a process that dies
// mid-turn never sends a half of it.
//
// Nothing here costs more than a branch when tracing is off.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/agentrun/spec.h"
#include "common/telemetry/tracing.h"
#include "worker/model/model_backend.h"
#include "worker/runtime/event.h"
#include "worker/runtime/run_state.h"
#include "worker/tools/tool.h"

namespace carapace {

// Whether the run is inside a turn: from run_started or turn_started until the turn ends
// (Idle or a terminal phase; RunState::turn_ended). Paused and Degraded turns are still turns.
bool InTurn(const RunState& s);

class RunTracer {
 public:
  explicit RunTracer(const AgentRun& run);

  // The current turn's ids (invalid when tracing is off or no run id is known yet).
  telemetry::TraceContext TurnContext(const RunState& s);
  // The ids turn `turn` of run `run_id` has, whether or not it began.
  telemetry::TraceContext TurnContext(const std::string& run_id, int64_t turn);

  // A model call: "chat MODEL", in the current turn (or a trace of its own outside one).
  // `purpose` names a call that is not the turn's own ("summary", "memory_flush").
  // `by_summary_model`: the call goes to spec.context.summaryModel, whose name and provider
  // the span then carries.
  telemetry::Span StartModelCall(const RunState& s, const ModelRequest& request, const char* purpose = nullptr,
                                 bool by_summary_model = false);
  void EndModelCall(telemetry::Span& span, const Result<ModelResponse>& response, const std::vector<Message>& prompt);

  // A tool call: "execute_tool NAME".
  telemetry::Span StartToolCall(const RunState& s, const CallState& call, const std::string& effect,
                                const std::string& idempotency_key, bool retry);
  void EndToolCall(telemetry::Span& span, const ToolResult& result);

  // The wait for a person's decision on `call` (approved or denied), once it is settled.
  void ApprovalSettled(const RunState& s, const CallState& call);

  // A span of the current turn (a checkpoint, a compaction). Outside a turn: nothing, or,
  // with `own_trace`, a trace of its own (a compaction a person asked for while idle).
  telemetry::Span StartChild(const RunState& s, const std::string& name, bool own_trace = false);

  // What Observe needs of the state before an event is applied (a copy of the whole state
  // would cost a turn's messages). Empty when tracing is off.
  struct Before {
    bool in_turn = false;
    int64_t turns = 0;
    int64_t turn_started_ms = 0;
  };
  static Before Capture(const RunState& s);
  // What the turn's span needs, taken when the event that ends the turn is applied.
  struct TurnEnd {
    telemetry::TraceContext ids;
    int64_t turn = 0;
    int64_t started_ms = 0;
    std::string run_id, phase, reason;
    int64_t steps = 0, revision = 0;
    bool failed = false;
  };
  // When `e` (applied: the state went from `before` to `after`) ended the turn, what its span
  // needs. The span is sent by SendTurnSpan once the event is stored: a write that fails
  // leaves the turn open, for this process or the next to end.
  std::optional<TurnEnd> EndedTurn(const Event& e, const Before& before, const RunState& after);
  void SendTurnSpan(const TurnEnd& end);

  // The trace ids an event recorded inside a turn carries: {"traceId"} and, when it came
  // from a span of its own, {"spanId"}.
  static void Stamp(nlohmann::json* data, const telemetry::TraceContext& turn, const telemetry::Span* span = nullptr);

 private:
  std::string agent_name_;
  std::string agent_namespace_;
  std::string model_name_;
  std::string model_backend_;
  std::string summary_model_name_;  // spec.context.summaryModel's, when there is one
  std::string summary_model_backend_;
  // The last turn's ids, computed once per turn (a hash and a sampler decision).
  std::string cached_run_id_;
  int64_t cached_turn_ = -1;
  telemetry::TraceContext cached_;
};

}  // namespace carapace
