// The operator's metrics (see operator_metrics.h).
#include "operator/operator_metrics.h"

namespace carapace {

namespace {
// controller-runtime's reconcile-time and work-queue buckets (seconds).
const prometheus::Histogram::BucketBoundaries kReconcileBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25,
                                                                   0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8,
                                                                   0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0,
                                                                   3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20,
                                                                   25, 30, 40, 50, 60};
const prometheus::Histogram::BucketBoundaries kQueueBuckets = {1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1, 10, 100, 1000};
const char* kPhases[] = {"Invalid", "Pending", "Running", "WaitingForApproval", "Idle", "Paused", "Succeeded",
                         "Failed", "BudgetExhausted", "Degraded", "Cancelled", "Suspended", "Hibernating"};

double Seconds(kube::Duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

OperatorMetrics::OperatorMetrics(const std::string& controller)
    : registry_(std::make_shared<prometheus::Registry>()), controller_(controller) {
  auto& r = *registry_;
  reconcile_total_ = &prometheus::BuildCounter().Name("controller_runtime_reconcile_total")
                          .Help("Total number of reconciliations per controller").Register(r);
  for (const char* result : {"success", "error", "requeue", "requeue_after"}) {
    reconcile_total_->Add({{"controller", controller}, {"result", result}});
  }
  reconcile_errors_ = &prometheus::BuildCounter().Name("controller_runtime_reconcile_errors_total")
                           .Help("Total number of reconciliation errors per controller").Register(r)
                           .Add({{"controller", controller}});
  reconcile_time_ = &prometheus::BuildHistogram().Name("controller_runtime_reconcile_time_seconds")
                         .Help("Length of time per reconciliation per controller").Register(r)
                         .Add({{"controller", controller}}, kReconcileBuckets);
  active_workers_ = &prometheus::BuildGauge().Name("controller_runtime_active_workers")
                         .Help("Number of currently used workers per controller").Register(r)
                         .Add({{"controller", controller}});
  max_workers_ = &prometheus::BuildGauge().Name("controller_runtime_max_concurrent_reconciles")
                      .Help("Maximum number of concurrent reconciles per controller").Register(r)
                      .Add({{"controller", controller}});
  const prometheus::Labels queue = {{"name", controller}};
  depth_ = &prometheus::BuildGauge().Name("workqueue_depth").Help("Current depth of workqueue").Register(r).Add(queue);
  adds_ = &prometheus::BuildCounter().Name("workqueue_adds_total").Help("Total number of adds handled by workqueue")
               .Register(r).Add(queue);
  retries_ = &prometheus::BuildCounter().Name("workqueue_retries_total")
                  .Help("Total number of retries handled by workqueue").Register(r).Add(queue);
  queue_duration_ = &prometheus::BuildHistogram().Name("workqueue_queue_duration_seconds")
                          .Help("How long in seconds an item stays in workqueue before being requested")
                          .Register(r).Add(queue, kQueueBuckets);
  work_duration_ = &prometheus::BuildHistogram().Name("workqueue_work_duration_seconds")
                         .Help("How long in seconds processing an item from workqueue takes")
                         .Register(r).Add(queue, kQueueBuckets);
  requests_ = &prometheus::BuildCounter().Name("rest_client_requests_total")
                   .Help("Number of HTTP requests, partitioned by status code and method").Register(r);
  leader_ = &prometheus::BuildGauge().Name("leader_election_master_status")
                 .Help("Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 "
                       "indicates master")
                 .Register(r).Add({{"name", "carapace-operator"}});
  agentruns_ = &prometheus::BuildGauge().Name("carapace_agentruns").Help("AgentRuns by phase").Register(r);
  for (const char* phase : kPhases) phase_gauges_[phase] = &agentruns_->Add({{"phase", phase}});
  worker_restarts_ = &prometheus::BuildGauge().Name("carapace_agentrun_worker_restarts")
                          .Help("Restarts of the worker container in the AgentRun's current pod (its "
                                "containerStatuses restartCount)")
                          .Register(r);
}

void OperatorMetrics::Reconciled(const std::string& result, double seconds) {
  reconcile_total_->Add({{"controller", controller_}, {"result", result}}).Increment();
  if (result == "error") reconcile_errors_->Increment();
  reconcile_time_->Observe(seconds);
}

void OperatorMetrics::Request(const std::string& method, int code) {
  std::lock_guard<std::mutex> lock(mu_);
  requests_->Add({{"code", code > 0 ? std::to_string(code) : std::string("<error>")}, {"method", method}}).Increment();
}

void OperatorMetrics::SetLeader(bool leader) { leader_->Set(leader ? 1 : 0); }

void OperatorMetrics::SetWorkers(int active, int max) {
  active_workers_->Set(active);
  max_workers_->Set(max);
}

void OperatorMetrics::SetPhases(const std::map<std::string, int>& counts) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [phase, gauge] : phase_gauges_) gauge->Set(0);
  for (const auto& [phase, n] : counts) {
    auto& g = phase_gauges_[phase];
    if (!g) g = &agentruns_->Add({{"phase", phase}});
    g->Set(n);
  }
}

void OperatorMetrics::SetWorkerRestarts(const std::string& ns, const std::string& agentrun, double restarts) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& g = restart_gauges_[{ns, agentrun}];
  if (!g) g = &worker_restarts_->Add({{"namespace", ns}, {"agentrun", agentrun}});
  g->Set(restarts);
}

void OperatorMetrics::ForgetWorker(const std::string& ns, const std::string& agentrun) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = restart_gauges_.find({ns, agentrun});
  if (it == restart_gauges_.end()) return;
  worker_restarts_->Remove(it->second);
  restart_gauges_.erase(it);
}

void OperatorMetrics::Added() { adds_->Increment(); }
void OperatorMetrics::Depth(size_t depth) { depth_->Set(static_cast<double>(depth)); }
void OperatorMetrics::Queued(kube::Duration waited) { queue_duration_->Observe(Seconds(waited)); }
void OperatorMetrics::Worked(kube::Duration took) { work_duration_->Observe(Seconds(took)); }
void OperatorMetrics::Retried() { retries_->Increment(); }

}  // namespace carapace
