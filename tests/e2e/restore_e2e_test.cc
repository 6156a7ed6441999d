// An AgentRun that starts from a copy (spec.storage.restoreFrom), end to end: an agent made
// on this machine by a real worker, backed up with the CLI onto a claim, applied with kubectl;
// the pod's init container (the real CLI, run by the process kubelet as a kubelet runs init
// containers) restores it, and the worker in the cluster goes on with the same run.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "operator/kube/config.h"
#include "tests/e2e/e2e_cluster.h"
#include "tests/support/child_process.h"
#include "tests/support/repo_files.h"
#include "tests/support/wait.h"
#include "tests/support/worker_process.h"

using namespace carapace::testing;
using Catch::Matchers::ContainsSubstring;
using nlohmann::json;
namespace fs = std::filesystem;
namespace v1 = carapace::worker::v1;

namespace {

// A long-lived agent: its goal stores a memory, then it waits for messages; the first message
// is answered by searching that memory.
std::string Agent(const std::string& name) {
  return "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: " + name + ", namespace: default}\n" +
         R"(spec:
  goal: remember the customer
  model:
    backend: scripted
    script:
      - toolCalls: [{name: memory_store, arguments: {text: the customer prefers invoices by email}}]
      - text: ready
      - toolCalls: [{name: memory_search, arguments: {query: invoices}}]
      - text: found it
  tools: [{name: memory, kind: memory}]
  schedule: {heartbeatSeconds: 3600}
)";
}
const std::string kAgent = Agent("mover");

const std::string kClaim = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: agent-moves, namespace: default}\n"
                           "spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n";

// The agent's life on this machine: its goal done, waiting for messages. Returns its status.
v1::RunStatus MakeAgentHere(const TempDir& dir, const std::string& state_dir) {
  const std::string spec = dir.Write("mover.yaml", kAgent);
  WorkerProcess worker(WORKER_BIN, spec, state_dir, dir.path());
  REQUIRE(worker.Start());
  v1::RunStatus status;
  REQUIRE(WaitFor([&] {
    status = worker.Status();
    return status.phase() == v1::PHASE_IDLE && status.result() == "ready";
  }));
  CommandResult stopped = worker.Stop();
  INFO(stopped.err);
  REQUIRE(stopped.exit_code == 0);
  return status;
}

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

}  // namespace

TEST_CASE("an AgentRun restored from a backup on a claim goes on with the same run, and a new pod keeps what it did since",
          "[e2e][restore]") {
  Cluster cluster;
  TempDir here;
  const v1::RunStatus local = MakeAgentHere(here, here.Sub("state"));

  // The backup goes onto a claim in the AgentRun's namespace (as from a pod that mounts it).
  cluster.Apply(kClaim);
  const std::string moves = cluster.kubelet().ClaimDir("default", "agent-moves");
  fs::create_directories(moves + "/alice");
  CommandResult backup = RunCommand({CARAPACE_BIN, "backup", "--state-dir", here.Sub("state"), "--to", moves + "/alice/mover"});
  INFO(backup.out << backup.err);
  REQUIRE(backup.exit_code == 0);

  cluster.Apply(kAgent + "  storage: {restoreFrom: {claimName: agent-moves, path: alice/mover}}\n");
  REQUIRE(cluster.WaitForPhase("mover", "Idle"));
  json ar = cluster.GetAr("mover");
  CHECK(ar["status"]["runID"] == local.run_id());
  CHECK(ar["status"]["result"] == "ready");
  const std::string init_log = cluster.kubelet().InitLog("default", "mover-0", "restore");
  INFO("restore container: " << init_log);
  CHECK(Count(init_log, "--- run ") == 1);
  CHECK_THAT(init_log, ContainsSubstring("--- run 1: exit 0"));
  auto pod = cluster.api().Get("v1", "pods", "default", "mover-0");
  REQUIRE(pod.ok());
  CHECK(pod->value("/status/initContainerStatuses/0/state/terminated/reason"_json_pointer, std::string()) == "Completed");

  // The agent goes on in the cluster: a message, answered from the memory made on this machine.
  CommandResult send = cluster.WorkerCli("mover", {"send", "how does the customer want invoices?"});
  INFO(send.out << send.err);
  REQUIRE(send.exit_code == 0);
  REQUIRE(WaitFor([&] { return cluster.GetAr("mover").value("/status/result"_json_pointer, std::string()) == "found it"; },
                  60000));

  // The worker restarts in its pod: init containers do not run again (only a new pod runs them).
  REQUIRE(cluster.kubelet().Kill("default", "mover-0", SIGKILL));
  REQUIRE(WaitFor([&] { return cluster.kubelet().Starts("default", "mover-0") == 2 && cluster.Phase("mover") == "Idle"; },
                  60000));
  CHECK(Count(cluster.kubelet().InitLog("default", "mover-0", "restore"), "--- run ") == 1);

  // A new pod (deleted, as on a drained node) runs the restore again: it finds the run it made
  // and leaves it as it is.
  CommandResult deleted = cluster.Kubectl({"delete", "pod", "mover-0"});
  INFO(deleted.out << deleted.err);
  REQUIRE(deleted.exit_code == 0);
  REQUIRE(WaitFor([&] { return Count(cluster.kubelet().InitLog("default", "mover-0", "restore"), "--- run ") == 2; },
                  60000));
  const std::string again = cluster.kubelet().InitLog("default", "mover-0", "restore");
  INFO("restore container: " << again);
  CHECK_THAT(again, ContainsSubstring("already restored"));
  CHECK_THAT(again, ContainsSubstring("--- run 2: exit 0"));
  REQUIRE(WaitFor([&] { return cluster.kubelet().Starts("default", "mover-0") == 3 && cluster.Phase("mover") == "Idle"; },
                  60000));
  ar = cluster.GetAr("mover");
  CHECK(ar["status"]["runID"] == local.run_id());
  CHECK(ar["status"]["result"] == "found it");

  // The whole life in one log: the events made here, then the cluster's, one run.
  cluster.Apply(kAgent + "  storage: {restoreFrom: {claimName: agent-moves, path: alice/mover}}\n  suspend: true\n");
  REQUIRE(cluster.WaitForPhase("mover", "Suspended"));
  const std::string state = cluster.kubelet().ClaimDir("default", "state-mover-0") + "/agent";
  CommandResult inspect;
  REQUIRE(WaitFor([&] {
    inspect = RunCommand({CARAPACE_BIN, "inspect", "--state-dir", state, "--json"});
    return inspect.exit_code == 0;
  }, 30000));
  const json log = json::parse(inspect.out);
  CHECK(log["status"]["runId"] == local.run_id());
  int run_starts = 0;
  int64_t last_seq = 0;
  std::string found;
  for (const auto& e : log["events"]) {
    run_starts += e["type"] == "run_started";
    if (e["type"] == "tool_result" && e["data"]["tool"] == "memory_search") found = e["data"]["output"].dump();
    last_seq = std::max<int64_t>(last_seq, e.value("seq", int64_t{0}));
  }
  CHECK(run_starts == 1);
  CHECK(last_seq > static_cast<int64_t>(local.last_event_seq()));
  CHECK_THAT(found, ContainsSubstring("the customer prefers invoices by email"));
}

TEST_CASE("a copy that cannot be restored keeps the worker from starting, and the pod says why", "[e2e][restore]") {
  Cluster cluster;
  cluster.Apply(kClaim);
  fs::create_directories(cluster.kubelet().ClaimDir("default", "agent-moves"));
  cluster.Apply(kAgent + "  storage: {restoreFrom: {claimName: agent-moves, path: alice/no-such-backup}}\n");
  // The restore fails, and is tried again after a back-off; the worker never starts on an
  // empty state dir (that would be a new agent, not the one moved here).
  json pod;
  REQUIRE(WaitFor([&] {
    auto p = cluster.api().Get("v1", "pods", "default", "mover-0");
    if (!p.ok()) return false;
    pod = *p;
    return pod.value("/status/initContainerStatuses/0/restartCount"_json_pointer, 0) >= 2;
  }, 60000));
  INFO(pod.dump(2));
  CHECK(cluster.kubelet().Starts("default", "mover-0") == 0);
  CHECK(pod["status"]["phase"] == "Pending");
  CHECK(pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing");
  const json& init = pod["status"]["initContainerStatuses"][0];
  CHECK(init["name"] == "restore");
  CHECK(init["lastState"]["terminated"]["exitCode"] != 0);
  // terminationMessagePolicy FallbackToLogsOnError: the CLI's reason, for kubectl describe.
  CHECK_THAT(init["lastState"]["terminated"].value("message", ""), ContainsSubstring("no-such-backup"));
  CHECK(cluster.Phase("mover") == "Pending");
  CHECK_FALSE(fs::exists(cluster.kubelet().ClaimDir("default", "state-mover-0") + "/agent/store"));
  // The AgentRun says so too: Degraded, with the CLI's reason.
  json degraded;
  REQUIRE(WaitFor([&] {
    for (const auto& c : cluster.GetAr("mover").value("/status/conditions"_json_pointer, json::array())) {
      if (c.value("type", "") == "Degraded") degraded = c;
    }
    return degraded.value("reason", "") == "RestoreFailed";
  }, 30000));
  CHECK(degraded["status"] == "True");
  CHECK_THAT(degraded.value("message", ""), ContainsSubstring("no-such-backup"));
}

TEST_CASE("restoreFrom is refused by the API server when it is added to an AgentRun that exists", "[e2e][restore]") {
  Cluster cluster;
  cluster.Apply(kAgent);
  REQUIRE(cluster.WaitForPhase("mover", "Idle"));
  CommandResult refused = cluster.TryApply(kAgent + "  storage: {restoreFrom: {claimName: agent-moves, path: alice/mover}}\n");
  CHECK(refused.exit_code != 0);
  CHECK_THAT(refused.err, ContainsSubstring("spec.storage.restoreFrom"));
  CHECK_THAT(refused.err, ContainsSubstring("restoreFrom is immutable"));
  auto sts = cluster.api().Get("apps/v1", "statefulsets", "default", "mover");
  REQUIRE(sts.ok());
  CHECK_FALSE((*sts)["spec"]["template"]["spec"].contains("initContainers"));
}

TEST_CASE("an export archive moves the agent into the cluster once: a second AgentRun is refused it, a fork is a new agent",
          "[e2e][restore]") {
  Cluster cluster;
  TempDir here;
  const v1::RunStatus local = MakeAgentHere(here, here.Sub("state"));
  cluster.Apply(kClaim);
  const std::string moves = cluster.kubelet().ClaimDir("default", "agent-moves");
  fs::create_directories(moves);
  CommandResult exported =
      RunCommand({CARAPACE_BIN, "export", "--state-dir", here.Sub("state"), "--to", moves + "/mover.carapace"});
  INFO(exported.out << exported.err);
  REQUIRE(exported.exit_code == 0);
  const std::string restore_from = "  storage: {restoreFrom: {claimName: agent-moves, path: mover.carapace}}\n";

  cluster.Apply(kAgent + restore_from);
  REQUIRE(cluster.WaitForPhase("mover", "Idle"));
  json ar = cluster.GetAr("mover");
  CHECK(ar["status"]["runID"] == local.run_id());
  // The claim beside the archive names this AgentRun: namespace, name and uid.
  const std::string uid = ar["metadata"]["uid"];
  CHECK_THAT(ReadText(moves + "/mover.carapace.imported"), ContainsSubstring("default/mover/" + uid));

  // Another AgentRun from the same archive, not a fork: two copies of one agent must never
  // both act. Its pod never starts a worker, and says why.
  cluster.Apply(Agent("twin") + restore_from);
  json pod;
  REQUIRE(WaitFor([&] {
    auto p = cluster.api().Get("v1", "pods", "default", "twin-0");
    if (!p.ok()) return false;
    pod = *p;
    return pod.value("/status/initContainerStatuses/0/restartCount"_json_pointer, 0) >= 1;
  }, 60000));
  INFO(pod.dump(2) << "\nrestore container: " << cluster.kubelet().InitLog("default", "twin-0", "restore"));
  const std::string why = pod.value("/status/initContainerStatuses/0/lastState/terminated/message"_json_pointer, std::string());
  CHECK_THAT(why, ContainsSubstring("imported already"));
  CHECK_THAT(why, ContainsSubstring("default/mover/" + uid));
  CHECK(cluster.kubelet().Starts("default", "twin-0") == 0);
  CHECK(cluster.Phase("twin") == "Pending");
  CHECK(WaitFor([&] { return cluster.GetAr("twin").dump().find("RestoreFailed") != std::string::npos; }, 30000));

  // fork: a new agent from the same archive, with its own run id and what the copy knew.
  cluster.Apply(Agent("offshoot") + "  storage: {restoreFrom: {claimName: agent-moves, path: mover.carapace, fork: true}}\n");
  REQUIRE(cluster.WaitForPhase("offshoot", "Idle"));
  json fork = cluster.GetAr("offshoot");
  CHECK(fork["status"]["runID"] != local.run_id());
  CHECK(fork["status"]["result"] == "ready");
  // The original, moved here first, is untouched.
  CHECK(cluster.GetAr("mover")["status"]["runID"] == local.run_id());
}
