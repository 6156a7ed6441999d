// The operator's Prometheus metrics, named as controller-runtime names them so existing
// dashboards and alerts work: reconcile counts and times, work-queue depth, adds, waits,
// work times and retries, REST requests by code and method, leader status; plus
// carapace_agentruns{phase}. Every series exists (at 0) from the start, except
// carapace_agentrun_worker_restarts{namespace,agentrun}, which exists while an AgentRun
// has a worker pod.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "operator/kube/work_queue.h"

namespace carapace {

class OperatorMetrics : public kube::WorkQueueMetrics {
 public:
  explicit OperatorMetrics(const std::string& controller = "agentrun");

  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<prometheus::Registry> shared_registry() { return registry_; }

  // result: "success", "error", "requeue" or "requeue_after".
  void Reconciled(const std::string& result, double seconds);
  void Request(const std::string& method, int code);
  void SetLeader(bool leader);
  void SetWorkers(int active, int max);
  // The number of AgentRuns per phase, replacing the previous counts.
  void SetPhases(const std::map<std::string, int>& counts);
  // The restart count of an AgentRun's worker container, as its pod's status reports it
  // (a restarting worker resets its own counters, so its crash loop is seen from here).
  void SetWorkerRestarts(const std::string& ns, const std::string& agentrun, double restarts);
  // Drops that series: its pod or the AgentRun is gone.
  void ForgetWorker(const std::string& ns, const std::string& agentrun);

  // kube::WorkQueueMetrics
  void Added() override;
  void Depth(size_t depth) override;
  void Queued(kube::Duration waited) override;
  void Worked(kube::Duration took) override;
  void Retried() override;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::string controller_;
  prometheus::Family<prometheus::Counter>* reconcile_total_;
  prometheus::Counter* reconcile_errors_;
  prometheus::Histogram* reconcile_time_;
  prometheus::Gauge* active_workers_;
  prometheus::Gauge* max_workers_;
  prometheus::Gauge* depth_;
  prometheus::Counter* adds_;
  prometheus::Counter* retries_;
  prometheus::Histogram* queue_duration_;
  prometheus::Histogram* work_duration_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Gauge* leader_;
  prometheus::Family<prometheus::Gauge>* agentruns_;
  prometheus::Family<prometheus::Gauge>* worker_restarts_;
  std::mutex mu_;  // requests_, agentruns_ and worker_restarts_ add series on the fly
  std::map<std::string, prometheus::Gauge*> phase_gauges_;
  std::map<std::pair<std::string, std::string>, prometheus::Gauge*> restart_gauges_;  // (ns, agentrun)
};

}  // namespace carapace
