// A full volume is a state, not a crash (docs/durability.md, "A full volume"). The store
// refuses a write it has no room for with nothing written; the runner's write waits for
// space and goes on from where it was. Here the volume fills at each write of a run in turn
// (the store's free-space probe is the fault injector), and the run must end exactly as it
// does on a volume with room: the same events, each side effect once. A worker stopped while
// it waits resumes from the store. tests/integration/worker_test.cc fills a real tmpfs.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <map>

#include "tests/support/child_process.h"
#include "worker/runtime/run_loader.h"
#include "worker/runtime/runner.h"

using namespace carapace;
using carapace::testing::TempDir;
using Catch::Matchers::ContainsSubstring;
using nlohmann::json;

namespace {

// A side-effecting tool that counts what it did, by its arguments.
class CountingTool : public Tool {
 public:
  CountingTool(std::string name, std::map<std::string, int>* done) : name_(std::move(name)), done_(done) {}
  ToolSchema Schema() const override { return {name_, "counts", {{"type", "object"}}}; }
  Effect DefaultEffect() const override { return Effect::kSideEffecting; }
  ToolResult Call(const json& arguments, const ToolContext&) override {
    return ToolResult::Ok({{"count", ++(*done_)[arguments.dump()]}});
  }

 private:
  std::string name_;
  std::map<std::string, int>* done_;
};

// The volume as the store sees it: writes are counted, and the one numbered `fill_at` finds
// it full; it stays full until `Free()`.
struct Volume {
  int writes = 0;
  int fill_at = 0;  // 0: never full
  bool full = false;
  std::optional<uint64_t> FreeBytes() {
    if (full) return 4096;
    if (++writes == fill_at) {
      full = true;
      return 4096;
    }
    return uint64_t{1} << 40;
  }
};

AgentRun Agent() {
  AgentRun run;
  run.metadata.name = "full";
  run.spec.goal = "count twice";
  run.spec.model.backend = "scripted";
  run.spec.model.script = {
      {"", {{"counter", {{"n", 1}}}}},
      {"", {{"counter", {{"n", 2}}}, {"counter", {{"n", 3}}}}},
      {"counted", {}},
      {"", {{"counter", {{"n", 4}}}}},
      {"counted again", {}},
  };
  ToolSpec counter;
  counter.name = "counter";
  counter.kind = "counter";
  run.spec.tools = {counter};
  return run;
}

// Tells a writer refused for want of space whether to try again (and frees space when the
// test says so); false stops the worker.
using WaitForSpace = std::function<bool(RunStore* store, const Status& refused)>;

// One worker start over a state dir: a store whose free space `volume` decides, and a
// persistent runner that waits for space while `wait` says so. Creating the runner writes
// the run's identity: refused, it is tried again as carapace-worker does.
struct Worker {
  Worker(const std::string& dir, Volume* volume, std::map<std::string, int>* done, WaitForSpace wait) : wait(wait) {
    RegisterBuiltinModels(&models);
    tools.Register("counter", [done](const ToolSpec& spec, const ToolEnvironment&) -> Result<std::unique_ptr<Tool>> {
      return std::unique_ptr<Tool>(new CountingTool(spec.name, done));
    });
    store = std::move(RunStore::Open(dir, RunStore::OpenMode::kCreateIfMissing)).value();
    store->SetFreeSpaceProbe([volume] { return volume->FreeBytes(); });
    RunnerOptions o;
    o.persistent = true;
    if (wait) o.wait_for_space = [this](const Status& refused) { return this->wait(store.get(), refused); };
    for (;;) {
      auto made = Runner::Create(store.get(), Agent(), models, tools, o);
      if (made.ok()) {
        runner = std::move(made).value();
        return;
      }
      status = made.status();
      REQUIRE(IsVolumeFull(status));
      if (!wait || !wait(store.get(), status)) return;
    }
  }
  // A message from outside, sent again while the volume is full and `wait` says to.
  void Send(const std::string& text) {
    Event e;
    e.type = event_type::kMessageReceived;
    e.data = {{"text", text}, {"from", "test"}};
    auto sent = AppendExternalEvent(store.get(), e);
    while (!sent.ok() && IsVolumeFull(sent.status()) && wait && wait(store.get(), sent.status())) {
      sent = AppendExternalEvent(store.get(), e);
    }
    REQUIRE(sent.ok());
  }
  WaitForSpace wait;
  ModelRegistry models;
  ToolRegistry tools;
  std::unique_ptr<RunStore> store;
  std::unique_ptr<Runner> runner;
  Status status;  // why there is no runner
};

// What a run did, without what differs between two runs of it: times, durations, the run id
// and what is derived from it.
std::vector<std::string> Story(const RunStore& store) {
  auto events = ReadAllEvents(store);
  REQUIRE(events.ok());
  std::vector<std::string> out;
  for (const auto& e : *events) {
    json data = e.data;
    for (auto it = data.begin(); it != data.end();) {
      const std::string& k = it.key();
      // Ids and timings differ from run to run (the times end in Ms; a reply's rate is one).
      const bool varies = k == "runId" || k == "idempotencyKey" || k == "tokensPerSecond" ||
                          (k.size() > 2 && k.compare(k.size() - 2, 2, "Ms") == 0);
      it = varies ? data.erase(it) : std::next(it);
    }
    out.push_back(e.type + " " + std::to_string(e.step) + " " + data.dump());
  }
  return out;
}

// The goal's turn, then a message's turn, on one runner.
void RunBothTurns(Worker& w) {
  REQUIRE(w.runner);
  auto phase = w.runner->Run();
  INFO(phase.status().ToString());
  REQUIRE(phase.ok());
  REQUIRE(*phase == Phase::kIdle);
  w.Send("once more");
  phase = w.runner->Run();
  INFO(phase.status().ToString());
  REQUIRE(phase.ok());
  REQUIRE(*phase == Phase::kIdle);
}

}  // namespace

TEST_CASE("the volume filling at any write of a run: the write waits for space, then the run goes on with "
          "nothing lost or done twice",
          "[durability][limits]") {
  // The reference: a volume with room.
  TempDir ref_dir;
  Volume roomy;
  std::map<std::string, int> ref_done;
  std::vector<std::string> reference;
  int writes = 0;
  {
    Worker w(ref_dir.Sub("s"), &roomy, &ref_done, nullptr);
    RunBothTurns(w);
    reference = Story(*w.store);
    writes = roomy.writes;
  }
  REQUIRE(ref_done.size() == 4);
  for (const auto& [call, n] : ref_done) CHECK(n == 1);
  REQUIRE(writes >= 15);  // start, replies, intents, results, steps, turns: every one is tried below

  for (int k = 1; k <= writes; ++k) {
    DYNAMIC_SECTION("the volume fills at write " << k << " of " << writes) {
      TempDir dir;
      Volume volume;
      volume.fill_at = k;
      std::map<std::string, int> done;
      int waits = 0;
      std::optional<std::string> reported;
      Worker w(dir.Sub("s"), &volume, &done, [&](RunStore* store, const Status& refused) {
        CHECK(IsVolumeFull(refused));
        CHECK_THAT(refused.message(), ContainsSubstring("nothing was written"));
        // While it waits, the store says so, and other writers are refused at once.
        reported = store->VolumeFull();
        Event e;
        e.type = event_type::kMessageReceived;
        e.data = {{"text", "while full"}, {"from", "test"}};
        CHECK(IsVolumeFull(AppendExternalEvent(store, e).status()));
        // The second wait finds room: space was freed meanwhile.
        if (++waits == 2) volume.full = false;
        return true;
      });
      RunBothTurns(w);
      CHECK(waits == 2);
      REQUIRE(reported.has_value());
      CHECK_THAT(*reported, ContainsSubstring("is full"));
      CHECK_FALSE(w.store->VolumeFull().has_value());
      CHECK(Story(*w.store) == reference);
      CHECK(done == ref_done);
    }
  }
}

TEST_CASE("a worker stopped while its write waits for space resumes from the store: nothing lost, no side effect "
          "repeated",
          "[durability][limits]") {
  TempDir ref_dir;
  Volume roomy;
  std::map<std::string, int> ref_done;
  int writes = 0;
  {
    Worker w(ref_dir.Sub("s"), &roomy, &ref_done, nullptr);
    RunBothTurns(w);
    writes = roomy.writes;
  }
  for (int k = 1; k <= writes; ++k) {
    DYNAMIC_SECTION("stopped while write " << k << " of " << writes << " waits") {
      TempDir dir;
      Volume volume;
      volume.fill_at = k;
      std::map<std::string, int> done;
      bool message_sent = false;
      {
        // SIGTERM while the write waits.
        Worker w(dir.Sub("s"), &volume, &done, [](RunStore*, const Status&) { return false; });
        Result<Phase> phase = w.runner ? w.runner->Run() : Result<Phase>(w.status);
        if (phase.ok()) {
          // The fill came later than the goal's turn: the message's turn meets it.
          REQUIRE(*phase == Phase::kIdle);
          Event e;
          e.type = event_type::kMessageReceived;
          e.data = {{"text", "once more"}, {"from", "test"}};
          auto sent = AppendExternalEvent(w.store.get(), e);
          message_sent = sent.ok();
          phase = sent.ok() ? w.runner->Run() : Result<Phase>(sent.status());
        }
        REQUIRE_FALSE(phase.ok());
        CHECK(IsVolumeFull(phase.status()));
      }
      // The next start, with room. The store opens as it was left.
      volume.full = false;
      volume.fill_at = 0;
      Worker w(dir.Sub("s"), &volume, &done, nullptr);
      REQUIRE(w.runner);
      auto phase = w.runner->Run();
      REQUIRE(phase.ok());
      // A side-effecting call whose result was never stored is not made again unasked.
      if (*phase == Phase::kWaitingForApproval) {
        const auto waiting = w.runner->state().WaitingCalls();
        REQUIRE(waiting.size() == 1);
        CHECK(waiting[0]->wait_reason == "outcome_unknown");
        REQUIRE(SettleWaitingCall(w.store.get(), waiting[0]->call.id, false, "test").ok());
        phase = w.runner->Run();
        REQUIRE(phase.ok());
      }
      REQUIRE(*phase == Phase::kIdle);
      if (!message_sent) {
        // Refused when it was sent (or not sent yet): the client sends it again.
        w.Send("once more");
        phase = w.runner->Run();
        REQUIRE(phase.ok());
        REQUIRE(*phase == Phase::kIdle);
      }
      for (const auto& [call, n] : done) {
        INFO(call);
        CHECK(n == 1);
      }
      CHECK(w.runner->state().turns == 2);
    }
  }
}
