#include "worker/runtime/due_crons.h"

namespace carapace {

std::optional<Event> DueCronMessage(const CronSpec& spec, const CronSchedule& schedule, const RunState& s,
                                    int64_t now_ms) {
  auto it = s.cron_fired_ms.find(spec.name);
  const int64_t last = it != s.cron_fired_ms.end() ? it->second : s.started_ms;
  int64_t due = 0, missed = 0;
  for (auto next = schedule.Next(last); next && *next <= now_ms && missed < 100000; next = schedule.Next(*next)) {
    due = *next;
    ++missed;
  }
  if (missed == 0) return std::nullopt;
  Event e;
  e.type = event_type::kMessageReceived;
  e.step = s.step;
  e.data = {{"text", spec.prompt}, {"from", "cron:" + spec.name}, {"cron", spec.name}, {"scheduledForMs", due},
            {"occurrences", missed}};
  return e;
}

}  // namespace carapace
