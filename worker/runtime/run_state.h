// RunState: everything the runtime knows about a run, derived by folding its events with
// Apply(). The live loop and recovery after a crash use the same Apply, so a resumed run
// is in exactly the state the crashed one had reached on disk.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/agentrun/spec.h"
#include "common/status.h"
#include "worker/model/chat.h"
#include "worker/runtime/event.h"

namespace carapace {

// Idle: a turn is done and the agent waits for a message or a scheduled wake-up. Paused: a
// person stopped dispatching. Degraded: the agent holds its turn until a person's Resume or a
// spec revision: the crash-loop breaker stopped re-dispatching a step that keeps taking the
// worker down, or the model service refused the request in a way no retry fixes (see
// RunState::degraded_cause). Cancelled: stopped for good.
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
  int64_t waiting_since_ms = 0; // wall clock of its approval_requested (the approval's span)
  int64_t decided_ms = 0;       // and of the approval_decided that settled it
  std::string decided_by;
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

// Bytes of a message as the runtime counts them for estimates: content, tool calls, ids.
int64_t MessageBytes(const Message& m);

// The run's messages, by their index in the transcript (0 is the first message of the run).
// Memory holds the tail from base() on; what is before it (folded into the context summary
// by a compaction, and already in the transcript column family) is read from the store when
// something needs it (`inspect`, fork). So a worker's memory holds its live context, not
// every message of its life. Each message's size is counted once, when it is added, so the
// estimate of a prompt is a subtraction, not a pass over every message (one turn of a
// thousand tool calls must not cost a thousand JSON dumps a step).
class MessageLog {
 public:
  // Tool results with more content than this are listed: the only ones a prompt may cut.
  static constexpr int64_t kLargeToolResult = 256;

  int64_t size() const { return base_ + static_cast<int64_t>(held_.size()); }
  bool empty() const { return size() == 0; }
  // The first message held in memory.
  int64_t base() const { return base_; }
  int64_t held() const { return static_cast<int64_t>(held_.size()); }
  // Message i, base() <= i < size().
  const Message& operator[](int64_t i) const { return held_.at(static_cast<size_t>(i - base_)); }
  const Message& back() const { return held_.back(); }
  std::deque<Message>::const_iterator begin() const { return held_.begin(); }
  std::deque<Message>::const_iterator end() const { return held_.end(); }
  void push_back(Message m);
  // Drops every message from `count` on (tests build states by hand).
  void resize(int64_t count);
  // Starts the log at message `base` with `held` (read from the transcript).
  void Reset(int64_t base, std::vector<Message> held);
  // Lets go of messages before `index` (kept in the transcript, not in memory).
  void ForgetBefore(int64_t index);

  // MessageBytes of message i, and of messages [from, to) (held ones).
  int64_t BytesAt(int64_t i) const { return OffsetOf(i + 1) - OffsetOf(i); }
  int64_t BytesOf(int64_t from, int64_t to) const { return OffsetOf(to) - OffsetOf(from); }
  // Held tool results longer than kLargeToolResult, by index.
  const std::set<int64_t>& large_tool_results() const { return large_; }

 private:
  int64_t OffsetOf(int64_t i) const {
    return i >= size() ? end_offset_ : offsets_.at(static_cast<size_t>(i - base_));
  }

  int64_t base_ = 0;
  std::deque<Message> held_;
  std::deque<int64_t> offsets_;  // bytes of the run's messages before each held one
  int64_t end_offset_ = 0;       // bytes of every message
  std::set<int64_t> large_;
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
  MessageLog messages;
  uint64_t last_seq = 0;
  int64_t last_checkpoint_step = 0;
  int64_t persisted_messages = 0;  // messages already in the transcript column family

  // The long-lived worker.
  std::vector<InboxMessage> inbox;  // in arrival order
  int64_t turns = 0;                // turns started (the goal is turn 1)
  int64_t turn_started_ms = 0;      // wall clock when the current (or last) turn started
  // The current turn ended (Idle or a terminal phase) and no other began: what happens after
  // (a revision that reopens a spent budget, an idle compaction the model refused) is not a
  // turn, so the turn's span is made once (run_tracing.h).
  bool turn_ended = false;
  int64_t started_ms = 0;           // wall clock of run_started: where cron schedules start
  std::string last_event_type;      // of the event at last_seq
  int64_t idle_since_ms = 0;        // wall clock of the last switch to Idle
  bool pause_requested = false;     // set by a person; cleared by resume
  Phase paused_from = Phase::kRunning;  // what Resume returns to
  bool cancel_requested = false;
  std::string cancel_reason;
  // Exported (handed_off): this copy is fenced and never acts again; the id names the
  // hand-off its archive carries. Whether a person had paused it first, for the import.
  std::string handoff_id;
  bool handoff_was_paused = false;
  std::map<std::string, int64_t> cron_fired_ms;  // cron name -> the occurrence last fired
  std::vector<std::pair<int64_t, int64_t>> recoveries;  // (step, wall ms) of recent restarts mid-step

  // A long life (docs/long-life.md).
  int64_t revision = 0;            // the spec revision in force: 1 from run_started, +1 per spec_revised
  std::string spec_hash;           // of that revision
  bool degraded_hold = false;      // Degraded and holding until Resume or a revision
  std::string degraded_cause;      // "crash_loop" | "model_refused" | "context_length" while held
  int64_t model_failures = 0;      // model calls of this step that no endpoint answered, in a row
  std::string model_error;         // the last such failure, quoted from the service
  int64_t cut_replies = 0;         // replies of this step that stopped short (length, content filter)
  BudgetUsed turn_start;           // `used` when the current turn started (per-turn budgets)
  // Tokens spent per time bucket (bucket start, wall ms -> tokens), for per-period budgets;
  // buckets older than the longest period are dropped, so this stays small.
  std::map<int64_t, int64_t> token_buckets;
  std::string deferred_reason;     // set while a period budget defers work

  // The context the model sees (docs/context.md). The transcript keeps every message; the
  // prompt is the instructions with `summary`, then messages from `compacted_to` on, tool
  // results before `pruned_to` cut to a reference.
  int64_t compacted_to = 0;        // messages [1, compacted_to) are folded into `summary`
  int64_t pruned_to = 0;           // large tool results before this index are left out
  std::string summary;             // of the compacted messages; empty before the first compaction
  int64_t compactions = 0;         // summaries made
  int64_t compaction_pending_to = 0;  // a compaction to `to` was started and not recorded done
  bool compaction_requested = false;  // a person asked; done at the next step boundary
  int64_t last_prompt_tokens = 0;  // the service's count for the last prompt answered
  int64_t last_prompt_bytes = 0;   // that prompt's size as the runtime measures it
  int64_t context_window = 0;      // the window the last model request was made for
  // The run's first conversational message (the goal): 1 when the run started with
  // instructions (message 0), else 0. Instructions are never folded into a summary.
  int64_t first_turn_message = 0;
  int64_t memory_flushed_to = 0;   // the memory flush before folding messages up to here is done
  bool tokens_estimated = false;   // the last reply's token counts were the client's estimate
  // What each model endpoint's replies took over the run's life (the events' firstTokenMs,
  // tokensPerSecond and retries, summed): for status and inspect.
  struct ModelFigures {
    int64_t replies = 0;
    int64_t retries = 0;
    int64_t first_token_ms_total = 0;
    int64_t first_tokens = 0;  // replies that had a first token
    double tokens_per_second_total = 0;
    int64_t rates = 0;  // replies that had a rate
  };
  std::map<std::string, ModelFigures> model_figures;  // by answeredBy

  CallState* FindCall(const std::string& call_id);
  const CallState* FindCall(const std::string& call_id) const;
  // The first call of the current step that is not done, or nullptr.
  CallState* NextOpenCall();
  std::vector<const CallState*> WaitingCalls() const;
  // The current turn waits for a model call that no endpoint answered (it is tried again).
  bool WaitingForModel() const { return phase == Phase::kRunning && awaiting_model && model_failures > 0; }

  // Checkpoint form: the state without its messages (they live in the transcript).
  nlohmann::json ToCheckpointJson() const;
  static Result<RunState> FromCheckpointJson(const nlohmann::json& j);
};

// Folds one event into the state. Errors: kCorruption when the event contradicts the state
// (a result for a call that does not exist): the log is not what this runtime wrote.
Status Apply(RunState* state, const Event& event);

// The width of a token bucket: the period budget's window is summed from buckets this wide,
// so the window moves in steps of a 120th of its length (at least a minute).
int64_t TokenBucketMs(int64_t period_ms);
// Tokens spent in the window (now - period, now], counted by whole buckets.
int64_t TokensInWindow(const RunState& s, int64_t period_ms, int64_t now_ms);

// The message content a tool result is shown to the model as.
std::string ToolResultContent(const nlohmann::json& event_data);

}  // namespace carapace
