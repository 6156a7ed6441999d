// Clocks behind one small interface so the runtime's wall-clock budget can be tested
// without sleeping.
#pragma once

#include <cstdint>
#include <string>

namespace carapace {

// Milliseconds since the Unix epoch (system clock).
int64_t WallNowMillis();
// Monotonic milliseconds / nanoseconds, for durations.
int64_t MonoNowMillis();
int64_t MonoNowNanos();
// "2026-11-27T08:57:18.123Z".
std::string FormatRfc3339Millis(int64_t unix_millis);

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowMillis() = 0;  // monotonic (RealClock) or Unix ms (SystemWallClock)
};

// The process's monotonic clock. Thread-safe.
Clock* RealClock();
// The system clock in Unix ms (WallNowMillis): event times, period budgets. Thread-safe.
Clock* SystemWallClock();

}  // namespace carapace
