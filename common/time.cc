// Clock implementations.
#include "common/time.h"

#include <chrono>
#include <ctime>

namespace carapace {

int64_t WallNowMillis() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

int64_t MonoNowMillis() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

int64_t MonoNowNanos() {
  using namespace std::chrono;
  return duration_cast<nanoseconds>(steady_clock::now().time_since_epoch()).count();
}

std::string FormatRfc3339Millis(int64_t unix_millis) {
  std::time_t secs = static_cast<std::time_t>(unix_millis / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(unix_millis % 1000));
  return buf;
}

namespace {
// A Clock that reads one of the process's clocks.
class ProcessClock : public Clock {
 public:
  explicit ProcessClock(int64_t (*now)()) : now_(now) {}
  int64_t NowMillis() override { return now_(); }

 private:
  int64_t (*now_)();
};
}  // namespace

Clock* RealClock() {
  static ProcessClock clock(MonoNowMillis);
  return &clock;
}

Clock* SystemWallClock() {
  static ProcessClock clock(WallNowMillis);
  return &clock;
}

}  // namespace carapace
