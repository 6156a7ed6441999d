// AgentService: one AgentRun kept alive as a service. A single agent thread owns the Runner
// and drives it whenever there is something to do: a message in the inbox, a decision, a
// scheduled wake-up. The control API and the probes read a status snapshot and append
// events (durably, before they answer); the runner applies them at its next step.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "carapace/worker/v1/run.pb.h"
#include "common/agentrun/spec.h"
#include "common/cron.h"
#include "worker/runtime/backup.h"
#include "worker/runtime/due_crons.h"
#include "worker/runtime/handoff.h"
#include "worker/runtime/run_loader.h"
#include "worker/runtime/runner.h"
#include "worker/server/worker_metrics.h"

namespace prometheus {
class Registry;
}

namespace carapace {

struct ExportedArchive {
  // Open for reading. Its file on the volume is gone already: the archive lives as long as
  // this stream, and none is left behind by a worker that dies while sending it.
  std::unique_ptr<std::istream> archive;
  uint64_t bytes = 0;
  ArchiveManifest manifest;
  int64_t duration_ms = 0;
  // While held, the archive is being sent, and TakeBack refuses (the fence must not lift
  // under a copy on its way out).
  std::shared_ptr<void> sending;
};

class AgentService {
 public:
  // Opens the state dir (taking its lock) and binds the run, as `carapace run` does.
  // Errors: as RunStore::Open and Runner::Create.
  static Result<std::unique_ptr<AgentService>> Open(const AgentRun& run, const std::string& state_dir,
                                                    prometheus::Registry* metrics);
  ~AgentService();

  // Starts the agent thread.
  void Start();
  // SIGTERM: no new work; the action in progress (a model call, a tool call) may finish
  // within `grace`. If it does not, an `interrupted` event records what was cut off (it
  // resumes as any cut-off call does). The store is flushed either way. Returns true when
  // the agent thread stopped in time.
  bool Shutdown(std::chrono::milliseconds grace);

  worker::v1::RunStatus Snapshot() const;
  // Stored durably before it returns. Errors: kInvalidArgument (empty, not UTF-8, over
  // 64 KiB), kFailedPrecondition (the run has ended).
  Result<uint64_t> SendMessage(const std::string& text, const std::string& from);
  int64_t InboxDepth() const;
  Status Decide(const std::string& call_id, bool approve, const std::string& by);
  Status Pause();
  Status Resume();
  // Asks for a compaction at the next step boundary; waits briefly for it (docs/context.md).
  Status Compact();
  Status Cancel(const std::string& reason);
  // A backup named `name` (empty: the time) in backups/ next to the state dir, made while
  // the agent works on (BackupRun). Errors: kInvalidArgument (the name); kFailedPrecondition
  // when a backup of that name exists; BackupRun's.
  Result<BackupInfo> Backup(const std::string& name);
  // Hands the agent off (worker/runtime/handoff.h): fences it, waits up to `wait` for the
  // action in progress to end, and makes an archive of it (in exports/ next to the state
  // dir, for the caller to send). Again on a fenced agent: the same hand-off.
  // Errors: kUnavailable when the action in progress has not ended in time (the fence
  // holds; export again); ExportRun's.
  Result<ExportedArchive> Export(const std::string& by, std::chrono::milliseconds wait);
  // Lifts the fence of an export whose archive was never imported (RevokeHandOff).
  // kFailedPrecondition while an archive is being sent.
  Status TakeBack(const std::string& by);

  // Blocks until the runner has applied event `seq` and finished the pass that applied it
  // (the snapshot shows what it changed), or `timeout` passes: control calls answer with the
  // status their request produced when they can.
  void WaitApplied(uint64_t seq, std::chrono::milliseconds timeout) const;
  // Blocks until an event after `seq` is stored, `timeout` passes or the service stops.
  void WaitForEventAfter(uint64_t seq, std::chrono::milliseconds timeout) const;
  const RunStore& store() const { return *store_; }
  bool stopping() const { return stopping_; }

  // Ready: the store is open and has room, the agent thread runs, and it is not in a crash
  // loop.
  bool Ready(std::string* why) const;
  // The model service's health as last checked (every 10 s, in the background).
  Status ModelHealth() const;

 private:
  AgentService() = default;
  void Loop();
  void Wake();
  // Queues one message per cron entry that has come due since it last fired (occurrences
  // missed while the worker was down are coalesced). Agent thread only.
  int FireDueCrons(int64_t now_ms);  // how many prompts it queued
  bool CronActive(const CronSpec& spec) const;
  // When the agent should next wake on its own: the next cron occurrence or heartbeat.
  std::chrono::steady_clock::time_point NextWake(int64_t now_ms) const;
  void OnEvent(const Event& e, const RunState& state);
  // RunnerOptions::wait_for_space: a write the volume had no room for. Reports it (status,
  // /readyz, metric, log) and waits a little; false once the worker is stopping.
  bool WaitForSpace(const Status& refused);
  // The volume's metrics as they are now.
  void ReportVolume();
  // While the runner waits for a time (a model outage, a period budget): when, in Unix ms.
  void SetNextTry(worker::v1::RunStatus* status) const;
  Status CheckNotEnded(const char* what) const;
  // Appends a control event (pause, resume, cancel, compact), wakes the agent and waits up to
  // `wait` for the pass that applies it.
  Status Control(const char* what, const char* type, nlohmann::json data = nlohmann::json::object(),
                 std::chrono::milliseconds wait = std::chrono::seconds(1));

  AgentRun run_;
  RunIdentity identity_;
  std::unique_ptr<RunStore> store_;
  ModelRegistry models_;
  ToolRegistry tools_;
  std::unique_ptr<Runner> runner_;
  std::unique_ptr<WorkerMetrics> metrics_;
  std::vector<std::pair<CronSpec, CronSchedule>> crons_;

  mutable std::mutex mu_;
  mutable std::condition_variable changed_;  // a new event, a wake-up, stopping
  worker::v1::RunStatus status_;
  int64_t unapplied_messages_ = 0;  // stored, not yet applied by the runner
  bool wake_ = false;
  bool in_run_ = false;  // the agent thread is inside runner_->Run()
  bool loop_failed_ = false;
  bool waiting_for_space_ = false;  // agent thread only: a runner write waits for room
  std::string loop_error_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> loop_done_{false};
  std::thread thread_;

  std::mutex export_mu_;
  std::string handoff_id_;  // under export_mu_: the fence in force, empty when none
  // Archives being sent (ExportedArchive::sending); shared, as a stream may end after us.
  std::shared_ptr<std::atomic<int>> archives_sending_ = std::make_shared<std::atomic<int>>(0);

  std::thread health_thread_;
  mutable std::mutex health_mu_;
  Status health_ = Unavailable("not checked yet");
};

}  // namespace carapace
