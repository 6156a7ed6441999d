// Wires the AgentRun reconciler to the cluster: informers for AgentRuns and the objects
// it owns (only those labelled as managed by the operator, so the caches hold nothing
// else), a rate-limited work queue fed by their changes, and N workers that reconcile
// keys from it and record the controller-runtime metrics.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "operator/controller/agentrun_reconciler.h"
#include "operator/kube/work_queue.h"
#include "operator/operator_metrics.h"

namespace carapace::controller {

struct ControllerOptions {
  int workers = 2;
  std::string ns;  // "" : every namespace
  ReconcilerOptions reconciler;
  bool rate_limit = true;  // false: no overall token bucket (benchmarks)
};

class AgentRunController {
 public:
  AgentRunController(kube::RestClient* client, OperatorMetrics* metrics, kube::EventRecorder* events,
                     WorkerStatusReader* workers, ControllerOptions options);
  ~AgentRunController();  // Stop()

  // Starts the informers, waits for their first lists, then starts the workers.
  // Errors: kDeadlineExceeded when the caches do not fill within `sync_timeout`,
  // kAborted when Stop() came first. Stop() may be called from another thread meanwhile.
  Status Start(std::chrono::milliseconds sync_timeout = std::chrono::milliseconds(60000));
  void Stop();
  bool Synced() const { return synced_.load(); }

 private:
  void Work();
  void EnqueueOwner(const nlohmann::json& object);
  void RecordPhase(const std::string& key, const std::string& phase);
  // The worker container's restart count from the pod's status, for crash-loop alerts.
  void RecordRestarts(const std::string& type, const std::string& ns, const std::string& agentrun,
                      const nlohmann::json& pod);

  kube::RestClient* client_;
  OperatorMetrics* metrics_;
  ControllerOptions options_;
  kube::WorkQueue queue_;
  std::vector<std::unique_ptr<kube::Informer>> informers_;
  std::unique_ptr<AgentRunReconciler> reconciler_;
  std::vector<std::thread> threads_;
  std::atomic<bool> synced_{false};
  std::atomic<bool> stopping_{false};
  std::mutex start_mu_;  // Start's last step against Stop
  std::atomic<int> active_{0};
  std::mutex phases_mu_;
  std::map<std::string, std::string> phases_;  // key -> phase
};

}  // namespace carapace::controller
