// The long-lived agent: its thread, inbox, schedules, controls and status.
#include "worker/server/agent_service.h"

#include "common/json_text.h"
#include "common/log.h"
#include "common/time.h"
#include "worker/cli/status_view.h"

namespace carapace {

namespace {
constexpr size_t kMaxMessageBytes = 64 * 1024;
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
  options.on_checkpoint_written = [self](double seconds) {
    if (self->metrics_) self->metrics_->OnCheckpointWritten(seconds);
  };
  CARAPACE_ASSIGN_OR_RETURN(s->runner_, Runner::Create(s->store_.get(), run, s->models_, s->tools_, options));
  CARAPACE_ASSIGN_OR_RETURN(auto identity, LoadRunIdentity(*s->store_));
  if (identity) s->identity_ = *identity;
  s->status_ = BuildRunStatus(s->identity_, s->runner_->state());
  if (s->metrics_) s->metrics_->OnEvent(Event{}, s->runner_->state());  // the phase and budgets as stored
  // Messages stored but not yet taken count in the inbox from the start.
  return s;
}

AgentService::~AgentService() {
  if (thread_.joinable()) {
    stopping_ = true;
    Wake();
    thread_.join();
  }
}

void AgentService::Start() { thread_ = std::thread([this] { Loop(); }); }

void AgentService::OnEvent(const Event& e, const RunState& state) {
  if (metrics_) metrics_->OnEvent(e, state);
  std::lock_guard<std::mutex> lock(mu_);
  if (e.type == event_type::kMessageReceived && unapplied_messages_ > 0) --unapplied_messages_;
  if (identity_.run_id.empty() && !state.run_id.empty()) {
    if (auto id = LoadRunIdentity(*store_); id.ok() && *id) identity_ = **id;
  }
  status_ = BuildRunStatus(identity_, state);
  if (metrics_) metrics_->SetInboxDepth(status_.inbox_depth() + unapplied_messages_);
  changed_.notify_all();
}

void AgentService::Wake() {
  std::lock_guard<std::mutex> lock(mu_);
  wake_ = true;
  changed_.notify_all();
}

void AgentService::Loop() {
  while (!stopping_) {
    FireDueCrons(WallNowMillis());
    auto phase = runner_->Run();
    if (!phase.ok()) {
      // The store failed (I/O, corruption): nothing more can be recorded safely.
      log::Error("the agent stopped: the store failed", {{"error", phase.status().ToString()}});
      std::lock_guard<std::mutex> lock(mu_);
      loop_failed_ = true;
      loop_error_ = phase.status().ToString();
      break;
    }
    if (IsTerminal(*phase)) log::Info("the run ended", {{"phase", PhaseName(*phase)}, {"reason", runner_->state().reason}});
    std::unique_lock<std::mutex> lock(mu_);
    const auto wake_at = NextWake(WallNowMillis());
    changed_.wait_until(lock, wake_at, [&] { return wake_ || stopping_.load(); });
    wake_ = false;
  }
  loop_done_ = true;
  std::lock_guard<std::mutex> lock(mu_);
  changed_.notify_all();
}

std::chrono::steady_clock::time_point AgentService::NextWake(int64_t now_ms) const {
  auto at = std::chrono::steady_clock::now() + std::chrono::hours(1);
  if (run_.spec.schedule && run_.spec.schedule->heartbeat_seconds > 0) {
    at = std::min(at, std::chrono::steady_clock::now() + std::chrono::seconds(run_.spec.schedule->heartbeat_seconds));
  }
  const RunState& s = runner_->state();
  for (const auto& [spec, schedule] : crons_) {
    auto it = s.cron_fired_ms.find(spec.name);
    const int64_t from = std::max(it != s.cron_fired_ms.end() ? it->second : s.started_ms, now_ms - 60000);
    if (auto next = schedule.Next(from)) {
      at = std::min(at, std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max<int64_t>(0, *next - now_ms)));
    }
  }
  return at;
}

void AgentService::FireDueCrons(int64_t now_ms) {
  const RunState& s = runner_->state();
  if (IsTerminal(s.phase) || s.phase == Phase::kPending || crons_.empty()) return;
  for (const auto& [spec, schedule] : crons_) {
    const std::string from = "cron:" + spec.name;
    bool queued = false;
    for (const auto& m : s.inbox) queued = queued || m.from == from;
    if (queued) continue;  // its prompt still waits: one is enough
    auto it = s.cron_fired_ms.find(spec.name);
    int64_t last = it != s.cron_fired_ms.end() ? it->second : s.started_ms;
    int64_t due = 0, missed = 0;
    for (auto next = schedule.Next(last); next && *next <= now_ms && missed < 100000; next = schedule.Next(*next)) {
      due = *next;
      ++missed;
    }
    if (missed == 0) continue;
    // Occurrences missed while the worker was down come as one message, not one each.
    Event e;
    e.type = event_type::kMessageReceived;
    e.step = s.step;
    e.data = {{"text", spec.prompt}, {"from", from}, {"cron", spec.name}, {"scheduledForMs", due}, {"occurrences", missed}};
    auto seq = AppendExternalEvent(store_.get(), e);
    if (!seq.ok()) {
      log::Error("could not queue a scheduled prompt", {{"cron", spec.name}, {"error", seq.status().ToString()}});
      continue;
    }
    log::Info("scheduled prompt queued", {{"cron", spec.name}, {"occurrences", missed}});
    std::lock_guard<std::mutex> lock(mu_);
    ++unapplied_messages_;
  }
}

bool AgentService::Shutdown(std::chrono::milliseconds grace) {
  stopping_ = true;
  Wake();
  {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait_for(lock, grace, [&] { return loop_done_.load(); });
  }
  const bool stopped = loop_done_;
  if (stopped) {
    thread_.join();
  } else {
    worker::v1::RunStatus st = Snapshot();
    std::string what = !st.current_call_id().empty() ? "tool call " + st.current_call_id() + " (" + st.current_tool() + ")"
                                                      : "the model call of step " + std::to_string(st.step());
    Event e;
    e.type = event_type::kInterrupted;
    e.step = st.step();
    e.data = {{"what", what}, {"graceMs", grace.count()}};
    (void)AppendExternalEvent(store_.get(), e);
    log::Warn("shutdown grace ran out; the cut-off call resumes on restart", {{"interrupted", what}});
    thread_.detach();  // the process exits next; the call's thread goes with it
  }
  (void)store_->Flush();
  return stopped;
}

worker::v1::RunStatus AgentService::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  worker::v1::RunStatus s = status_;
  s.set_inbox_depth(s.inbox_depth() + unapplied_messages_);
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
  CARAPACE_RETURN_IF_ERROR(CheckNotEnded("take a message"));
  Event e;
  e.type = event_type::kMessageReceived;
  e.data = {{"text", text}, {"from", from.empty() ? "api" : from}};
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

Status AgentService::Control(const char* what, const char* type, nlohmann::json data) {
  CARAPACE_RETURN_IF_ERROR(CheckNotEnded(what));
  CARAPACE_ASSIGN_OR_RETURN(uint64_t seq, AppendControl(store_.get(), type, std::move(data)));
  Wake();
  WaitApplied(seq, std::chrono::seconds(1));
  return Status::Ok();
}

Status AgentService::Pause() { return Control("pause", event_type::kPauseRequested); }

Status AgentService::Resume() { return Control("resume", event_type::kResumeRequested); }

Status AgentService::Cancel(const std::string& reason) {
  if (!IsValidUtf8(reason) || reason.size() > 1024) return InvalidArgument("reason must be valid UTF-8, at most 1024 bytes");
  return Control("cancel", event_type::kCancelRequested, {{"reason", reason}});
}

void AgentService::WaitApplied(uint64_t seq, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait_for(lock, timeout, [&] { return status_.last_event_seq() >= seq || loop_done_.load(); });
}

void AgentService::WaitForEventAfter(uint64_t seq, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait_for(lock, timeout, [&] { return store_->last_seq() > seq || stopping_.load(); });
}

bool AgentService::Ready(std::string* why) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (loop_failed_) {
    *why = "the store failed: " + loop_error_;
    return false;
  }
  if (status_.phase() == worker::v1::PHASE_DEGRADED) {
    *why = "crash loop: " + status_.reason();
    return false;
  }
  if (stopping_) {
    *why = "shutting down";
    return false;
  }
  return true;
}

Status AgentService::ModelHealth() {
  std::lock_guard<std::mutex> lock(health_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (now - health_at_ > std::chrono::seconds(10)) {
    health_ = runner_->model().CheckHealth();
    health_at_ = now;
  }
  return health_;
}

}  // namespace carapace
