// Events of a run's append-only log. Each records a fact the runtime must never forget:
// what the model was asked and said, which tool call was about to happen and what came of
// it, decisions by people, phase changes. The JSON form is the stored form.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace carapace {

namespace event_type {
inline constexpr const char* kRunStarted = "run_started";
inline constexpr const char* kModelRequest = "model_request";
inline constexpr const char* kModelResponse = "model_response";
inline constexpr const char* kToolIntent = "tool_intent";
inline constexpr const char* kToolResult = "tool_result";
inline constexpr const char* kToolOutcomeUnknown = "tool_outcome_unknown";
inline constexpr const char* kApprovalRequested = "approval_requested";
inline constexpr const char* kApprovalDecided = "approval_decided";
inline constexpr const char* kPhaseChanged = "phase_changed";
inline constexpr const char* kStepCompleted = "step_completed";
inline constexpr const char* kForked = "forked";
// The long-lived worker (DESIGN: agents are services, not jobs):
inline constexpr const char* kMessageReceived = "message_received";  // a message queued in the inbox
inline constexpr const char* kTurnStarted = "turn_started";          // the next inbox message is taken
inline constexpr const char* kPauseRequested = "pause_requested";
inline constexpr const char* kResumeRequested = "resume_requested";
inline constexpr const char* kCancelRequested = "cancel_requested";
inline constexpr const char* kRecovered = "recovered";      // a worker started while a step was in progress
inline constexpr const char* kInterrupted = "interrupted";  // SIGTERM's grace ran out during a call
// A long life (docs/long-life.md):
inline constexpr const char* kSpecRevised = "spec_revised";            // a changed spec applied as a new revision
inline constexpr const char* kModelUnavailable = "model_unavailable";  // no model answered; the call waits and is tried again
inline constexpr const char* kModelReplyCut = "model_reply_cut";      // a reply stopped short (length, content filter): not an answer
inline constexpr const char* kBudgetDeferred = "budget_deferred";      // a period budget is used up: work waits for the window
// The context kept inside the model's window (docs/context.md).
inline constexpr const char* kCompactionRequested = "compaction_requested";  // a person asked for a compaction
inline constexpr const char* kCompactionStarted = "compaction_started";      // a summary of messages [from, to) is being made
inline constexpr const char* kContextCompacted = "context_compacted";        // what the model sees from now on
// Before a compaction, the agent stored what it keeps of messages [from, to) in its memory.
inline constexpr const char* kMemoryFlushed = "memory_flushed";
// spec.retention removed older history (worker/runtime/retention.h); what it removed.
inline constexpr const char* kHistoryTrimmed = "history_trimmed";
// Moving an agent (docs/operations.md, "Move an agent"): the source is fenced when it is
// exported; the copy that is imported lifts the fence on itself and goes on.
inline constexpr const char* kHandedOff = "handed_off";            // exported: this copy never acts again
inline constexpr const char* kImported = "imported";               // an export's archive was imported here
inline constexpr const char* kHandOffRevoked = "handoff_revoked";  // a person took the export back here
}  // namespace event_type

struct Event {
  uint64_t seq = 0;   // position in the log, from 1; assigned when stored
  int64_t ts_ms = 0;  // wall clock when recorded
  std::string type;
  int64_t step = 0;
  nlohmann::json data = nlohmann::json::object();

  nlohmann::json ToJson() const;  // {"seq","ts","type","step","data"}
  std::string Encode() const;     // stored form (seq is the key, not in the value)
  static Result<Event> Decode(uint64_t seq, std::string_view value);
};

}  // namespace carapace
