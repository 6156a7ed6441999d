// Cron expressions (5 fields, names, ranges, steps) and the next time they fire.
#include <cstdint>
#include <string>

#include "common/cron.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto schedule = carapace::CronSchedule::Parse(text);
  if (schedule.ok()) {
    int64_t at = 1767225600000;  // 2026-01-01T00:00:00Z
    for (int i = 0; i < 3; ++i) {
      auto next = schedule->Next(at);
      if (!next) break;
      (void)schedule->Matches(*next);
      at = *next;
    }
  }
  return 0;
}
