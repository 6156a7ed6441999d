// The agent loop and durable execution: budgets, loop detection, approvals, and resuming
// after a crash at each point of a step. A "crash" here is an exception thrown out of a
// tool call, which unwinds the runner exactly where a kill -9 would stop it; the real
// kill -9 test is tests/integration/crash_test.cc.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <map>
#include <stdexcept>
#include <set>

#include "common/redact.h"
#include "tests/support/child_process.h"
#include "tests/support/fake_clock.h"
#include "tests/support/ledger_server.h"
#include "worker/runtime/run_loader.h"
#include "worker/runtime/runner.h"

using namespace carapace;
using carapace::testing::FakeClock;
using carapace::testing::TempDir;
using Catch::Matchers::ContainsSubstring;
using nlohmann::json;

namespace {

struct SimulatedCrash {};

// What the outside world saw: every call that reached the probe, by idempotency key.
struct World {
  std::vector<std::pair<std::string, std::string>> calls;  // (call id, idempotency key)
  std::string crash_after_effect_of;                       // call id: crash after the effect happened
  std::string crash_before_effect_of;                       // call id: crash before it happened
  std::string throw_on;                                     // call id: the tool throws (a tool bug)
  std::string garbage_on;                                   // call id: the tool answers with invalid UTF-8
  std::string big_on;                                       // call id: the tool answers with 100 KB
  FakeClock* clock = nullptr;
  int64_t advance_ms = 0;
  int count(const std::string& call_id) const {
    int n = 0;
    for (const auto& c : calls) n += c.first == call_id;
    return n;
  }
};

class ProbeTool : public Tool {
 public:
  ProbeTool(std::string name, World* world) : name_(std::move(name)), world_(world) {}
  ToolSchema Schema() const override { return {name_, "probe", {{"type", "object"}}}; }
  Effect DefaultEffect() const override { return Effect::kIdempotent; }
  ToolResult Call(const json& args, const ToolContext& ctx) override {
    if (ctx.call_id == world_->crash_before_effect_of) {
      world_->crash_before_effect_of.clear();
      throw SimulatedCrash{};
    }
    world_->calls.emplace_back(ctx.call_id, ctx.idempotency_key);
    if (ctx.call_id == world_->throw_on) throw std::runtime_error("probe exploded");
    if (ctx.call_id == world_->big_on) return ToolResult::Ok({{"text", std::string(100000, 'x')}});
    if (ctx.call_id == world_->garbage_on) return ToolResult::Ok({{"text", std::string("caf\xe9 \xff")}});
    if (world_->clock) world_->clock->now += world_->advance_ms;
    if (ctx.call_id == world_->crash_after_effect_of) {
      world_->crash_after_effect_of.clear();
      throw SimulatedCrash{};
    }
    return ToolResult::Ok({{"echo", args}});
  }

 private:
  std::string name_;
  World* world_;
};

ToolCallSpec Call(const std::string& name, json args = json::object()) { return {name, std::move(args)}; }

AgentRun MakeRun(std::vector<ScriptedReply> script, std::vector<ToolSpec> tools = {}) {
  AgentRun run;
  run.metadata.name = "test";
  run.spec.goal = "test the runtime";
  run.spec.instructions = "be careful";
  run.spec.model.backend = "scripted";
  run.spec.model.script = std::move(script);
  if (tools.empty()) {
    ToolSpec probe;
    probe.name = "probe";
    probe.kind = "probe";
    tools.push_back(probe);
  }
  run.spec.tools = std::move(tools);
  return run;
}

ToolSpec ProbeSpec(const std::string& name, std::optional<Effect> effect = std::nullopt, bool approval = false) {
  ToolSpec t;
  t.name = name;
  t.kind = "probe";
  t.effect = effect;
  t.require_approval = approval;
  return t;
}

class Harness {
 public:
  explicit Harness(AgentRun run) : run_(std::move(run)) {
    RegisterBuiltinModels(&models_);
    RegisterBuiltinTools(&tools_);
    tools_.Register("probe", [this](const ToolSpec& spec, const ToolEnvironment&) -> Result<std::unique_ptr<Tool>> {
      return std::unique_ptr<Tool>(new ProbeTool(spec.name, &world));
    });
  }

  // Opens the store, runs until the run stops or "crashes", closes the store.
  Result<Phase> RunOnce(const std::string& dir, bool* crashed = nullptr) {
    auto store = RunStore::Open(dir, RunStore::OpenMode::kCreateIfMissing);
    if (!store.ok()) return store.status();
    RunnerOptions options;
    if (world.clock) options.clock = world.clock;
    auto runner = Runner::Create(store->get(), run_, models_, tools_, options);
    if (!runner.ok()) return runner.status();
    try {
      auto phase = (*runner)->Run();
      if (crashed) *crashed = false;
      return phase;
    } catch (const SimulatedCrash&) {
      if (crashed) *crashed = true;
      return Phase::kRunning;
    }
  }

  World world;
  AgentRun run_;
  ModelRegistry models_;
  ToolRegistry tools_;
};

RunState Load(const std::string& dir) {
  auto store = RunStore::Open(dir, RunStore::OpenMode::kMustExist);
  REQUIRE(store.ok());
  auto state = LoadRunState(**store);
  REQUIRE(state.ok());
  return *state;
}

std::vector<Event> Events(const std::string& dir) {
  auto store = RunStore::Open(dir, RunStore::OpenMode::kMustExist);
  REQUIRE(store.ok());
  auto events = ReadAllEvents(**store);
  REQUIRE(events.ok());
  return *events;
}

int CountType(const std::vector<Event>& events, const std::string& type) {
  int n = 0;
  for (const auto& e : events) n += e.type == type;
  return n;
}

Status Settle(const std::string& dir, const std::string& call, bool approve) {
  auto store = RunStore::Open(dir, RunStore::OpenMode::kMustExist);
  REQUIRE(store.ok());
  return SettleWaitingCall(store->get(), call, approve, "test");
}

}  // namespace

TEST_CASE("a run calls tools step by step and succeeds when the model answers without tools", "[runtime]") {
  TempDir tmp;
  Harness h(MakeRun({{"", {Call("probe", {{"n", 1}})}}, {"", {Call("probe", {{"n", 2}}), Call("probe", {{"n", 3}})}}, {"done", {}}}));
  auto phase = h.RunOnce(tmp.path());
  REQUIRE(phase.ok());
  CHECK(*phase == Phase::kSucceeded);
  CHECK(h.world.calls.size() == 3);
  RunState s = Load(tmp.path());
  CHECK(s.phase == Phase::kSucceeded);
  CHECK(s.result == "done");
  CHECK(s.used.steps == 3);
  CHECK(s.used.tool_calls == 3);
  CHECK(s.used.tokens > 0);
  // system, user, then per step an assistant message and one tool message per call, then the answer
  REQUIRE(s.messages.size() == 2 + 2 + 3 + 1);
  // The instructions (message 0) stay in the transcript, not in memory: the prompt carries
  // the spec revision's own.
  CHECK(s.first_turn_message == 1);
  CHECK(s.messages.base() == 1);
  CHECK(s.messages[1].content == "test the runtime");
  CHECK(s.messages[3].role == "tool");
  CHECK(s.messages[3].tool_call_id == "s1c0");
  // Tool output reaches the model marked as a tool result, as data.
  CHECK(json::parse(s.messages[3].content)["tool_result"] == "ok");
  CHECK(json::parse(s.messages[3].content)["output"]["echo"]["n"] == 1);
}

TEST_CASE("each call gets a distinct idempotency key derived from run, step and index", "[runtime]") {
  TempDir tmp;
  Harness h(MakeRun({{"", {Call("probe"), Call("probe", {{"x", 1}})}}, {"", {Call("probe", {{"y", 1}})}}, {"ok", {}}}));
  REQUIRE(h.RunOnce(tmp.path()).ok());
  REQUIRE(h.world.calls.size() == 3);
  CHECK(h.world.calls[0].second != h.world.calls[1].second);
  CHECK(h.world.calls[1].second != h.world.calls[2].second);
  CHECK(h.world.calls[0].second.size() == 32);
}

TEST_CASE("a state reloaded from the store equals the live state", "[runtime][recovery]") {
  TempDir tmp;
  Harness h(MakeRun({{"a", {Call("probe", {{"n", 1}})}}, {"b", {Call("probe", {{"n", 2}})}}, {"done", {}}}));
  auto store = RunStore::Open(tmp.path(), RunStore::OpenMode::kCreateIfMissing);
  REQUIRE(store.ok());
  auto runner = Runner::Create(store->get(), h.run_, h.models_, h.tools_);
  REQUIRE(runner.ok());
  REQUIRE((*runner)->Run().ok());
  auto reloaded = LoadRunState(**store);
  REQUIRE(reloaded.ok());
  CHECK(reloaded->ToCheckpointJson() == (*runner)->state().ToCheckpointJson());
  REQUIRE(reloaded->messages.size() == (*runner)->state().messages.size());
  REQUIRE(reloaded->messages.base() == (*runner)->state().messages.base());
  for (int64_t i = reloaded->messages.base(); i < reloaded->messages.size(); ++i) {
    CHECK(ToJson(reloaded->messages[i]) == ToJson((*runner)->state().messages[i]));
  }
}

TEST_CASE("budgets are checked before every model call and stop spending", "[runtime][budget]") {
  TempDir tmp;
  std::vector<ScriptedReply> script(10, ScriptedReply{"", {Call("probe")}});
  for (size_t i = 0; i < script.size(); ++i) script[i].tool_calls[0].arguments = {{"i", i}};

  SECTION("maxSteps") {
    AgentRun run = MakeRun(script);
    run.spec.budget.max_steps = 3;
    Harness h(run);
    auto phase = h.RunOnce(tmp.path());
    REQUIRE(phase.ok());
    CHECK(*phase == Phase::kBudgetExhausted);
    RunState s = Load(tmp.path());
    CHECK(s.reason == "maxSteps (3) reached");
    CHECK(s.used.steps == 3);
    CHECK(CountType(Events(tmp.path()), event_type::kModelRequest) == 3);
  }
  SECTION("maxTokens") {
    AgentRun run = MakeRun(script);
    run.spec.budget.max_tokens = 30;
    Harness h(run);
    REQUIRE(*h.RunOnce(tmp.path()) == Phase::kBudgetExhausted);
    RunState s = Load(tmp.path());
    CHECK_THAT(s.reason, ContainsSubstring("maxTokens (30) reached"));
    CHECK(s.used.steps < 10);
  }
  SECTION("maxToolCalls") {
    AgentRun run = MakeRun(script);
    run.spec.budget.max_tool_calls = 2;
    Harness h(run);
    REQUIRE(*h.RunOnce(tmp.path()) == Phase::kBudgetExhausted);
    CHECK(Load(tmp.path()).reason == "maxToolCalls (2) reached");
    CHECK(h.world.calls.size() == 2);
  }
  SECTION("maxWallClockSeconds, counted across restarts") {
    AgentRun run = MakeRun(script);
    run.spec.budget.max_wall_clock_seconds = 5;
    Harness h(run);
    FakeClock clock;
    h.world.clock = &clock;
    h.world.advance_ms = 2000;  // each tool call takes 2 s
    h.world.crash_after_effect_of = "s2c0";
    bool crashed = false;
    REQUIRE(h.RunOnce(tmp.path(), &crashed).ok());
    REQUIRE(crashed);
    REQUIRE(*h.RunOnce(tmp.path()) == Phase::kBudgetExhausted);
    RunState s = Load(tmp.path());
    CHECK(s.reason == "maxWallClockSeconds (5) reached");
    CHECK(s.used.wall_ms >= 5000);
  }
  SECTION("the exhausted budget is recorded in the log") {
    AgentRun run = MakeRun(script);
    run.spec.budget.max_steps = 1;
    Harness h(run);
    REQUIRE(*h.RunOnce(tmp.path()) == Phase::kBudgetExhausted);
    auto events = Events(tmp.path());
    CHECK(events.back().type == event_type::kPhaseChanged);
    CHECK(events.back().data["phase"] == "BudgetExhausted");
  }
}

TEST_CASE("the same tool call repeated 5 times in a row stops the run", "[runtime]") {
  TempDir tmp;
  std::vector<ScriptedReply> script(8, ScriptedReply{"", {Call("probe", {{"same", true}})}});
  Harness h(MakeRun(script));
  REQUIRE(*h.RunOnce(tmp.path()) == Phase::kFailed);
  CHECK(Load(tmp.path()).reason == "loop detected: tool probe was called 5 times in a row with the same arguments");
  CHECK(h.world.calls.size() == 4);
}

TEST_CASE("4 identical calls then a different one is not a loop", "[runtime]") {
  TempDir tmp;
  std::vector<ScriptedReply> script(4, ScriptedReply{"", {Call("probe", {{"same", true}})}});
  script.push_back({"", {Call("probe", {{"other", 1}})}});
  script.push_back({"", {Call("probe", {{"same", true}})}});
  script.push_back({"fine", {}});
  Harness h(MakeRun(script));
  CHECK(*h.RunOnce(tmp.path()) == Phase::kSucceeded);
}

TEST_CASE("an unknown tool is reported to the model and the run goes on", "[runtime]") {
  TempDir tmp;
  Harness h(MakeRun({{"", {Call("teleport")}}, {"ok", {}}}));
  REQUIRE(*h.RunOnce(tmp.path()) == Phase::kSucceeded);
  RunState s = Load(tmp.path());
  auto content = json::parse(s.messages[3].content);
  CHECK(content["tool_result"] == "error");
  CHECK_THAT(content["error"].get<std::string>(), ContainsSubstring("unknown tool \"teleport\"; available: probe, finish"));
}

TEST_CASE("the finish tool ends the run with its result", "[runtime]") {
  TempDir tmp;
  Harness h(MakeRun({{"", {Call("finish", {{"result", "42"}}), Call("probe")}}, {"never", {}}}));
  REQUIRE(*h.RunOnce(tmp.path()) == Phase::kSucceeded);
  CHECK(Load(tmp.path()).result == "42");
  CHECK(h.world.calls.empty());
}

TEST_CASE("a model that cannot answer fails the run with the reason", "[runtime]") {
  TempDir tmp;
  Harness h(MakeRun({{"", {Call("probe")}}}));
  REQUIRE(*h.RunOnce(tmp.path()) == Phase::kFailed);
  CHECK_THAT(Load(tmp.path()).reason, ContainsSubstring("the script has 1 replies and step 2 asked for one more"));
}

TEST_CASE("a finished run is reported, not redone", "[runtime][recovery]") {
  TempDir tmp;
  Harness h(MakeRun({{"", {Call("probe")}}, {"done", {}}}));
  REQUIRE(*h.RunOnce(tmp.path()) == Phase::kSucceeded);
  size_t events = Events(tmp.path()).size();
  REQUIRE(*h.RunOnce(tmp.path()) == Phase::kSucceeded);
  CHECK(Events(tmp.path()).size() == events);
  CHECK(h.world.calls.size() == 1);
}

TEST_CASE("a state dir of another AgentRun is refused; a changed spec is a new revision of the same run", "[runtime]") {
  TempDir tmp;
  Harness h(MakeRun({{"", {Call("probe")}}, {"done", {}}}));
  REQUIRE(h.RunOnce(tmp.path()).ok());

  AgentRun other = h.run_;
  other.metadata.name = "other";
  Harness h2(other);
  auto r = h2.RunOnce(tmp.path());
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kFailedPrecondition);
  CHECK_THAT(r.status().message(), ContainsSubstring("holds AgentRun default/test, not default/other"));

  const std::string run_id = Load(tmp.path()).run_id;
  AgentRun changed = h.run_;
  changed.spec.budget.max_steps = 7;
  Harness h3(changed);
  auto r3 = h3.RunOnce(tmp.path());
  REQUIRE(r3.ok());
  CHECK(*r3 == Phase::kSucceeded);
  RunState s = Load(tmp.path());
  CHECK(s.run_id == run_id);
  CHECK(s.revision == 2);
  CHECK(s.result == "done");
  CHECK(CountType(Events(tmp.path()), event_type::kModelRequest) == 2);  // nothing redone
}

TEST_CASE("resuming after a crash between an idempotent call's intent and result re-runs it with the same key",
          "[runtime][recovery]") {
  TempDir tmp;
  Harness h(MakeRun({{"", {Call("probe", {{"a", 1}})}}, {"", {Call("probe", {{"b", 2}})}}, {"done", {}}},
                    {ProbeSpec("probe", Effect::kIdempotent)}));
  bool crashed = false;
  SECTION("the effect happened before the crash") { h.world.crash_after_effect_of = "s2c0"; }
  SECTION("the crash came before the effect") { h.world.crash_before_effect_of = "s2c0"; }
  REQUIRE(h.RunOnce(tmp.path(), &crashed).ok());
  REQUIRE(crashed);
  CHECK(Load(tmp.path()).FindCall("s2c0")->status == CallStatus::kInFlight);
  REQUIRE(*h.RunOnce(tmp.path()) == Phase::kSucceeded);
  // Every call that reached the world for s2c0 carried the same key.
  std::set<std::string> keys;
  for (const auto& [id, key] : h.world.calls) {
    if (id == "s2c0") keys.insert(key);
  }
  CHECK(keys.size() == 1);
  CHECK(h.world.count("s1c0") == 1);
  auto events = Events(tmp.path());
  CHECK(CountType(events, event_type::kToolResult) == 2);
  CHECK(CountType(events, event_type::kToolOutcomeUnknown) == 0);
}

TEST_CASE("a side-effecting call cut between intent and result is never repeated blindly", "[runtime][recovery]") {
  TempDir tmp;
  std::vector<ScriptedReply> script = {{"", {Call("pay", {{"amount", 5}})}}, {"", {Call("probe")}}, {"done", {}}};
  AgentRun run = MakeRun(script, {ProbeSpec("pay", Effect::kSideEffecting), ProbeSpec("probe")});

  SECTION("ask: the run waits for a person; deny skips it and tells the model") {
    run.spec.unknown_outcome = UnknownOutcomePolicy::kAsk;
    Harness h(run);
    h.world.crash_after_effect_of = "s1c0";
    bool crashed = false;
    REQUIRE(h.RunOnce(tmp.path(), &crashed).ok());
    REQUIRE(crashed);
    REQUIRE(*h.RunOnce(tmp.path()) == Phase::kWaitingForApproval);
    RunState s = Load(tmp.path());
    REQUIRE(s.WaitingCalls().size() == 1);
    CHECK(s.WaitingCalls()[0]->wait_reason == "outcome_unknown");
    // Running again without a decision changes nothing and calls nothing.
    REQUIRE(*h.RunOnce(tmp.path()) == Phase::kWaitingForApproval);
    CHECK(h.world.count("s1c0") == 1);

    REQUIRE(Settle(tmp.path(), "s1c0", false).ok());
    REQUIRE(*h.RunOnce(tmp.path()) == Phase::kSucceeded);
    CHECK(h.world.count("s1c0") == 1);
    RunState done = Load(tmp.path());
    auto content = json::parse(done.messages[3].content);
    CHECK_THAT(content["error"].get<std::string>(), ContainsSubstring("outcome_unknown"));
  }
  SECTION("ask: approving retries it with the same idempotency key") {
    Harness h(run);
    h.world.crash_after_effect_of = "s1c0";
    REQUIRE(h.RunOnce(tmp.path()).ok());
    REQUIRE(*h.RunOnce(tmp.path()) == Phase::kWaitingForApproval);
    REQUIRE(Settle(tmp.path(), "s1c0", true).ok());
    REQUIRE(*h.RunOnce(tmp.path()) == Phase::kSucceeded);
    REQUIRE(h.world.count("s1c0") == 2);
    CHECK(h.world.calls[0].second == h.world.calls[1].second);
    auto events = Events(tmp.path());
    CHECK(CountType(events, event_type::kApprovalDecided) == 1);
  }
  SECTION("tell_model: the model is told the outcome is unknown and the run goes on") {
    run.spec.unknown_outcome = UnknownOutcomePolicy::kTellModel;
    Harness h(run);
    h.world.crash_after_effect_of = "s1c0";
    REQUIRE(h.RunOnce(tmp.path()).ok());
    REQUIRE(*h.RunOnce(tmp.path()) == Phase::kSucceeded);
    CHECK(h.world.count("s1c0") == 1);
    auto content = json::parse(Load(tmp.path()).messages[3].content);
    CHECK_THAT(content["error"].get<std::string>(), ContainsSubstring("outcome_unknown"));
  }
  SECTION("fail: the run fails with the reason") {
    run.spec.unknown_outcome = UnknownOutcomePolicy::kFail;
    Harness h(run);
    h.world.crash_before_effect_of = "s1c0";
    REQUIRE(h.RunOnce(tmp.path()).ok());
    REQUIRE(*h.RunOnce(tmp.path()) == Phase::kFailed);
    CHECK(h.world.count("s1c0") == 0);
    CHECK_THAT(Load(tmp.path()).reason, ContainsSubstring("its outcome is unknown and recovery.unknownOutcome is fail"));
  }
}

TEST_CASE("a crash with a model request but no response asks the model again for the same step", "[runtime][recovery]") {
  TempDir tmp;
  Harness h(MakeRun({{"", {Call("probe")}}, {"", {Call("probe", {{"n", 2}})}}, {"done", {}}}));
  {
    // Write the start of a run and a model request for step 1, as a crash right after it leaves it.
    auto store = RunStore::Open(tmp.path(), RunStore::OpenMode::kCreateIfMissing);
    REQUIRE(store.ok());
    auto runner = Runner::Create(store->get(), h.run_, h.models_, h.tools_);
    REQUIRE(runner.ok());
    Event started;
    started.type = event_type::kRunStarted;
    started.data = {{"runId", (*runner)->state().run_id}, {"goal", "g"}};
    Event request;
    request.type = event_type::kModelRequest;
    request.step = 1;
    StoreBatch b;
    b.events = {started.Encode(), request.Encode()};
    REQUIRE((*store)->Commit(b, true).ok());
  }
  CHECK(Load(tmp.path()).awaiting_model);
  REQUIRE(*h.RunOnce(tmp.path()) == Phase::kSucceeded);
  RunState s = Load(tmp.path());
  CHECK(s.used.steps == 3);
  CHECK(CountType(Events(tmp.path()), event_type::kModelRequest) == 3);
  CHECK(h.world.calls.size() == 2);
}

TEST_CASE("requireApproval waits before the call; approve runs it, deny tells the model", "[runtime][approval]") {
  TempDir tmp;
  AgentRun run = MakeRun({{"", {Call("deploy", {{"env", "prod"}})}}, {"done", {}}},
                         {ProbeSpec("deploy", Effect::kSideEffecting, true)});
  Harness h(run);
  REQUIRE(*h.RunOnce(tmp.path()) == Phase::kWaitingForApproval);
  CHECK(h.world.calls.empty());
  RunState waiting = Load(tmp.path());
  REQUIRE(waiting.WaitingCalls().size() == 1);
  CHECK(waiting.WaitingCalls()[0]->wait_reason == "approval_required");

  auto wrong = Settle(tmp.path(), "s9c9", true);
  CHECK(wrong.code() == StatusCode::kNotFound);
  CHECK_THAT(wrong.message(), ContainsSubstring("waiting: s1c0"));

  SECTION("approve") {
    REQUIRE(Settle(tmp.path(), "s1c0", true).ok());
    REQUIRE(*h.RunOnce(tmp.path()) == Phase::kSucceeded);
    CHECK(h.world.count("s1c0") == 1);
  }
  SECTION("deny") {
    REQUIRE(Settle(tmp.path(), "s1c0", false).ok());
    REQUIRE(*h.RunOnce(tmp.path()) == Phase::kSucceeded);
    CHECK(h.world.calls.empty());
    auto content = json::parse(Load(tmp.path()).messages[3].content);
    CHECK(content["error"] == "a person denied this call");
  }
  SECTION("settling twice is refused") {
    REQUIRE(Settle(tmp.path(), "s1c0", true).ok());
    REQUIRE(*h.RunOnce(tmp.path()) == Phase::kSucceeded);
    auto again = Settle(tmp.path(), "s1c0", true);
    CHECK(again.code() == StatusCode::kFailedPrecondition);
  }
}

TEST_CASE("a fork starts a new run from the checkpoint of step N", "[runtime][fork]") {
  TempDir tmp;
  Harness h(MakeRun({{"", {Call("probe", {{"n", 1}})}}, {"", {Call("probe", {{"n", 2}})}}, {"", {Call("probe", {{"n", 3}})}}, {"done", {}}}));
  REQUIRE(*h.RunOnce(tmp.Sub("a")) == Phase::kSucceeded);
  RunState source = Load(tmp.Sub("a"));
  {
    auto store = RunStore::Open(tmp.Sub("a"), RunStore::OpenMode::kMustExist);
    REQUIRE(store.ok());
    auto missing = ForkRun(**store, 99, tmp.Sub("x"));
    CHECK(missing.code() == StatusCode::kNotFound);
    CHECK_THAT(missing.message(), ContainsSubstring("checkpoints exist for steps 0, 1, 2, 3, 4"));
    REQUIRE(ForkRun(**store, 2, tmp.Sub("b")).ok());
  }
  RunState fork = Load(tmp.Sub("b"));
  CHECK(fork.step == 2);
  CHECK(fork.phase == Phase::kRunning);
  CHECK(fork.run_id != source.run_id);
  size_t calls_before = h.world.calls.size();
  REQUIRE(*h.RunOnce(tmp.Sub("b")) == Phase::kSucceeded);
  // Only step 3 ran again, under the fork's own idempotency key.
  REQUIRE(h.world.calls.size() == calls_before + 1);
  CHECK(h.world.calls.back().first == "s3c0");
  CHECK(h.world.calls.back().second != h.world.calls[2].second);
  // The source is unchanged.
  CHECK(Load(tmp.Sub("a")).ToCheckpointJson() == source.ToCheckpointJson());
}

TEST_CASE("batch durability runs the same steps", "[runtime]") {
  TempDir tmp;
  AgentRun run = MakeRun({{"", {Call("probe", {{"n", 1}})}}, {"", {Call("probe", {{"n", 2}})}}, {"done", {}}});
  run.spec.durability = Durability::kBatch;
  Harness h(run);
  REQUIRE(*h.RunOnce(tmp.path()) == Phase::kSucceeded);
  CHECK(Load(tmp.path()).used.steps == 3);
}

TEST_CASE("a tool that throws gives the model an error result and the run goes on", "[runtime]") {
  TempDir tmp;
  Harness h(MakeRun({{"", {Call("probe")}}, {"done", {}}}));
  h.world.throw_on = "s1c0";
  REQUIRE(*h.RunOnce(tmp.path()) == Phase::kSucceeded);
  auto content = json::parse(Load(tmp.path()).messages[3].content);
  CHECK(content["error"] == "the tool failed: probe exploded");
}

TEST_CASE("tool output that is not valid UTF-8 is stored with replacement characters", "[runtime]") {
  TempDir tmp;
  Harness h(MakeRun({{"", {Call("probe")}}, {"done", {}}}));
  h.world.garbage_on = "s1c0";
  REQUIRE(*h.RunOnce(tmp.path()) == Phase::kSucceeded);
  auto content = json::parse(Load(tmp.path()).messages[3].content);
  CHECK(content["output"]["text"] == "caf\xef\xbf\xbd \xef\xbf\xbd");
}

TEST_CASE("fork refuses a step that ended the run, and its own source", "[runtime][fork]") {
  TempDir tmp;
  Harness h(MakeRun({{"", {Call("probe")}}, {"done", {}}}));
  REQUIRE(*h.RunOnce(tmp.Sub("a")) == Phase::kSucceeded);
  auto store = RunStore::Open(tmp.Sub("a"), RunStore::OpenMode::kMustExist);
  REQUIRE(store.ok());
  auto ended = ForkRun(**store, 2, tmp.Sub("b"));
  CHECK(ended.code() == StatusCode::kFailedPrecondition);
  CHECK_THAT(ended.message(), ContainsSubstring("step 2 ended the run (Succeeded)"));
  auto self = ForkRun(**store, 1, tmp.Sub("a"));
  CHECK(self.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(self.message(), ContainsSubstring("is the source state dir"));
}

TEST_CASE("large tool output is kept whole in artifacts; the log and the model get a preview", "[runtime]") {
  TempDir tmp;
  Harness h(MakeRun({{"", {Call("probe")}}, {"done", {}}}));
  h.world.big_on = "s1c0";
  REQUIRE(*h.RunOnce(tmp.path()) == Phase::kSucceeded);
  auto content = json::parse(Load(tmp.path()).messages[3].content);
  CHECK(content["output"]["truncated"] == true);
  CHECK(content["output"]["artifact"] == "tool-output/s1c0");
  CHECK(content["output"]["preview"].get<std::string>().size() == 4096);
  auto store = RunStore::Open(tmp.path(), RunStore::OpenMode::kMustExist);
  REQUIRE(store.ok());
  auto artifact = (*store)->GetArtifact("tool-output/s1c0");
  REQUIRE(artifact.ok());
  REQUIRE(artifact->has_value());
  CHECK(json::parse(**artifact)["text"].get<std::string>().size() == 100000);
  CHECK(content["output"]["bytes"] == (*artifact)->size());
}

TEST_CASE("the idempotency key is stable for a call and differs for a different call at the same position", "[runtime]") {
  ToolCall pay{"s1c0", "pay", {{"amount", 5}}, ""};
  ToolCall other{"s1c0", "pay", {{"amount", 6}}, ""};
  CHECK(IdempotencyKey("run", 1, 0, pay) == IdempotencyKey("run", 1, 0, pay));
  CHECK(IdempotencyKey("run", 1, 0, pay) != IdempotencyKey("run", 1, 0, other));
  CHECK(IdempotencyKey("run", 1, 0, pay) != IdempotencyKey("run", 2, 0, pay));
  CHECK(IdempotencyKey("run", 1, 0, pay) != IdempotencyKey("run", 1, 1, pay));
  CHECK(IdempotencyKey("run", 1, 0, pay) != IdempotencyKey("fork", 1, 0, pay));
  CHECK(IdempotencyKey("run", 1, 0, pay).size() == 32);
}

TEST_CASE("a secret echoed back by a service never reaches the log, the transcript or the artifacts", "[runtime][secrets]") {
  ClearSecretsForTesting();
  carapace::testing::LedgerServer ledger;
  REQUIRE(ledger.Start());
  ::setenv("CARAPACE_TEST_API_KEY", "sk-live-0123456789", 1);
  ToolSpec api;
  api.name = "api";
  api.kind = "http";
  api.effect = Effect::kReadOnly;
  api.max_output_bytes = 1024;
  api.http.allowed_hosts = {"127.0.0.1:" + std::to_string(ledger.port())};
  api.http.headers = {{"Authorization", "", "CARAPACE_TEST_API_KEY", ""}};
  ToolCallSpec echo{"api", {{"method", "GET"}, {"url", ledger.url() + "/echo"}}};
  TempDir tmp;
  Harness h(MakeRun({{"", {echo}}, {"done", {}}}, {api}));
  REQUIRE(*h.RunOnce(tmp.path()) == Phase::kSucceeded);
  auto content = json::parse(Load(tmp.path()).messages[3].content);
  CHECK(content["output"]["body"]["youSent"] == "[REDACTED]");
  for (const auto& e : Events(tmp.path())) {
    CHECK(e.Encode().find("sk-live-0123456789") == std::string::npos);
  }
  ClearSecretsForTesting();
}

TEST_CASE("maxOutputBytes sets where tool output moves to the artifacts", "[runtime]") {
  TempDir tmp;
  std::vector<ToolSpec> tools = {ProbeSpec("probe")};
  tools[0].max_output_bytes = 2000;
  Harness h(MakeRun({{"", {Call("probe")}}, {"done", {}}}, tools));
  h.world.big_on = "s1c0";
  REQUIRE(*h.RunOnce(tmp.path()) == Phase::kSucceeded);
  auto content = json::parse(Load(tmp.path()).messages[3].content);
  CHECK(content["output"]["truncated"] == true);
  CHECK(content["output"]["preview"].get<std::string>().size() == 2000);
}

TEST_CASE("a call in flight whose tool a spec revision removed is settled by recovery.unknownOutcome", "[runtime][revision]") {
  TempDir tmp;
  AgentRun before = MakeRun({{"", {Call("probe", {{"n", 1}})}}, {"done", {}}});
  Harness h(before);
  h.world.crash_before_effect_of = "s1c0";  // the intent is on disk, the worker dies in the call
  bool crashed = false;
  REQUIRE(h.RunOnce(tmp.path(), &crashed).ok());
  REQUIRE(crashed);
  // The probe tool is idempotent: under the old spec it would be run again. The new revision
  // has no tool of that name, so its outcome is unknown and the policy (ask) decides.
  AgentRun after = before;
  after.spec.tools = {ProbeSpec("other")};
  Harness again(after);
  REQUIRE(*again.RunOnce(tmp.path()) == Phase::kWaitingForApproval);
  RunState s = Load(tmp.path());
  CHECK(s.revision == 2);
  REQUIRE(s.WaitingCalls().size() == 1);
  CHECK(s.WaitingCalls()[0]->wait_reason == "outcome_unknown");
  CHECK(again.world.calls.empty());
  // Approving the retry cannot run a tool the spec no longer has: the model is told so.
  REQUIRE(Settle(tmp.path(), "s1c0", true).ok());
  REQUIRE(*again.RunOnce(tmp.path()) == Phase::kSucceeded);
  CHECK(again.world.calls.empty());
  auto events = Events(tmp.path());
  bool told = false;
  for (const auto& e : events) {
    told = told || (e.type == event_type::kToolResult && e.data.value("error", "").find("no longer in the spec") != std::string::npos);
  }
  CHECK(told);
}
