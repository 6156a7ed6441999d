// The agent's Prometheus metrics (docs/worker.md lists them), fed from the event stream.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/agentrun/spec.h"
#include "worker/runtime/event.h"
#include "worker/runtime/run_state.h"

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace carapace {

// The state dir's volume. Apart from WorkerMetrics: the worker reports a full volume before
// its store can be opened. Both register the same series (prometheus-cpp merges them).
class VolumeMetrics {
 public:
  explicit VolumeMetrics(prometheus::Registry& registry);
  // `free_bytes` empty: unknown, the gauge keeps its last value.
  void Set(bool full, std::optional<uint64_t> free_bytes);

 private:
  prometheus::Gauge& full_;
  prometheus::Gauge& available_bytes_;
};

class WorkerMetrics {
 public:
  WorkerMetrics(prometheus::Registry& registry, const AgentRun& run);

  // Creates each tool's call counters at zero (outcomes ok, error and unknown), so the
  // first call of an outcome is an increase, not a series that appears at 1. Call before
  // the runner starts.
  void DeclareTools(const std::vector<std::string>& tools);
  // Every stored event, with the state it produced. Runner thread only.
  void OnEvent(const Event& e, const RunState& state);
  void OnCheckpointWritten(double seconds);
  // Messages stored but not yet taken into the state (the runner applies them later).
  void SetInboxDepth(int64_t depth);
  VolumeMetrics& volume() { return volume_; }

 private:
  BudgetSpec budget_;
  prometheus::Counter& steps_;
  prometheus::Histogram& step_duration_;
  prometheus::Histogram& checkpoint_duration_;
  prometheus::Family<prometheus::Counter>& tool_calls_;
  prometheus::Family<prometheus::Histogram>& tool_duration_;
  prometheus::Family<prometheus::Gauge>& phase_;
  prometheus::Family<prometheus::Gauge>& budget_ratio_;
  prometheus::Counter& recoveries_;
  prometheus::Gauge& inbox_depth_;
  prometheus::Gauge& model_unavailable_;
  prometheus::Gauge& revision_;
  prometheus::Gauge& context_used_;
  prometheus::Counter& compactions_;
  VolumeMetrics volume_;
  std::chrono::steady_clock::time_point step_started_;
  bool step_open_ = false;
  Phase last_phase_ = Phase::kPending;
};

}  // namespace carapace
