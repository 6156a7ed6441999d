// Agent metrics.
#include "worker/server/worker_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace carapace {

namespace {

const prometheus::Histogram::BucketBoundaries kStepBuckets = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
const prometheus::Histogram::BucketBoundaries kWriteBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                               0.01,   0.025,   0.05,   0.1,   0.25};
const prometheus::Histogram::BucketBoundaries kToolBuckets = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60};
const Phase kPhases[] = {Phase::kPending, Phase::kRunning, Phase::kWaitingForApproval, Phase::kSucceeded, Phase::kFailed,
                         Phase::kBudgetExhausted, Phase::kIdle, Phase::kPaused, Phase::kDegraded, Phase::kCancelled};

double Ratio(int64_t used, int64_t max) { return max > 0 ? static_cast<double>(used) / static_cast<double>(max) : 0; }

}  // namespace

VolumeMetrics::VolumeMetrics(prometheus::Registry& r)
    : full_(prometheus::BuildGauge()
                .Name("carapace_volume_full")
                .Help("1 while the state volume has no room for the agent's next write: the agent waits for space "
                      "and carries on by itself once there is room.")
                .Register(r)
                .Add({})),
      available_bytes_(prometheus::BuildGauge()
                           .Name("carapace_volume_available_bytes")
                           .Help("Bytes free on the state volume for the worker (statvfs f_bavail).")
                           .Register(r)
                           .Add({})) {}

void VolumeMetrics::Set(bool full, std::optional<uint64_t> free_bytes) {
  full_.Set(full ? 1 : 0);
  if (free_bytes) available_bytes_.Set(static_cast<double>(*free_bytes));
}

WorkerMetrics::WorkerMetrics(prometheus::Registry& r, const AgentRun& run)
    : budget_(run.spec.budget),
      steps_(prometheus::BuildCounter().Name("carapace_agent_steps_total").Help("Agent steps completed.").Register(r).Add({})),
      step_duration_(prometheus::BuildHistogram()
                         .Name("carapace_agent_step_duration_seconds")
                         .Help("Time from a step's model request to the end of its last tool call.")
                         .Register(r)
                         .Add({}, kStepBuckets)),
      checkpoint_duration_(prometheus::BuildHistogram()
                               .Name("carapace_checkpoint_write_duration_seconds")
                               .Help("Time to write a step's last events and its checkpoint to the store.")
                               .Register(r)
                               .Add({}, kWriteBuckets)),
      tool_calls_(prometheus::BuildCounter()
                      .Name("carapace_tool_calls_total")
                      .Help("Tool calls by tool and outcome (ok, error, unknown after a crash).")
                      .Register(r)),
      tool_duration_(prometheus::BuildHistogram()
                         .Name("carapace_tool_call_duration_seconds")
                         .Help("Duration of tool calls, by tool.")
                         .Register(r)),
      phase_(prometheus::BuildGauge().Name("carapace_agent_phase").Help("1 for the agent's current phase, 0 for the others.").Register(r)),
      budget_ratio_(prometheus::BuildGauge()
                        .Name("carapace_budget_used_ratio")
                        .Help("Share of each budget used (steps, tokens, tool_calls, wall_clock); 1 is exhausted.")
                        .Register(r)),
      recoveries_(prometheus::BuildCounter()
                      .Name("carapace_recoveries_total")
                      .Help("Times a worker started while a step was in progress and resumed it.")
                      .Register(r)
                      .Add({})),
      inbox_depth_(prometheus::BuildGauge().Name("carapace_inbox_depth").Help("Messages waiting in the inbox.").Register(r).Add({})),
      model_unavailable_(prometheus::BuildGauge()
                             .Name("carapace_model_unavailable")
                             .Help("1 while the current turn waits for a model service that no endpoint could reach; "
                                   "it is tried again with backoff.")
                             .Register(r)
                             .Add({})),
      revision_(prometheus::BuildGauge()
                    .Name("carapace_spec_revision")
                    .Help("The spec revision in force: 1 at the start, +1 for each applied spec change.")
                    .Register(r)
                    .Add({})),
      context_used_(prometheus::BuildGauge()
                        .Name("carapace_context_used_ratio")
                        .Help("The last model request's estimated prompt as a share of the context window; "
                              "a compaction starts at spec.context.compactAtRatio.")
                        .Register(r)
                        .Add({})),
      compactions_(prometheus::BuildCounter()
                       .Name("carapace_compactions_total")
                       .Help("Summaries made of older messages to keep the prompt inside the context window.")
                       .Register(r)
                       .Add({})),
      volume_(r) {
  for (Phase p : kPhases) phase_.Add({{"phase", PhaseName(p)}}).Set(0);
  for (const char* b : {"steps", "tokens", "tool_calls", "wall_clock"}) budget_ratio_.Add({{"budget", b}}).Set(0);
  phase_.Add({{"phase", PhaseName(Phase::kPending)}}).Set(1);
}

void WorkerMetrics::OnEvent(const Event& e, const RunState& s) {
  const auto now = std::chrono::steady_clock::now();
  if (e.type == event_type::kModelRequest) {
    step_started_ = now;
    step_open_ = true;
  } else if (e.type == event_type::kStepCompleted) {
    steps_.Increment();
    if (step_open_) step_duration_.Observe(std::chrono::duration<double>(now - step_started_).count());
    step_open_ = false;
  } else if (e.type == event_type::kToolResult) {
    const std::string tool = e.data.value("tool", "");
    tool_calls_.Add({{"tool", tool}, {"outcome", e.data.value("ok", false) ? "ok" : "error"}}).Increment();
    if (e.data.contains("durationMs") && e.data["durationMs"].is_number()) {
      tool_duration_.Add({{"tool", tool}}, kToolBuckets).Observe(e.data["durationMs"].get<double>() / 1000.0);
    }
  } else if (e.type == event_type::kToolOutcomeUnknown) {
    tool_calls_.Add({{"tool", e.data.value("tool", "")}, {"outcome", "unknown"}}).Increment();
  } else if (e.type == event_type::kRecovered) {
    recoveries_.Increment();
  } else if (e.type == event_type::kContextCompacted && e.data.contains("summary")) {
    compactions_.Increment();
  }
  if (e.type == event_type::kModelRequest && e.data.value("contextWindow", int64_t{0}) > 0) {
    context_used_.Set(static_cast<double>(e.data.value("estimatedPromptTokens", int64_t{0})) /
                      static_cast<double>(e.data["contextWindow"].get<int64_t>()));
  }
  if (s.phase != last_phase_) {
    phase_.Add({{"phase", PhaseName(last_phase_)}}).Set(0);
    phase_.Add({{"phase", PhaseName(s.phase)}}).Set(1);
    last_phase_ = s.phase;
  }
  model_unavailable_.Set(s.WaitingForModel() ? 1 : 0);
  revision_.Set(static_cast<double>(s.revision));
  budget_ratio_.Add({{"budget", "steps"}}).Set(Ratio(s.used.steps, budget_.max_steps));
  budget_ratio_.Add({{"budget", "tokens"}}).Set(Ratio(s.used.tokens, budget_.max_tokens));
  budget_ratio_.Add({{"budget", "tool_calls"}}).Set(Ratio(s.used.tool_calls, budget_.max_tool_calls));
  budget_ratio_.Add({{"budget", "wall_clock"}}).Set(Ratio(s.used.wall_ms, budget_.max_wall_clock_seconds * 1000));
}

void WorkerMetrics::DeclareTools(const std::vector<std::string>& tools) {
  for (const auto& tool : tools) {
    for (const char* outcome : {"ok", "error", "unknown"}) tool_calls_.Add({{"tool", tool}, {"outcome", outcome}});
  }
}

void WorkerMetrics::OnCheckpointWritten(double seconds) { checkpoint_duration_.Observe(seconds); }

void WorkerMetrics::SetInboxDepth(int64_t depth) { inbox_depth_.Set(static_cast<double>(depth)); }

}  // namespace carapace
