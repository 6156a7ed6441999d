// The runner as the long-lived worker drives it: turns from the inbox, Idle between them,
// pause and resume from Idle, cancel, and events appended by others folded in before a
// checkpoint (so a restart never loses them).
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <filesystem>

#include "tests/support/child_process.h"
#include "worker/runtime/run_loader.h"
#include "worker/runtime/runner.h"

using namespace carapace;
using carapace::testing::TempDir;

namespace {

AgentRun Run(std::vector<std::string> replies) {
  AgentRun run;
  run.metadata.name = "svc";
  run.spec.goal = "start";
  run.spec.model.backend = "scripted";
  for (auto& r : replies) run.spec.model.script.push_back({r, {}});
  return run;
}

// A run with a workspace tool named notes and the given script.
AgentRun WithNotes(std::vector<ScriptedReply> script, bool require_approval = false) {
  AgentRun run = Run({});
  ToolSpec notes;
  notes.name = "notes";
  notes.kind = "workspace";
  notes.require_approval = require_approval;
  run.spec.tools = {notes};
  run.spec.model.script = std::move(script);
  return run;
}

Result<uint64_t> SendTo(RunStore* store, const std::string& text) {
  Event e;
  e.type = event_type::kMessageReceived;
  e.data = {{"text", text}, {"from", "test"}};
  return AppendExternalEvent(store, e);
}

Result<uint64_t> Control(RunStore* store, const char* type) {
  Event e;
  e.type = type;
  return AppendExternalEvent(store, e);
}

struct Persistent {
  explicit Persistent(const std::string& dir, AgentRun run) {
    RegisterBuiltinModels(&models);
    RegisterBuiltinTools(&tools);
    store = std::move(RunStore::Open(dir, RunStore::OpenMode::kCreateIfMissing)).value();
    RunnerOptions o;
    o.persistent = true;
    runner = std::move(Runner::Create(store.get(), run, models, tools, o)).value();
  }
  ModelRegistry models;
  ToolRegistry tools;
  std::unique_ptr<RunStore> store;
  std::unique_ptr<Runner> runner;
};

}  // namespace

TEST_CASE("persistent: each inbox message is a turn; between turns the run is Idle", "[runtime][worker]") {
  TempDir dir;
  Persistent p(dir.Sub("s"), Run({"ready", "one", "two"}));
  auto phase = p.runner->Run();
  REQUIRE(phase.ok());
  CHECK(*phase == Phase::kIdle);
  CHECK(p.runner->state().result == "ready");
  CHECK(*p.runner->Run() == Phase::kIdle);  // nothing new: no model call
  CHECK(p.runner->state().step == 1);
  REQUIRE(SendTo(p.store.get(), "first").ok());
  REQUIRE(SendTo(p.store.get(), "second").ok());
  CHECK(*p.runner->Run() == Phase::kIdle);
  const RunState& s = p.runner->state();
  CHECK(s.turns == 3);
  CHECK(s.step == 3);
  CHECK(s.inbox.empty());
  CHECK(s.result == "two");
  CHECK(s.messages[s.messages.size() - 2].content == "second");
}

TEST_CASE("persistent: pausing an idle run and resuming it leaves it idle, with queued messages kept", "[runtime][worker]") {
  TempDir dir;
  Persistent p(dir.Sub("s"), Run({"ready", "later"}));
  REQUIRE(*p.runner->Run() == Phase::kIdle);
  REQUIRE(Control(p.store.get(), event_type::kPauseRequested).ok());
  REQUIRE(SendTo(p.store.get(), "while paused").ok());
  CHECK(*p.runner->Run() == Phase::kPaused);
  CHECK(p.runner->state().inbox.size() == 1);
  CHECK(p.runner->state().step == 1);
  REQUIRE(Control(p.store.get(), event_type::kResumeRequested).ok());
  CHECK(*p.runner->Run() == Phase::kIdle);
  CHECK(p.runner->state().result == "later");
  REQUIRE(Control(p.store.get(), event_type::kPauseRequested).ok());
  REQUIRE(Control(p.store.get(), event_type::kResumeRequested).ok());
  CHECK(*p.runner->Run() == Phase::kIdle);
  CHECK(p.runner->state().step == 2);  // resumed to Idle, not into a step with nothing to do
}

TEST_CASE("persistent: cancel ends the run; what others appended survives a restart", "[runtime][worker]") {
  TempDir dir;
  {
    Persistent p(dir.Sub("s"), Run({"ready", "one"}));
    REQUIRE(*p.runner->Run() == Phase::kIdle);
    REQUIRE(SendTo(p.store.get(), "queued, then the worker stops").ok());
  }
  {
    // Loaded from the checkpoint plus the tail: the message is in the inbox and is taken.
    Persistent p(dir.Sub("s"), Run({"ready", "one"}));
    CHECK(p.runner->state().inbox.size() == 1);
    CHECK(*p.runner->Run() == Phase::kIdle);
    CHECK(p.runner->state().result == "one");
    REQUIRE(Control(p.store.get(), event_type::kCancelRequested).ok());
    CHECK(*p.runner->Run() == Phase::kCancelled);
    CHECK(IsTerminal(Phase::kCancelled));
  }
  Persistent p(dir.Sub("s"), Run({"ready", "one"}));
  CHECK(p.runner->state().phase == Phase::kCancelled);
  CHECK(p.runner->state().turns == 2);
}

TEST_CASE("persistent: a call waiting for approval can be settled while paused, and resume carries on", "[runtime][worker]") {
  TempDir dir;
  AgentRun run = WithNotes({{"", {{"notes", {{"op", "write"}, {"path", "a.txt"}, {"content", "x"}}}}}, {"written", {}}},
                           /*require_approval=*/true);
  Persistent p(dir.Sub("s"), run);
  REQUIRE(*p.runner->Run() == Phase::kWaitingForApproval);
  REQUIRE(Control(p.store.get(), event_type::kPauseRequested).ok());
  REQUIRE(*p.runner->Run() == Phase::kPaused);
  REQUIRE(SettleWaitingCall(p.store.get(), "s1c0", true, "test").ok());  // while paused
  REQUIRE(Control(p.store.get(), event_type::kResumeRequested).ok());
  CHECK(*p.runner->Run() == Phase::kIdle);
  CHECK(p.runner->state().result == "written");

  // Paused while waiting, resumed without a decision: it waits again, and can be approved.
  TempDir dir2;
  Persistent q(dir2.Sub("s"), run);
  REQUIRE(*q.runner->Run() == Phase::kWaitingForApproval);
  REQUIRE(Control(q.store.get(), event_type::kPauseRequested).ok());
  REQUIRE(*q.runner->Run() == Phase::kPaused);
  REQUIRE(Control(q.store.get(), event_type::kResumeRequested).ok());
  REQUIRE(*q.runner->Run() == Phase::kWaitingForApproval);
  CHECK(q.runner->state().phase == Phase::kWaitingForApproval);
  REQUIRE(SettleWaitingCall(q.store.get(), "s1c0", true, "test").ok());
  CHECK(*q.runner->Run() == Phase::kIdle);
}

TEST_CASE("calls after finish in the same reply are answered, not run", "[runtime][worker]") {
  TempDir dir;
  AgentRun run =
      WithNotes({{"", {{"finish", {{"result", "all done"}}}, {"notes", {{"op", "write"}, {"path", "late.txt"}, {"content", "x"}}}}}});
  Persistent p(dir.Sub("s"), run);
  CHECK(*p.runner->Run() == Phase::kIdle);
  CHECK(p.runner->state().result == "all done");
  CHECK_FALSE(std::filesystem::exists(dir.Sub("s") + "/workspace/late.txt"));
  const auto& calls = p.runner->state().calls;
  REQUIRE(calls.size() == 2);
  CHECK(calls[1].status == CallStatus::kDone);
  CHECK(p.runner->state().messages.back().content.find("not run: the agent called finish first") != std::string::npos);
}

TEST_CASE("a stray Resume of a run that is not held leaves the crash-loop count alone", "[runtime][worker]") {
  RunState s;
  auto apply = [&](const char* type, int64_t step, nlohmann::json data = nlohmann::json::object()) {
    Event e;
    e.seq = s.last_seq + 1;
    e.type = type;
    e.step = step;
    e.ts_ms = 1000 * static_cast<int64_t>(e.seq);
    e.data = std::move(data);
    REQUIRE(Apply(&s, e).ok());
  };
  apply(event_type::kRunStarted, 0, {{"runId", "r"}, {"goal", "g"}});
  apply(event_type::kRecovered, 1);
  apply(event_type::kRecovered, 1);
  apply(event_type::kResumeRequested, 1);
  CHECK(s.recoveries.size() == 2);  // Running: nothing was held, so nothing is forgiven
  apply(event_type::kPhaseChanged, 1, {{"phase", "Degraded"}, {"reason", "crash loop"}});
  CHECK(s.degraded_hold);
  CHECK(s.degraded_cause == "crash_loop");
  apply(event_type::kResumeRequested, 1);
  CHECK(s.recoveries.empty());
  CHECK_FALSE(s.degraded_hold);
}
