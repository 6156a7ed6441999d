// A clock the test moves by hand, for the runtime's budgets, waits and windows. Test only.
#pragma once

#include <cstdint>

#include "common/time.h"

namespace carapace::testing {

class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t start = 1000) : now(start) {}
  int64_t NowMillis() override { return now; }
  int64_t now;
};

}  // namespace carapace::testing
