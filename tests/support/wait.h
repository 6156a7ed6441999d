// Polling for a condition that other processes or threads bring about. Tests wait with a
// generous timeout and never assert on how long it took (shared, noisy machines).
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace carapace::testing {

// Polls `done` every 100 ms until it holds or `timeout_ms` passes; the last answer counts.
inline bool WaitFor(const std::function<bool()>& done, int timeout_ms = 30000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return done();
}

}  // namespace carapace::testing
