// RunState: everything the runtime knows about a run, derived by folding its events with
// Apply(). The live loop and recovery after a crash use the same Apply, so a resumed run
// is in exactly the state the crashed one had reached on disk.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/agentrun/spec.h"
#include "common/status.h"
#include "worker/model/chat.h"
#include "worker/runtime/event.h"

namespace carapace {

// Idle: a turn is done and the agent waits for a message or a scheduled wake-up. Paused: a
// person stopped dispatching. Degraded: the crash-loop breaker stopped re-dispatching a step
// that keeps taking the worker down; a person's Resume tries again. Cancelled: stopped for good.
enum class Phase {
  kPending,
  kRunning,
  kWaitingForApproval,
  kSucceeded,
  kFailed,
  kBudgetExhausted,
  kIdle,
  kPaused,
  kDegraded,
  kCancelled,
};
const char* PhaseName(Phase p);  // "Pending", "Running", ...
std::optional<Phase> ParsePhase(const std::string& s);
bool IsTerminal(Phase p);

enum class CallStatus {
  kPlanned,           // the model asked for it; nothing done yet
  kAwaitingApproval,  // a person must approve (approval_required) or decide (outcome_unknown)
  kApproved,          // a person said go (or retry, for outcome_unknown)
  kDenied,            // a person said no (or skip, for outcome_unknown)
  kInFlight,          // intent recorded, no result: the call may be happening or have happened
  kOutcomeUnknown,    // in flight when the worker stopped, side-effecting: not repeated blindly
  kDone,              // result recorded
};
const char* CallStatusName(CallStatus s);

struct CallState {
  ToolCall call;
  CallStatus status = CallStatus::kPlanned;
  std::string effect;           // effect class recorded with the intent
  std::string idempotency_key;  // recorded with the intent
  std::string wait_reason;      // "approval_required" | "outcome_unknown" while waiting / after a decision
  int attempts = 0;             // intents recorded for this call
};

struct BudgetUsed {
  int64_t steps = 0;
  int64_t tokens = 0;
  int64_t tool_calls = 0;
  int64_t wall_ms = 0;  // time spent running, summed over every process that worked on the run
};

// A message waiting in the inbox.
struct InboxMessage {
  uint64_t seq = 0;  // of its message_received event
  std::string text;
  std::string from;  // "api", "cron:<name>", ...
};

struct RunState {
  std::string run_id;
  Phase phase = Phase::kPending;
  std::string reason;  // why the run is in its phase
  std::string result;  // final answer
  int64_t step = 0;    // the current (or last) step; steps are numbered from 1
  bool awaiting_model = false;  // a model request is recorded for `step` without its response
  std::vector<CallState> calls;  // the current step's tool calls
  BudgetUsed used;
  std::string last_call_signature;  // for loop detection
  int64_t repeat_count = 0;
  std::vector<Message> messages;
  uint64_t last_seq = 0;
  int64_t last_checkpoint_step = 0;
  int64_t persisted_messages = 0;  // messages already in the transcript column family

  // The long-lived worker.
  std::vector<InboxMessage> inbox;  // in arrival order
  int64_t turns = 0;                // turns started (the goal is turn 1)
  int64_t started_ms = 0;           // wall clock of run_started: where cron schedules start
  std::string last_event_type;      // of the event at last_seq
  int64_t idle_since_ms = 0;        // wall clock of the last switch to Idle
  bool pause_requested = false;     // set by a person; cleared by resume
  Phase paused_from = Phase::kRunning;  // what Resume returns to
  bool cancel_requested = false;
  std::string cancel_reason;
  std::map<std::string, int64_t> cron_fired_ms;  // cron name -> the occurrence last fired
  std::vector<std::pair<int64_t, int64_t>> recoveries;  // (step, wall ms) of recent restarts mid-step

  CallState* FindCall(const std::string& call_id);
  const CallState* FindCall(const std::string& call_id) const;
  // The first call of the current step that is not done, or nullptr.
  CallState* NextOpenCall();
  std::vector<const CallState*> WaitingCalls() const;

  // Checkpoint form: the state without its messages (they live in the transcript).
  nlohmann::json ToCheckpointJson() const;
  static Result<RunState> FromCheckpointJson(const nlohmann::json& j);
};

// Folds one event into the state. Errors: kCorruption when the event contradicts the state
// (a result for a call that does not exist): the log is not what this runtime wrote.
Status Apply(RunState* state, const Event& event);

// The message content a tool result is shown to the model as.
std::string ToolResultContent(const nlohmann::json& event_data);

}  // namespace carapace
