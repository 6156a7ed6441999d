// Backups of a live agent and restoring them (docs/operations.md), through the real worker's
// control API and the real CLI, with RocksDB's checkpoint under them.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/support/child_process.h"
#include "tests/support/carapace_cli.h"
#include "tests/support/ledger_server.h"
#include "tests/support/wait.h"
#include "tests/support/worker_process.h"
#include "common/file.h"
#include "worker/runtime/backup.h"

using Catch::Matchers::ContainsSubstring;
using carapace::testing::CommandResult;
using carapace::testing::Carapace;
using carapace::testing::Events;
using carapace::testing::LedgerServer;
using carapace::testing::RunCommand;
using carapace::testing::TempDir;
using carapace::testing::WorkerProcess;
using json = nlohmann::json;
namespace v1 = carapace::worker::v1;

namespace {

// Four steps, each a note in the workspace and a POST to a slow ledger, then an answer.
std::string Spec(const LedgerServer& ledger) {
  const std::string host = "127.0.0.1:" + std::to_string(ledger.port());
  std::string script;
  for (int i = 1; i <= 4; ++i) {
    const std::string n = std::to_string(i);
    script += "      - toolCalls: [{name: notes, arguments: {op: write, path: n" + n + ".md, content: note " + n +
              "}}, {name: api, arguments: {method: POST, url: \"" + ledger.url() + "/orders/" + n + "\", body: {order: " + n +
              "}}}]\n";
  }
  return "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: kept}\nspec:\n  goal: place four orders\n"
         "  model:\n    backend: scripted\n    script:\n" + script + "      - text: four placed\n"
         "  tools:\n    - {name: notes, kind: workspace}\n"
         "    - {name: api, kind: http, effect: idempotent, http: {allowedHosts: [\"" + host + "\"]}}\n";
}

}  // namespace

TEST_CASE("a backup of a live agent is one moment of it; restored, it is the same agent and goes on from there",
          "[backup]") {
  TempDir tmp;
  LedgerServer ledger(400);  // each call held 0.4 s: the backup is taken while one is in flight
  REQUIRE(ledger.Start());
  const std::string spec = tmp.Write("kept.yaml", Spec(ledger));
  WorkerProcess w(WORKER_BIN, spec, tmp.Sub("volume/agent"), tmp.path());
  REQUIRE(w.Start());
  REQUIRE(carapace::testing::WaitFor([&] { return ledger.entries().size() >= 2; }, 20000));

  v1::BackupResponse backup;
  {
    v1::BackupRequest req;
    req.set_name("mid-run");
    auto ctx = w.Context();
    grpc::Status st = w.stub().Backup(ctx.get(), req, &backup);
    INFO(st.error_message());
    REQUIRE(st.ok());
  }
  // On the agent's volume, next to its state dir; the agent did not wait for it.
  CHECK(backup.path() == tmp.Sub("volume/backups/mid-run"));
  CHECK(backup.last_seq() > 0);
  CHECK(backup.bytes() > 0);
  REQUIRE(carapace::testing::WaitFor([&] { return w.Status().phase() == v1::PHASE_IDLE; }, 30000));
  const std::string run_id = w.Status().run_id();
  CHECK(backup.run_id() == run_id);

  // The same name twice, and a name that would leave backups/, are refused.
  for (const auto& [name, code, says] : std::vector<std::tuple<std::string, grpc::StatusCode, std::string>>{
           {"mid-run", grpc::StatusCode::FAILED_PRECONDITION, "exists already"},
           {"../escape", grpc::StatusCode::INVALID_ARGUMENT, "1 to 63 of a-z, 0-9"}}) {
    v1::BackupRequest req;
    req.set_name(name);
    v1::BackupResponse out;
    auto ctx = w.Context();
    grpc::Status st = w.stub().Backup(ctx.get(), req, &out);
    CHECK(st.error_code() == code);
    CHECK_THAT(st.error_message(), ContainsSubstring(says));
  }
  // A state dir a worker holds is backed up through the worker, and the CLI says so.
  CommandResult busy = Carapace({"backup", "--state-dir", tmp.Sub("volume/agent"), "--to", tmp.Sub("elsewhere")});
  CHECK(busy.exit_code != 0);
  CHECK_THAT(busy.err, ContainsSubstring("carapace backup --worker"));
  w.Stop();

  // The manifest names the moment; the copy holds exactly the events up to it.
  auto manifest = carapace::ReadBackup(backup.path());
  REQUIRE(manifest.ok());
  CHECK(manifest->last_seq == backup.last_seq());
  CHECK(manifest->run_id == run_id);
  CommandResult restored = Carapace({"restore", "--from", backup.path(), "--state-dir", tmp.Sub("restored")});
  INFO(restored.out << restored.err);
  REQUIRE(restored.exit_code == 0);
  CHECK_THAT(restored.out, ContainsSubstring("restored run " + run_id));
  const json original = Events(tmp.Sub("volume/agent"));
  const json copy = Events(tmp.Sub("restored"));
  REQUIRE(copy.size() == backup.last_seq());
  REQUIRE(original.size() > copy.size());  // the agent went on after the backup
  for (size_t i = 0; i < copy.size(); ++i) {
    INFO("event " << i + 1);
    CHECK(copy[i] == original[i]);
  }
  CHECK(std::filesystem::exists(tmp.Sub("restored/workspace/n1.md")));

  // Run from the copy, the agent finishes the same goal with the same answer: a call that was
  // in flight at the backup is recovered as after kill -9 (an idempotent one runs again,
  // with its idempotency key).
  CommandResult resumed = Carapace({"run", spec, "--state-dir", tmp.Sub("restored")});
  INFO(resumed.out << resumed.err);
  CHECK(resumed.exit_code == 0);
  CHECK_THAT(resumed.out, ContainsSubstring("four placed"));
  const json finished = Events(tmp.Sub("restored"));
  CHECK(finished[0]["data"]["runId"] == run_id);
}

TEST_CASE("backup and restore refuse what they cannot do, naming it, and leave what exists alone", "[backup]") {
  TempDir tmp;
  const std::string spec = tmp.Write("s.yaml",
                                 "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: s}\nspec:\n"
                                 "  goal: g\n  model:\n    backend: scripted\n    script:\n      - text: done\n");
  REQUIRE(Carapace({"run", spec, "--state-dir", tmp.Sub("s")}).exit_code == 0);
  std::filesystem::create_directories(tmp.Sub("full"));
  std::ofstream(tmp.Sub("full/keep.txt")) << "mine";

  CommandResult into_full = Carapace({"backup", "--state-dir", tmp.Sub("s"), "--to", tmp.Sub("full")});
  CHECK(into_full.exit_code == 2);
  CHECK_THAT(into_full.err, ContainsSubstring("is not empty"));
  REQUIRE(Carapace({"backup", "--state-dir", tmp.Sub("s"), "--to", tmp.Sub("b")}).exit_code == 0);

  CommandResult over = Carapace({"restore", "--from", tmp.Sub("b"), "--state-dir", tmp.Sub("full")});
  CHECK(over.exit_code == 2);
  CHECK_THAT(over.err, ContainsSubstring("restore target " + tmp.Sub("full") + " is not empty"));
  std::ifstream kept(tmp.Sub("full/keep.txt"));
  std::string text((std::istreambuf_iterator<char>(kept)), {});
  CHECK(text == "mine");

  // A backup cut short (killed before its manifest was written) is never restored.
  std::filesystem::copy(tmp.Sub("b"), tmp.Sub("cut"), std::filesystem::copy_options::recursive);
  std::filesystem::remove(tmp.Sub("cut/") + carapace::kBackupManifest);
  CommandResult cut = Carapace({"restore", "--from", tmp.Sub("cut"), "--state-dir", tmp.Sub("r1")});
  CHECK(cut.exit_code != 0);
  CHECK_THAT(cut.err, ContainsSubstring("is not a Carapace backup"));
  CHECK_FALSE(std::filesystem::exists(tmp.Sub("r1/store")));

  // A manifest that does not match its store: nothing is left behind.
  {
    auto m = carapace::ReadFile(tmp.Sub("b/") + carapace::kBackupManifest);
    REQUIRE(m.ok());
    json j = json::parse(*m);
    j["lastSeq"] = j["lastSeq"].get<uint64_t>() + 5;
    std::ofstream(tmp.Sub("b/") + carapace::kBackupManifest) << j.dump();
  }
  CommandResult lying = Carapace({"restore", "--from", tmp.Sub("b"), "--state-dir", tmp.Sub("r2")});
  CHECK(lying.exit_code != 0);
  CHECK_THAT(lying.err, ContainsSubstring("does not hold what its manifest says"));
  CHECK_FALSE(std::filesystem::exists(tmp.Sub("r2/store")));
}

TEST_CASE("a copy of the volume taken while the worker is frozen mid-write opens, and the agent goes on as after "
          "kill -9",
          "[backup][snapshot]") {
  // A CSI VolumeSnapshot of the agent's claim is taken with the worker running: what it holds
  // is whatever had been written at that instant. Here the worker is frozen (SIGSTOP) at
  // moments spread over its run, mid-write or not, and its files are copied as they are.
  TempDir tmp;
  LedgerServer ledger(150);
  REQUIRE(ledger.Start());
  const std::string spec = tmp.Write("kept.yaml", Spec(ledger));
  WorkerProcess w(WORKER_BIN, spec, tmp.Sub("volume/agent"), tmp.path());
  REQUIRE(w.Start());
  REQUIRE(carapace::testing::WaitFor([&] { return w.Status().last_event_seq() > 0; }));
  std::vector<std::string> copies;
  for (int i = 0; i < 6 && w.child()->Running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + 37 * i));
    ::kill(w.child()->pid(), SIGSTOP);
    const std::string copy = tmp.Sub("snapshot-" + std::to_string(i));
    std::error_code ec;
    std::filesystem::copy(tmp.Sub("volume/agent"), copy, std::filesystem::copy_options::recursive, ec);
    ::kill(w.child()->pid(), SIGCONT);
    INFO(ec.message());
    REQUIRE_FALSE(ec);
    std::filesystem::remove(copy + "/carapace.lock", ec);  // the copy is no one's yet
    copies.push_back(copy);
  }
  REQUIRE(carapace::testing::WaitFor([&] { return w.Status().phase() == v1::PHASE_IDLE; }, 30000));
  w.Stop();
  const json original = Events(tmp.Sub("volume/agent"));
  REQUIRE(copies.size() >= 3);
  size_t mid_run = 0;  // copies taken before the agent was done: the case that matters
  for (const auto& copy : copies) {
    INFO(copy);
    // It opens; what it holds is the start of the original's log.
    const json held = Events(copy);
    REQUIRE(held.size() <= original.size());
    mid_run += held.size() < original.size();
    for (size_t i = 0; i < held.size(); ++i) CHECK(held[i] == original[i]);
    // And the agent goes on from it to the same end.
    CommandResult run = Carapace({"run", spec, "--state-dir", copy});
    INFO(run.out << run.err);
    CHECK(run.exit_code == 0);
    bool answered = false;
    for (const auto& e : Events(copy)) answered = answered || e["data"].value("result", "") == "four placed";
    CHECK(answered);
  }
  CHECK(mid_run >= 2);
}
