// The `carapace` CLI as users run it: a real binary, real state dirs, a real HTTP service
// on loopback. Checks output, exit codes and the errors users see.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/support/carapace_cli.h"
#include "tests/support/child_process.h"
#include "tests/support/ledger_server.h"
#include "tests/support/small_volume.h"

using carapace::testing::ChildProcess;
using carapace::testing::CommandResult;
using carapace::testing::LedgerServer;
using carapace::testing::RunCommand;
using carapace::testing::SmallVolume;
using carapace::testing::TempDir;
using Catch::Matchers::ContainsSubstring;
using nlohmann::json;

namespace {

std::string Header(const std::string& name) {
  return "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: " + name + "}\nspec:\n  goal: test\n";
}

// An order run against `ledger`: plan note, POST an order, answer.
std::string OrderSpec(const LedgerServer& ledger, const std::string& extra = "") {
  std::string host = "127.0.0.1:" + std::to_string(ledger.port());
  return Header("orders") +
         "  model:\n    backend: scripted\n    script:\n"
         "      - toolCalls: [{name: notes, arguments: {op: write, path: plan.md, content: plan}}]\n"
         "      - toolCalls: [{name: api, arguments: {method: POST, url: \"" + ledger.url() + "/orders\", body: {\"n\": 1}}}]\n"
         "      - text: ordered\n"
         "  tools:\n"
         "    - {name: notes, kind: workspace}\n"
         "    - {name: api, kind: http, effect: side_effecting" + extra + ", http: {allowedHosts: [\"" + host + "\"]}}\n";
}

using carapace::testing::Carapace;

}  // namespace

TEST_CASE("carapace run shows each step, and a second run reports the finished run without redoing it", "[cli]") {
  TempDir tmp;
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  std::string spec = tmp.Write("orders.yaml", OrderSpec(ledger));
  CommandResult first = Carapace({"run", spec, "--state-dir", tmp.Sub("state")});
  INFO(first.out << first.err);
  REQUIRE(first.exit_code == 0);
  CHECK_THAT(first.out, ContainsSubstring("step   1  notes"));
  CHECK_THAT(first.out, ContainsSubstring("step   2  api"));
  CHECK_THAT(first.out, ContainsSubstring("left: 48 steps"));
  CHECK_THAT(first.out, ContainsSubstring("Succeeded: ordered"));
  CHECK_THAT(first.out, ContainsSubstring("state: " + tmp.Sub("state")));
  CHECK(ledger.entries().size() == 1);
  CHECK(std::filesystem::exists(tmp.Sub("state/workspace/plan.md")));

  CommandResult second = Carapace({"run", spec, "--state-dir", tmp.Sub("state")});
  REQUIRE(second.exit_code == 0);
  CHECK_THAT(second.out, ContainsSubstring("already finished"));
  CHECK_THAT(second.out, ContainsSubstring("Succeeded: ordered"));
  CHECK(ledger.entries().size() == 1);
}

TEST_CASE("carapace run --json prints one JSON event per line", "[cli]") {
  TempDir tmp;
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  CommandResult r = Carapace({"run", tmp.Write("o.yaml", OrderSpec(ledger)), "--state-dir", tmp.Sub("s"), "--json"});
  REQUIRE(r.exit_code == 0);
  std::istringstream lines(r.out);
  std::string line;
  std::vector<json> events;
  while (std::getline(lines, line)) {
    json j = json::parse(line);  // throws (fails the test) on anything but JSON
    REQUIRE(j.contains("type"));
    events.push_back(j);
  }
  REQUIRE(events.size() > 5);
  CHECK(events.front()["type"] == "run_started");
  CHECK(events.back()["type"] == "status");
  CHECK(events.back()["status"]["phase"] == "PHASE_SUCCEEDED");
}

TEST_CASE("exit codes say how the run ended", "[cli]") {
  TempDir tmp;
  LedgerServer ledger;
  REQUIRE(ledger.Start());

  SECTION("2: a bad manifest, with the field path") {
    std::string bad = tmp.Write("bad.yaml", Header("bad") + "  model: {backend: scripted, script: [{text: x}]}\n  budget: {maxSteps: 0}\n");
    CommandResult r = Carapace({"run", bad, "--state-dir", tmp.Sub("s")});
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, ContainsSubstring("bad.yaml:7:22: spec.budget.maxSteps: must be >= 1"));
    CHECK_FALSE(std::filesystem::exists(tmp.Sub("s")));  // nothing was created for a bad manifest
  }
  SECTION("3: budget exhausted") {
    std::string spec = tmp.Write("b.yaml", OrderSpec(ledger) + "  budget: {maxSteps: 1}\n");
    CommandResult r = Carapace({"run", spec, "--state-dir", tmp.Sub("s")});
    CHECK(r.exit_code == 3);
    CHECK_THAT(r.out, ContainsSubstring("BudgetExhausted: maxSteps (1) reached"));
  }
  SECTION("4: failed") {
    std::string spec = tmp.Write("f.yaml", Header("fails") + "  model:\n    backend: scripted\n    script:\n"
                                            "      - toolCalls: [{name: notes, arguments: {op: list}}]\n"
                                            "  tools: [{name: notes, kind: workspace}]\n");
    CommandResult r = Carapace({"run", spec, "--state-dir", tmp.Sub("s")});
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.out, ContainsSubstring("Failed: model call failed"));
  }
  SECTION("5: waiting for approval, then approve lets the next run finish") {
    std::string spec = tmp.Write("a.yaml", OrderSpec(ledger, ", requireApproval: true"));
    CommandResult r = Carapace({"run", spec, "--state-dir", tmp.Sub("s")});
    INFO(r.out << r.err);
    CHECK(r.exit_code == 5);
    CHECK_THAT(r.out, ContainsSubstring("carapace approve --state-dir " + tmp.Sub("s") + " --call s2c0"));
    CHECK(ledger.entries().empty());

    CommandResult wrong = Carapace({"approve", "--state-dir", tmp.Sub("s"), "--call", "s1c0"});
    CHECK(wrong.exit_code == 2);
    CHECK_THAT(wrong.err, ContainsSubstring("no call \"s1c0\" is waiting; waiting: s2c0"));

    CommandResult ok = Carapace({"approve", "--state-dir", tmp.Sub("s"), "--call", "s2c0"});
    REQUIRE(ok.exit_code == 0);
    CommandResult done = Carapace({"run", spec, "--state-dir", tmp.Sub("s")});
    CHECK(done.exit_code == 0);
    CHECK(ledger.entries().size() == 1);
  }
}

TEST_CASE("a second process on the same state dir fails at once", "[cli]") {
  TempDir tmp;
  LedgerServer slow(3000);  // holds each request 3 s, so the first run holds the state dir
  REQUIRE(slow.Start());
  std::string spec = tmp.Write("o.yaml", OrderSpec(slow));
  ChildProcess first({CARAPACE_BIN, "run", spec, "--state-dir", tmp.Sub("s")});
  for (int i = 0; i < 500 && slow.entries().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(slow.entries().size() == 1);
  CommandResult second = Carapace({"run", spec, "--state-dir", tmp.Sub("s")});
  CHECK(first.Running());  // the second did not wait for the first to finish
  CHECK(second.exit_code == 2);
  CHECK_THAT(second.err, ContainsSubstring("is in use by another carapace process (pid " + std::to_string(first.pid()) + ")"));
  CommandResult first_result = first.Wait();
  CHECK(first_result.exit_code == 0);
  CHECK(slow.entries().size() == 1);
}

TEST_CASE("state dir problems get clear errors", "[cli]") {
  TempDir tmp;
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  std::string spec = tmp.Write("o.yaml", OrderSpec(ledger));

  SECTION("a folder that is not a state dir") {
    std::filesystem::create_directories(tmp.Sub("docs"));
    std::ofstream(tmp.Sub("docs/notes.txt")) << "mine";
    CommandResult r = Carapace({"run", spec, "--state-dir", tmp.Sub("docs")});
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, ContainsSubstring("is not empty and is not a Carapace state dir (found \"notes.txt\")"));
  }
  SECTION("inspecting nothing") {
    CommandResult r = Carapace({"inspect", "--state-dir", tmp.Sub("missing")});
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, ContainsSubstring("does not exist"));
  }
  SECTION("another AgentRun's state dir") {
    REQUIRE(Carapace({"run", spec, "--state-dir", tmp.Sub("s")}).exit_code == 0);
    std::string other = tmp.Write("other.yaml", Header("other") + "  model: {backend: scripted, script: [{text: x}]}\n");
    CommandResult r = Carapace({"run", other, "--state-dir", tmp.Sub("s")});
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, ContainsSubstring("holds AgentRun default/orders, not default/other"));
  }
}

TEST_CASE("inspect shows phase, budgets, every event and checkpoints", "[cli]") {
  TempDir tmp;
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  REQUIRE(Carapace({"run", tmp.Write("o.yaml", OrderSpec(ledger)), "--state-dir", tmp.Sub("s")}).exit_code == 0);
  CommandResult r = Carapace({"inspect", "--state-dir", tmp.Sub("s")});
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, ContainsSubstring("AgentRun default/orders"));
  CHECK_THAT(r.out, ContainsSubstring("phase:   Succeeded"));
  CHECK_THAT(r.out, ContainsSubstring("budget:  steps 3/50"));
  CHECK_THAT(r.out, ContainsSubstring("tool_intent s2c0 api"));
  CHECK_THAT(r.out, ContainsSubstring("side_effecting"));
  CHECK_THAT(r.out, ContainsSubstring("checkpoints: steps 0 1 2 3"));
  CommandResult j = Carapace({"inspect", "--state-dir", tmp.Sub("s"), "--json"});
  REQUIRE(j.exit_code == 0);
  json out = json::parse(j.out);
  CHECK(out["status"]["phase"] == "PHASE_SUCCEEDED");
  CHECK(out["status"]["budget"]["toolCalls"] == "2");
  CHECK(out["checkpoints"] == json::array({0, 1, 2, 3}));
}

TEST_CASE("fork continues a run from a checkpoint in a new state dir", "[cli]") {
  TempDir tmp;
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  std::string spec = tmp.Write("o.yaml", OrderSpec(ledger));
  REQUIRE(Carapace({"run", spec, "--state-dir", tmp.Sub("a")}).exit_code == 0);
  CommandResult f = Carapace({"fork", "--state-dir", tmp.Sub("a"), "--from-step", "1", "--to", tmp.Sub("b")});
  INFO(f.err);
  REQUIRE(f.exit_code == 0);
  CommandResult r = Carapace({"run", spec, "--state-dir", tmp.Sub("b")});
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, ContainsSubstring("resuming orders at step 1"));
  auto entries = ledger.entries();
  REQUIRE(entries.size() == 2);  // the fork placed its own order, under its own key
  CHECK(entries[0].idempotency_key != entries[1].idempotency_key);
  CommandResult bad = Carapace({"fork", "--state-dir", tmp.Sub("a"), "--from-step", "9", "--to", tmp.Sub("c")});
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.err, ContainsSubstring("no checkpoint for step 9"));
}

TEST_CASE("usage mistakes exit 2 with the usage", "[cli]") {
  CHECK_THAT(Carapace({"run"}).err, ContainsSubstring("expected 1 argument(s)"));
  CHECK(Carapace({"run", "x.yaml"}).exit_code == 2);
  CHECK_THAT(Carapace({"run", "x.yaml"}).err, ContainsSubstring("--state-dir is required"));
  CHECK_THAT(Carapace({"inspect", "--state-dir", "/tmp", "--colour"}).err, ContainsSubstring("unknown flag --colour"));
  CHECK_THAT(Carapace({"launch"}).err, ContainsSubstring("unknown command \"launch\""));
  CHECK(Carapace({"fork", "--state-dir", "a", "--from-step", "two", "--to", "b"}).exit_code == 2);
  CHECK(Carapace({"--help"}).exit_code == 0);
}

TEST_CASE("examples/memory.yaml remembers and finds again, across a second run", "[cli][memory]") {
  TempDir tmp;
  std::string example = std::string(CARAPACE_SOURCE_DIR) + "/examples/memory.yaml";
  CommandResult r = Carapace({"run", example, "--state-dir", tmp.Sub("s")});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CommandResult j = Carapace({"inspect", "--state-dir", tmp.Sub("s"), "--json"});
  REQUIRE(j.exit_code == 0);
  json search;
  const json inspected = json::parse(j.out);
  for (const auto& e : inspected["events"]) {
    if (e["type"] == "tool_result" && e["data"]["tool"] == "memory_search") search = e["data"]["output"];
  }
  REQUIRE(search["results"].size() == 1);
  CHECK(search["results"][0]["text"] == "The customer prefers invoices by email");
}

TEST_CASE("an approval survives kill -9: the approved call runs once and is not asked for again", "[cli][approval]") {
  TempDir tmp;
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  std::string spec = tmp.Write("a.yaml", OrderSpec(ledger, ", requireApproval: true"));
  REQUIRE(Carapace({"run", spec, "--state-dir", tmp.Sub("s")}).exit_code == 5);
  REQUIRE(Carapace({"approve", "--state-dir", tmp.Sub("s"), "--call", "s2c0"}).exit_code == 0);
  // Kill the next runs early, at different moments, before they finish.
  for (int delay_ms : {0, 2, 5, 10, 20}) {
    ChildProcess child({CARAPACE_BIN, "run", spec, "--state-dir", tmp.Sub("s")});
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    child.Kill(SIGKILL);
    child.Wait();
  }
  CommandResult last = Carapace({"run", spec, "--state-dir", tmp.Sub("s")});
  if (last.exit_code == 5) {  // a kill landed inside the approved POST: its outcome is unknown
    CHECK_THAT(last.out, ContainsSubstring("outcome_unknown"));
    REQUIRE(Carapace({"approve", "--state-dir", tmp.Sub("s"), "--call", "s2c0", "--deny"}).exit_code == 0);
    last = Carapace({"run", spec, "--state-dir", tmp.Sub("s")});
  }
  INFO(last.out << last.err);
  REQUIRE(last.exit_code == 0);
  CHECK(ledger.entries().size() <= 1);
  int asked = 0;
  const json inspected = json::parse(Carapace({"inspect", "--state-dir", tmp.Sub("s"), "--json"}).out);
  for (const auto& e : inspected["events"]) {
    if (e["type"] == "approval_requested" && e["data"]["reason"] == "approval_required") ++asked;
  }
  CHECK(asked == 1);  // the person was asked once; the decision outlived the kills
}

TEST_CASE("carapace run: a changed spec continues the same run as a revision; --restart starts afresh", "[cli][revision]") {
  TempDir tmp;
  const std::string model = "  model:\n    backend: scripted\n    script:\n      - text: first answer\n";
  std::string spec = tmp.Write("a.yaml", Header("rev") + "  instructions: be brief\n" + model);
  CommandResult first = Carapace({"run", spec, "--state-dir", tmp.Sub("s")});
  INFO(first.out << first.err);
  REQUIRE(first.exit_code == 0);
  std::string edited = tmp.Write("b.yaml", Header("rev") + "  instructions: be very brief\n" + model);
  CommandResult second = Carapace({"run", edited, "--state-dir", tmp.Sub("s")});
  INFO(second.out << second.err);
  CHECK(second.exit_code == 0);
  CHECK_THAT(second.out, ContainsSubstring("already finished"));
  CommandResult inspect = Carapace({"inspect", "--state-dir", tmp.Sub("s")});
  CHECK_THAT(inspect.out, ContainsSubstring("revision: 2"));
  CHECK_THAT(inspect.out, ContainsSubstring("spec_revised revision 2"));
  CHECK_THAT(inspect.out, ContainsSubstring("changed: instructions"));

  CommandResult restart = Carapace({"run", edited, "--state-dir", tmp.Sub("s"), "--restart"});
  INFO(restart.out << restart.err);
  CHECK(restart.exit_code == 0);
  CHECK_THAT(restart.out, ContainsSubstring("the previous run is kept in " + tmp.Sub("s") + ".previous-"));
  CHECK_THAT(restart.out, ContainsSubstring("Succeeded: first answer"));
  CommandResult fresh = Carapace({"inspect", "--state-dir", tmp.Sub("s")});
  CHECK_THAT(fresh.out, ContainsSubstring("revision: 1"));
  int previous = 0;
  for (const auto& entry : std::filesystem::directory_iterator(tmp.path())) {
    if (entry.path().filename().string().rfind("s.previous-", 0) != 0) continue;
    ++previous;
    CommandResult old = Carapace({"inspect", "--state-dir", entry.path().string()});
    CHECK(old.exit_code == 0);
    CHECK_THAT(old.out, ContainsSubstring("revision: 2"));
  }
  CHECK(previous == 1);
}

TEST_CASE("carapace run waits for a model no endpoint reaches, then exits 6 with the turn kept", "[cli][outage]") {
  TempDir tmp;
  // A port with nothing listening: every connection is refused.
  int port = 0;
  {
    carapace::testing::LedgerServer closed;
    REQUIRE(closed.Start());
    port = closed.port();
  }
  std::string spec = tmp.Write("m.yaml", Header("down") +
                                             "  model:\n    backend: openai\n    name: m\n"
                                             "    endpoint: \"http://127.0.0.1:" + std::to_string(port) + "/v1\"\n"
                                             "    retry: {maxAttempts: 1}\n"
                                             "  recovery: {modelUnavailableSeconds: 3}\n");
  CommandResult r = Carapace({"run", spec, "--state-dir", tmp.Sub("s")});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 6);
  CHECK_THAT(r.out, ContainsSubstring("no model answered (attempt 1)"));
  CHECK_THAT(r.err, ContainsSubstring("no model answered for 3 s (recovery.modelUnavailableSeconds)"));
  CHECK_THAT(r.err, ContainsSubstring("again to resume it"));
  CommandResult inspect = Carapace({"inspect", "--state-dir", tmp.Sub("s")});
  CHECK_THAT(inspect.out, ContainsSubstring("phase:   Running"));
  CHECK_THAT(inspect.out, ContainsSubstring("waiting for: ModelUnavailable"));
}

TEST_CASE("a full volume is refused with a clear error, never a store that aborts on open; it runs once space is added",
          "[cli][limits]") {
  TempDir dir;
  SmallVolume volume(dir.Sub("vol"), "3m");
  if (!volume.mounted()) SKIP("mounting a tmpfs needs root");
  // 2.5 MB of instructions: its first write (the run's start) does not fit a 3 MiB volume.
  const std::string spec = dir.Sub("big.yaml");
  std::ofstream(spec) << "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: big}\nspec:\n"
                         "  goal: say done\n  instructions: \"" << std::string(2500000, 'x') << "\"\n"
                         "  model: {backend: scripted, script: [{text: done}]}\n";
  const std::string state = dir.Sub("vol/agent");
  for (int attempt = 0; attempt < 3; ++attempt) {
    INFO("attempt " << attempt);
    CommandResult r = RunCommand({CARAPACE_BIN, "run", spec, "--state-dir", state});
    CHECK(r.signal == 0);        // never an abort inside RocksDB
    CHECK(r.exit_code != 0);
    CHECK(r.exit_code != 134);
    CHECK_THAT(r.err, ContainsSubstring("is full"));
    CHECK_THAT(r.err, ContainsSubstring("nothing was written"));
  }
  REQUIRE(volume.Grow("64m"));
  CommandResult ok = RunCommand({CARAPACE_BIN, "run", spec, "--state-dir", state});
  INFO(ok.err);
  CHECK(ok.exit_code == 0);
  CHECK_THAT(ok.out, ContainsSubstring("done"));
}
