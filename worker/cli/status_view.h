// Views of a stored run for people and programs: the RunStatus message (proto, shared with
// the control API), and one-line descriptions of events.
#pragma once

#include <string>

#include "carapace/worker/v1/run.pb.h"
#include "worker/runtime/event.h"
#include "worker/runtime/run_loader.h"
#include "worker/runtime/run_state.h"

namespace carapace {

// Budget maxima come from `budget` when given (a caller that holds the parsed AgentRun and
// builds a status per event), else from the spec stored with the run (`identity.spec_json`).
worker::v1::RunStatus BuildRunStatus(const RunIdentity& identity, const RunState& state,
                                     const BudgetSpec* budget = nullptr);
std::string RunStatusJson(const worker::v1::RunStatus& status);

// The lines of the human status view about the agent's long life: its spec revision, and
// what it waits for while Running (a model that cannot be reached, a period budget) or why
// it is held (Degraded). Each line ends with a newline.
std::string LongLifeLines(const worker::v1::RunStatus& status);

// "tool_result s2c0 api ok 12.3 ms" and the like.
std::string DescribeEvent(const Event& e);

}  // namespace carapace
