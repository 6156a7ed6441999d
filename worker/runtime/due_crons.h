// What a cron entry (spec.schedule.cron) queues when it comes due: one message_received
// event for every occurrence since it last fired, or since the run started.
#pragma once

#include <cstdint>
#include <optional>

#include "common/agentrun/spec.h"
#include "common/cron.h"
#include "worker/runtime/event.h"
#include "worker/runtime/run_state.h"

namespace carapace {

// The message `spec` queues at `now_ms`, or empty when no occurrence has come due since the
// one it last fired (RunState::cron_fired_ms). Occurrences missed while the worker was down
// come as one message with their count ("occurrences"), not one each.
std::optional<Event> DueCronMessage(const CronSpec& spec, const CronSchedule& schedule, const RunState& state,
                                    int64_t now_ms);

}  // namespace carapace
