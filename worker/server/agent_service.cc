// The long-lived agent: its thread, inbox, schedules, controls and status.
#include "worker/server/agent_service.h"

#include <filesystem>
#include <fstream>

#include "common/json_text.h"
#include "common/log.h"
#include "common/process_setup.h"
#include "common/time.h"
#include "worker/cli/status_view.h"

namespace carapace {

namespace {
constexpr size_t kMaxMessageBytes = 64 * 1024;
constexpr int64_t kMaxInbox = 10000;  // a run that cannot keep up refuses more rather than grow without end
}

Result<std::unique_ptr<AgentService>> AgentService::Open(const AgentRun& run, const std::string& state_dir,
                                                         prometheus::Registry* metrics) {
  std::unique_ptr<AgentService> s(new AgentService());
  s->run_ = run;
  CARAPACE_ASSIGN_OR_RETURN(s->store_, RunStore::Open(state_dir, RunStore::OpenMode::kCreateIfMissing));
  RegisterBuiltinModels(&s->models_);
  s->models_.set_metrics(metrics);
  RegisterBuiltinTools(&s->tools_);
  if (metrics) s->metrics_ = std::make_unique<WorkerMetrics>(*metrics, run);
  if (run.spec.schedule) {
    for (const auto& c : run.spec.schedule->cron) {
      auto parsed = CronSchedule::Parse(c.schedule);
      if (!parsed.ok()) return InvalidArgument("spec.schedule.cron " + c.name + ": " + parsed.status().message());
      s->crons_.emplace_back(c, *parsed);
    }
  }
  RunnerOptions options;
  options.persistent = true;
  AgentService* self = s.get();
  options.stop_requested = [self] { return self->stopping_.load(); };
  options.on_event = [self](const Event& e, const RunState& state) { self->OnEvent(e, state); };
  options.wait_for_space = [self](const Status& refused) { return self->WaitForSpace(refused); };
  options.on_checkpoint_written = [self](double seconds) {
    if (self->metrics_) self->metrics_->OnCheckpointWritten(seconds);
  };
  CARAPACE_ASSIGN_OR_RETURN(s->runner_, Runner::Create(s->store_.get(), run, s->models_, s->tools_, options));
  if (s->metrics_) {
    // The tools' names as the model calls them (an MCP server's own names), known only now.
    std::vector<std::string> tools;
    for (const auto& schema : s->runner_->tool_schemas()) tools.push_back(schema.name);
    s->metrics_->DeclareTools(tools);
  }
  CARAPACE_ASSIGN_OR_RETURN(auto identity, LoadRunIdentity(*s->store_));
  if (identity) s->identity_ = *identity;
  s->status_ = BuildRunStatus(s->identity_, s->runner_->state(), &s->run_.spec.budget);
  s->handoff_id_ = s->runner_->state().handoff_id;
  if (s->metrics_) s->metrics_->OnEvent(Event{}, s->runner_->state());  // the phase and budgets as stored
  return s;
}

AgentService::~AgentService() {
  stopping_ = true;
  Wake();
  if (thread_.joinable()) thread_.join();
  if (health_thread_.joinable()) health_thread_.join();
}

void AgentService::Start() {
  thread_ = std::thread([this] { Loop(); });
  // The model's health is checked here, every 10 s, never on a probe's request: a probe
  // must answer at once, and cpprest's small pool must not wait on a slow model service.
  health_thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      lock.unlock();
      Status s = runner_->model().CheckHealth();
      {
        std::lock_guard<std::mutex> h(health_mu_);
        health_ = s;
      }
      ReportVolume();
      lock.lock();
      changed_.wait_for(lock, std::chrono::seconds(10), [&] { return stopping_.load(); });
    }
  });
}

void AgentService::OnEvent(const Event& e, const RunState& state) {
  if (metrics_) metrics_->OnEvent(e, state);
  if (waiting_for_space_) {
    // The write that waited is stored: the turn goes on where it was.
    waiting_for_space_ = false;
    log::Info("the volume has room again; the agent carries on", {{"step", state.step}});
    ReportVolume();
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (e.type == event_type::kMessageReceived && unapplied_messages_ > 0) --unapplied_messages_;
  if ((identity_.run_id.empty() && !state.run_id.empty()) || e.type == event_type::kSpecRevised) {
    if (auto id = LoadRunIdentity(*store_); id.ok() && *id) identity_ = **id;
  }
  // Per event: the budgets come from the parsed spec, not from parsing the stored one again.
  status_ = BuildRunStatus(identity_, state, &run_.spec.budget);
  SetNextTry(&status_);
  if (metrics_) metrics_->SetInboxDepth(status_.inbox_depth() + unapplied_messages_);
  changed_.notify_all();
}

bool AgentService::WaitForSpace(const Status& refused) {
  if (!waiting_for_space_) {
    waiting_for_space_ = true;
    log::Error("the volume is full: the agent waits for space and carries on by itself once there is room; "
               "messages and controls are refused meanwhile",
               {{"error", refused.message()}});
    ReportVolume();
    std::lock_guard<std::mutex> lock(mu_);
    changed_.notify_all();  // control calls waiting for this pass see the status now
  }
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_.load(); });
  return !stopping_;
}

void AgentService::ReportVolume() {
  if (metrics_) metrics_->volume().Set(store_->VolumeFull().has_value(), store_->FreeBytes());
}

void AgentService::Wake() {
  std::lock_guard<std::mutex> lock(mu_);
  wake_ = true;
  changed_.notify_all();
}

void AgentService::Loop() {
  bool ended_logged = false;
  while (!stopping_) {
    Result<Phase> phase = Internal("not run");
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_run_ = true;
    }
    try {
      phase = runner_->Run();
    } catch (const std::exception& e) {
      phase = Internal(std::string("unexpected error: ") + e.what());
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_run_ = false;
      changed_.notify_all();
    }
    // A write still waiting for room when the worker stops: nothing was written; the next
    // start carries on from the store.
    if (!phase.ok() && IsVolumeFull(phase.status()) && stopping_) break;
    if (!phase.ok()) {
      // The store failed (I/O, corruption): nothing more can be recorded safely.
      log::Error("the agent stopped: the store failed", {{"error", phase.status().ToString()}});
      std::lock_guard<std::mutex> lock(mu_);
      loop_failed_ = true;
      loop_error_ = phase.status().ToString();
      break;
    }
    if (IsTerminal(*phase) && !ended_logged) {
      log::Info("the run ended", {{"phase", PhaseName(*phase)}, {"reason", runner_->state().reason}});
      ended_logged = true;
    }
    // After Run(), whose state has every event applied: crons see what is already queued.
    if (FireDueCrons(WallNowMillis()) > 0) continue;
    std::unique_lock<std::mutex> lock(mu_);
    const auto wake_at = NextWake(WallNowMillis());
    changed_.wait_until(lock, wake_at, [&] { return wake_ || stopping_.load(); });
    wake_ = false;
  }
  loop_done_ = true;
  std::lock_guard<std::mutex> lock(mu_);
  changed_.notify_all();
}

// A cron takes part only while the run can take its prompt and the last one is not still
// waiting in the inbox (one queued prompt is enough). The same rule decides when to fire
// and when to wake, so a skipped cron never makes the agent spin.
bool AgentService::CronActive(const CronSpec& spec) const {
  const RunState& s = runner_->state();
  if (IsTerminal(s.phase) || s.phase == Phase::kPending) return false;
  if (!s.handoff_id.empty()) return false;  // exported: its schedules fire where it was imported
  for (const auto& m : s.inbox) {
    if (m.from == "cron:" + spec.name) return false;
  }
  return true;
}

std::chrono::steady_clock::time_point AgentService::NextWake(int64_t now_ms) const {
  const auto now = std::chrono::steady_clock::now();
  auto at = now + std::chrono::hours(1);
  if (auto next = runner_->NextTryAtMs()) {
    // A model call waiting out an outage, or a period budget: the runner's clock is RealClock.
    at = std::min(at, now + std::chrono::milliseconds(std::max<int64_t>(0, *next - RealClock()->NowMillis())));
  }
  if (run_.spec.schedule && run_.spec.schedule->heartbeat_seconds > 0) {
    at = std::min(at, now + std::chrono::seconds(run_.spec.schedule->heartbeat_seconds));
  }
  for (const auto& [spec, schedule] : crons_) {
    if (!CronActive(spec)) continue;
    if (auto next = schedule.Next(now_ms)) at = std::min(at, now + std::chrono::milliseconds(*next - now_ms));
  }
  return at;
}

int AgentService::FireDueCrons(int64_t now_ms) {
  int fired = 0;
  const RunState& s = runner_->state();
  for (const auto& [spec, schedule] : crons_) {
    if (!CronActive(spec)) continue;
    std::optional<Event> due = DueCronMessage(spec, schedule, s, now_ms);
    if (!due) continue;
    const Event& e = *due;
    auto store_lock = store_->WriteLockUnlessFull();  // the count and the event together (OnEvent decrements)
    auto seq = store_lock.ok() ? AppendExternalEvent(store_.get(), e) : Result<uint64_t>(store_lock.status());
    if (!seq.ok()) {
      log::Error("could not queue a scheduled prompt", {{"cron", spec.name}, {"error", seq.status().ToString()}});
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    ++unapplied_messages_;
    ++fired;
    log::Info("scheduled prompt queued", {{"cron", spec.name}, {"occurrences", e.data["occurrences"]}});
  }
  return fired;
}

bool AgentService::Shutdown(std::chrono::milliseconds grace) {
  stopping_ = true;
  Wake();
  {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait_for(lock, grace, [&] { return loop_done_.load(); });
  }
  const bool stopped = loop_done_;
  if (health_thread_.joinable()) health_thread_.join();
  worker::v1::RunStatus st = Snapshot();
  if (stopped) thread_.join();
  // A stop in the middle of a turn is recorded, so the restart is not taken for a crash.
  if (st.phase() == worker::v1::PHASE_RUNNING) {
    std::string what = stopped ? "stopped between actions of step " + std::to_string(st.step())
                       : !st.current_call_id().empty() ? "tool call " + st.current_call_id() + " (" + st.current_tool() + ")"
                                                       : "the model call of step " + std::to_string(st.step());
    Event e;
    e.type = event_type::kInterrupted;
    e.step = st.step();
    e.data = {{"what", what}, {"graceMs", grace.count()}, {"inTime", stopped}};
    (void)AppendExternalEvent(store_.get(), e);
    if (!stopped) log::Warn("shutdown grace ran out; the cut-off call resumes on restart", {{"interrupted", what}});
  }
  if (!stopped) thread_.detach();  // the process exits next; the call's thread goes with it
  (void)store_->Flush();
  return stopped;
}

void AgentService::SetNextTry(worker::v1::RunStatus* status) const {
  // Read on the agent thread only (OnEvent), where the runner is not running concurrently.
  if (status->waiting_for().empty()) return;
  if (auto next = runner_->NextTryAtMs()) {
    status->set_next_try_at_ms(WallNowMillis() + std::max<int64_t>(0, *next - RealClock()->NowMillis()));
  }
}

worker::v1::RunStatus AgentService::Snapshot() const {
  worker::v1::RunStatus s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s = status_;
    s.set_inbox_depth(s.inbox_depth() + unapplied_messages_);
  }
  if (auto full = store_->VolumeFull()) {
    // Whatever it was doing waits for room: the runner's next write, or a message refused.
    s.set_waiting_for("VolumeFull");
    s.set_waiting_detail(*full);
    s.set_next_try_at_ms(0);
  }
  return s;
}

int64_t AgentService::InboxDepth() const { return Snapshot().inbox_depth(); }

Status AgentService::CheckNotEnded(const char* what) const {
  worker::v1::RunStatus s = Snapshot();
  if (s.phase() == worker::v1::PHASE_SUCCEEDED || s.phase() == worker::v1::PHASE_FAILED ||
      s.phase() == worker::v1::PHASE_BUDGET_EXHAUSTED || s.phase() == worker::v1::PHASE_CANCELLED) {
    return FailedPrecondition(std::string("cannot ") + what + ": the run has ended (" + s.reason() + ")");
  }
  return Status::Ok();
}

Result<uint64_t> AgentService::SendMessage(const std::string& text, const std::string& from) {
  if (text.empty()) return InvalidArgument("text is empty");
  if (text.size() > kMaxMessageBytes) {
    return InvalidArgument("text is " + std::to_string(text.size()) + " bytes; at most " + std::to_string(kMaxMessageBytes));
  }
  if (!IsValidUtf8(text)) return InvalidArgument("text is not valid UTF-8");
  if (from.size() > 256 || !IsValidUtf8(from)) return InvalidArgument("from must be valid UTF-8, at most 256 bytes");
  if (from.rfind("cron:", 0) == 0) return InvalidArgument("from: the prefix \"cron:\" is reserved for scheduled prompts");
  CARAPACE_RETURN_IF_ERROR(CheckNotEnded("take a message"));
  if (InboxDepth() >= kMaxInbox) {
    return ResourceExhausted("the inbox holds " + std::to_string(kMaxInbox) + " messages; try again when the agent has caught up");
  }
  Event e;
  e.type = event_type::kMessageReceived;
  e.data = {{"text", text}, {"from", from.empty() ? "api" : from}};
  // The count and the event together (OnEvent decrements).
  CARAPACE_ASSIGN_OR_RETURN(auto store_lock, store_->WriteLockUnlessFull());
  CARAPACE_ASSIGN_OR_RETURN(uint64_t seq, AppendExternalEvent(store_.get(), e));
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++unapplied_messages_;
    wake_ = true;
    changed_.notify_all();
  }
  return seq;
}

Status AgentService::Decide(const std::string& call_id, bool approve, const std::string& by) {
  if (call_id.empty()) return InvalidArgument("call_id is empty");
  if (call_id.size() > 256 || !IsValidUtf8(call_id)) return InvalidArgument("call_id must be valid UTF-8, at most 256 bytes");
  if (by.size() > 256 || !IsValidUtf8(by)) return InvalidArgument("by must be valid UTF-8, at most 256 bytes");
  CARAPACE_RETURN_IF_ERROR(SettleWaitingCall(store_.get(), call_id, approve, by.empty() ? "api" : by));
  const uint64_t seq = store_->last_seq();
  Wake();
  WaitApplied(seq, std::chrono::seconds(1));
  return Status::Ok();
}

static Result<uint64_t> AppendControl(RunStore* store, const char* type, nlohmann::json data = nlohmann::json::object()) {
  Event e;
  e.type = type;
  e.data = std::move(data);
  return AppendExternalEvent(store, e);
}

Status AgentService::Control(const char* what, const char* type, nlohmann::json data, std::chrono::milliseconds wait) {
  CARAPACE_RETURN_IF_ERROR(CheckNotEnded(what));
  CARAPACE_ASSIGN_OR_RETURN(uint64_t seq, AppendControl(store_.get(), type, std::move(data)));
  Wake();
  WaitApplied(seq, wait);
  return Status::Ok();
}

Status AgentService::Pause() { return Control("pause", event_type::kPauseRequested); }

Status AgentService::Resume() { return Control("resume", event_type::kResumeRequested); }

Status AgentService::Compact() {
  // The summary is a model call: up to a few seconds for the reply to show it done.
  return Control("compact", event_type::kCompactionRequested, {{"by", "api"}}, std::chrono::seconds(10));
}

Result<BackupInfo> AgentService::Backup(const std::string& requested) {
  std::string name = requested;
  if (name.empty()) {
    // The time, as 20261205t101500z.
    for (char c : FormatRfc3339Millis(WallNowMillis()).substr(0, 19)) {
      if (c != '-' && c != ':') name.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
    name += "z";
  }
  if (!IsValidUtf8(name)) return InvalidArgument("name must be valid UTF-8");
  CARAPACE_RETURN_IF_ERROR(ValidateBackupName(name));
  const std::string dir = BackupDirFor(store_->state_dir(), name);
  std::error_code ec;
  if (std::filesystem::exists(dir, ec)) return FailedPrecondition("a backup named " + name + " exists already (" + dir + ")");
  auto made = BackupRun(*store_, dir);
  if (made.ok()) {
    log::Info("backup made", {{"path", dir}, {"lastSeq", made->last_seq}, {"bytes", made->bytes},
                              {"durationMs", made->duration_ms}});
  }
  return made;
}

Result<ExportedArchive> AgentService::Export(const std::string& by, std::chrono::milliseconds wait) {
  if (by.size() > 256 || !IsValidUtf8(by)) return InvalidArgument("by must be valid UTF-8, at most 256 bytes");
  // One export at a time: a second waits and exports the same hand-off.
  std::lock_guard<std::mutex> exporting(export_mu_);
  CARAPACE_ASSIGN_OR_RETURN(std::string id, RecordHandOff(store_.get(), handoff_id_, by.empty() ? "api" : by));
  if (handoff_id_.empty()) log::Info("handed off: this agent takes no new work", {{"handoffId", id}});
  handoff_id_ = id;
  // The runner finishes the action in progress and stops at the fence; only then is the
  // copy the whole agent.
  const uint64_t seq = store_->last_seq();
  Wake();
  WaitApplied(seq, wait);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (in_run_ || status_.last_event_seq() < seq) {
      return Unavailable("the hand-off is recorded (export " + id +
                         "): the agent takes no new work and is finishing the action in progress" +
                         (status_.current_tool().empty() ? std::string() : " (" + status_.current_tool() + ")") +
                         "; run export again in a moment to fetch the archive");
    }
  }
  const std::string dir = (std::filesystem::path(store_->state_dir()).parent_path() / "exports").string();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return IoError("creating " + dir + ": " + ec.message());
  // Archives are made for one call each; any here were left by a worker killed while it sent
  // one (a stream still sending holds its file open, and goes on after the name is gone).
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::filesystem::remove(it->path(), ec);
  }
  ExportedArchive out;
  const std::string path = dir + "/" + id + "-" + std::to_string(WallNowMillis()) + ".carapace";
  const int64_t started = MonoNowMillis();
  CARAPACE_ASSIGN_OR_RETURN(out.manifest,
                            ExportRun(*store_, identity_.ns + "/" + identity_.name + " on " + HostName(), path));
  out.duration_ms = MonoNowMillis() - started;
  out.archive = std::make_unique<std::ifstream>(path, std::ios::binary);
  out.bytes = std::filesystem::file_size(path, ec);
  std::filesystem::remove(path, ec);
  if (!*out.archive || out.bytes == 0) return IoError("cannot read the archive just made at " + path);
  ++*archives_sending_;
  out.sending = std::shared_ptr<void>(nullptr, [sending = archives_sending_](void*) { --*sending; });
  log::Info("exported", {{"handoffId", id}, {"lastSeq", out.manifest.last_seq}, {"bytes", out.bytes},
                         {"durationMs", out.duration_ms}});
  return out;
}

Status AgentService::TakeBack(const std::string& by) {
  if (by.size() > 256 || !IsValidUtf8(by)) return InvalidArgument("by must be valid UTF-8, at most 256 bytes");
  std::lock_guard<std::mutex> exporting(export_mu_);
  if (*archives_sending_ > 0) {
    return FailedPrecondition("an archive of this hand-off is being sent; take the export back once that has ended, "
                              "and never import that archive");
  }
  CARAPACE_RETURN_IF_ERROR(RevokeHandOff(store_.get(), handoff_id_, by.empty() ? "api" : by));
  log::Warn("an export was taken back: this copy goes on; its archive must never be imported", {{"handoffId", handoff_id_}});
  handoff_id_.clear();
  const uint64_t seq = store_->last_seq();
  Wake();
  WaitApplied(seq, std::chrono::seconds(1));
  return Status::Ok();
}

Status AgentService::Cancel(const std::string& reason) {
  if (!IsValidUtf8(reason) || reason.size() > 1024) return InvalidArgument("reason must be valid UTF-8, at most 1024 bytes");
  return Control("cancel", event_type::kCancelRequested, {{"reason", reason}});
}

void AgentService::WaitApplied(uint64_t seq, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  // Applied, and the runner's pass that applied it is over: what it changed (a resume's new
  // phase, a pause) is in the status too. A pass that goes on working (a resumed turn) ends
  // the wait at `timeout`, with the status as it is by then.
  changed_.wait_for(lock, timeout, [&] { return (status_.last_event_seq() >= seq && !in_run_) || loop_done_.load(); });
}

void AgentService::WaitForEventAfter(uint64_t seq, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait_for(lock, timeout, [&] { return store_->last_seq() > seq || stopping_.load(); });
}

bool AgentService::Ready(std::string* why) const {
  if (auto full = store_->VolumeFull()) {
    *why = *full;
    return false;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (loop_failed_) {
    *why = "the store failed: " + loop_error_;
    return false;
  }
  if (status_.phase() == worker::v1::PHASE_DEGRADED && status_.degraded_cause() == "crash_loop") {
    *why = "crash loop: " + status_.reason();
    return false;
  }
  if (stopping_) {
    *why = "shutting down";
    return false;
  }
  return true;
}

Status AgentService::ModelHealth() const {
  std::lock_guard<std::mutex> lock(health_mu_);
  return health_;
}

}  // namespace carapace
