// Process-wide settings every Carapace binary applies first thing in main().
#pragma once

#include <string>

namespace carapace {

// This machine's host name (a pod's name in a cluster), for records people read.
std::string HostName();

// cpprestsdk schedules every continuation of every HTTP exchange on its thread pool, 40
// threads by default. A worker drives one agent loop; with a pool that size each streamed
// chunk wakes a different idle thread, and the hand-offs cost more than the work (the model
// benchmark measured about 6x the per-token cost, and 1 ms more to the first token, than
// with two threads). Must run before the first HTTP client or listener is made.
// `http_threads`: the operator, with a watch open per informer, uses a few more.
void SetUpProcess(int http_threads = 2);

}  // namespace carapace
