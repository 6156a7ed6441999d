// A "kubelet" for end-to-end tests: it follows the StatefulSets in the Kubernetes API
// double and runs a real carapace-worker process for each of their pods, as a node would:
// a directory per volume claim (kept across restarts), a loopback address per pod
// (127.0.0.N), ConfigMap, Secret and PersistentVolumeClaim volumes, Secret references in the
// environment, init containers run to completion in order before the worker starts. It reports pod readiness from the worker's /readyz and the StatefulSet's
// status, restarts a process that exits (as restartPolicy Always does), replaces pods
// whose template changed, and stops processes of pods that are deleted or scaled away.
// Test code only.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/support/child_process.h"
#include "tests/support/kube_api_double.h"

namespace carapace::testing {

struct ProcessKubeletOptions {
  std::string worker_bin;  // the carapace-worker binary, whatever image a pod names
  // The carapace CLI: what a container whose command is /usr/local/bin/carapace (the worker
  // image holds both) runs. Empty: such a container cannot start.
  std::string cli_bin;
  std::string root;        // volumes and pod directories live under here
  int first_ip = 2;        // pods get 127.0.0.<first_ip>, <first_ip + 1>, ...
  int restart_delay_ms = 300;  // the kubelet's restart back-off, shortened for tests
};

// The first of `size` (at most 8) consecutive loopback addresses (127.0.0.N) that no other test process
// holds: pods listen on fixed ports (7070, 8080), so tests running in parallel must not share
// addresses. Held through a lock file in /tmp until the returned claim is destroyed.
class LoopbackBlock {
 public:
  explicit LoopbackBlock(int size);
  ~LoopbackBlock();
  LoopbackBlock(const LoopbackBlock&) = delete;
  LoopbackBlock& operator=(const LoopbackBlock&) = delete;
  int first() const { return first_; }

 private:
  int first_ = 0;
  int fd_ = -1;
};

class ProcessKubelet {
 public:
  ProcessKubelet(KubeApiDouble* api, ProcessKubeletOptions options);
  ~ProcessKubelet();  // Stop()

  void Start();
  // Stops every worker (SIGTERM, then SIGKILL after 10 s) and the loop.
  void Stop();

  // The worker process of pod ns/name: its pid (-1 when none runs), how often one was
  // started for that pod name (across pod re-creations), and a signal sent to it (kill -9 in crash tests). Kill returns false when none
  // runs.
  pid_t WorkerPid(const std::string& ns, const std::string& pod) const;
  int Starts(const std::string& ns, const std::string& pod) const;
  bool Kill(const std::string& ns, const std::string& pod, int signal);
  // Where a volume claim's data lives on this "node"; it exists while the claim does.
  std::string ClaimDir(const std::string& ns, const std::string& claim) const;
  // The pod's worker stderr so far (for failure messages).
  std::string WorkerLog(const std::string& ns, const std::string& pod) const;
  // Everything init container `container` of pod ns/name printed (stdout, then stderr), every
  // time it ran, across pod re-creations: one "--- run N: exit C ---" line after each run.
  std::string InitLog(const std::string& ns, const std::string& pod, const std::string& container) const;

 private:
  struct PodRun;
  void Loop();
  void SyncStatefulSet(const nlohmann::json& sts);
  void SyncPod(const nlohmann::json& sts, int ordinal, const std::string& revision);
  // Starts the pod's next init container, or its worker once every init container completed.
  void StartContainer(PodRun& run, const nlohmann::json& sts, const nlohmann::json& pod);
  void StopPod(const std::string& key, bool delete_object);
  void ReportPod(PodRun& run);
  void RemoveUnclaimedDirs();

  KubeApiDouble* api_;
  ProcessKubeletOptions options_;
  int subscription_ = -1;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  bool dirty_ = true;
  std::map<std::string, std::unique_ptr<PodRun>> pods_;  // ns/name -> run
  std::map<std::string, int> ips_;                        // ns/name -> last octet
  std::map<std::string, int> starts_;                     // ns/name -> processes started, ever
  std::map<std::string, std::string> init_logs_;          // ns/name/container -> InitLog
  std::map<std::string, int> init_runs_;                  // ns/name/container -> runs ended
  std::thread thread_;
};

}  // namespace carapace::testing
