// Five-field cron expressions (minute hour day-of-month month day-of-week), evaluated in UTC:
// `*`, numbers, lists `a,b`, ranges `a-b`, steps `*/n` and `a-b/n`, month and weekday names
// (JAN, MON), and 0 or 7 for Sunday. As in cron, when both day fields are restricted a day
// matching either one matches.
#pragma once

#include <bitset>
#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"

namespace carapace {

class CronSchedule {
 public:
  // Errors: kInvalidArgument naming the field and what is wrong with it.
  static Result<CronSchedule> Parse(const std::string& expression);

  // The first matching minute strictly after `after_ms` (Unix ms), in ms; nullopt when none
  // within five years (e.g. 30 February).
  std::optional<int64_t> Next(int64_t after_ms) const;
  bool Matches(int64_t minute_ms) const;

 private:
  std::bitset<60> minute_;
  std::bitset<24> hour_;
  std::bitset<32> day_;    // 1..31
  std::bitset<13> month_;  // 1..12
  std::bitset<7> weekday_;  // 0 = Sunday
  bool day_any_ = true;
  bool weekday_any_ = true;
};

}  // namespace carapace
