// Five-field cron expressions: parsing, errors that say what is wrong, next occurrences.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <ctime>

#include "common/cron.h"

using namespace carapace;
using Catch::Matchers::ContainsSubstring;

namespace {

// Unix ms of a UTC date and time.
int64_t Utc(int y, int mon, int d, int h, int m) {
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = m;
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

int64_t Next(const std::string& expr, int64_t after) {
  auto c = CronSchedule::Parse(expr);
  INFO(expr << ": " << c.status().ToString());
  REQUIRE(c.ok());
  auto n = c->Next(after);
  REQUIRE(n.has_value());
  return *n;
}

}  // namespace

TEST_CASE("cron: next occurrences for the common forms", "[cron]") {
  const int64_t t = Utc(2026, 11, 27, 12, 7);  // a Friday
  CHECK(Next("* * * * *", t) == Utc(2026, 11, 27, 12, 8));
  CHECK(Next("*/15 * * * *", t) == Utc(2026, 11, 27, 12, 15));
  CHECK(Next("0 9 * * *", t) == Utc(2026, 11, 28, 9, 0));
  CHECK(Next("0 9 * * 1-5", t) == Utc(2026, 11, 30, 9, 0));  // the next weekday is Monday
  CHECK(Next("0 9 * * MON", t) == Utc(2026, 11, 30, 9, 0));
  CHECK(Next("30 2 1 * *", t) == Utc(2026, 12, 1, 2, 30));
  CHECK(Next("0 0 1 jan *", t) == Utc(2027, 1, 1, 0, 0));
  CHECK(Next("5,35 */6 * * *", t) == Utc(2026, 11, 27, 12, 35));
  CHECK(Next("0 12 * * 0", t) == Utc(2026, 11, 29, 12, 0));
  CHECK(Next("0 12 * * 7", t) == Utc(2026, 11, 29, 12, 0));  // 7 is Sunday too
  CHECK(Next("10-20/5 * * * *", t) == Utc(2026, 11, 27, 12, 10));
  // Both day fields restricted: either matches (the 1st, or any Monday).
  CHECK(Next("0 0 1 * 1", t) == Utc(2026, 11, 30, 0, 0));
  CHECK(Next("0 0 29 2 *", t) == Utc(2028, 2, 29, 0, 0));  // leap day
  auto never = CronSchedule::Parse("0 0 30 2 *");
  REQUIRE(never.ok());
  CHECK_FALSE(never->Next(t).has_value());
}

TEST_CASE("cron: bad expressions name the field and the problem", "[cron]") {
  struct Case {
    std::string expr;
    std::string error;
  };
  for (const auto& c : std::vector<Case>{
           {"* * * *", "has 4 fields; a cron expression has 5"},
           {"60 * * * *", "minute \"60\": \"60\" is not between 0 and 59"},
           {"* 24 * * *", "hour \"24\""},
           {"* * 0 * *", "day of month \"0\""},
           {"* * * 13 *", "month \"13\""},
           {"* * * * 8", "day of week \"8\""},
           {"*/0 * * * *", "the step must be a positive number"},
           {"5-1 * * * *", "the range goes backwards"},
           {"1,,2 * * * *", "empty list item"},
           {"@daily", "has 1 fields"},
       }) {
    auto r = CronSchedule::Parse(c.expr);
    INFO(c.expr);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.status().message(), ContainsSubstring(c.error));
  }
}
