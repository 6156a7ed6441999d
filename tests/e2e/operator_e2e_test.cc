// End to end through the Kubernetes API double: the real kubectl applies AgentRuns, the
// real carapace-operator (as its least-privilege service account) reconciles them, and the
// process kubelet runs real carapace-worker processes for their pods. What a user sees
// through `kubectl get ar` is what these tests check.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
#include <catch2/catch_test_case_info.hpp>
#include <catch2/reporters/catch_reporter_event_listener.hpp>
#include <catch2/reporters/catch_reporter_registrars.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/hash.h"
#include "operator/kube/config.h"
#include "tests/e2e/e2e_cluster.h"
#include "tests/support/child_process.h"
#include "tests/support/kube_api_double.h"
#include "tests/support/fake_openai.h"
#include "tests/support/ledger_server.h"
#include "tests/support/otlp_receiver.h"
#include "tests/support/process_kubelet.h"
#include "tests/support/wait.h"
#include "tests/support/worker_process.h"

using namespace carapace::testing;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string kSource = CARAPACE_SOURCE_DIR;

// A scripted agent whose steps POST to (side effect) and PUT to (idempotent) a ledger.
std::string LedgerAgent(const std::string& name, const std::string& ledger_url, int steps, const std::string& extra = "") {
  const std::string host = ledger_url.substr(ledger_url.find("//") + 2);
  std::string script;
  for (int i = 1; i <= steps; ++i) {
    const std::string n = std::to_string(i);
    script += "      - toolCalls: [{name: orders, arguments: {method: POST, url: \"" + ledger_url + "/orders/" + n +
              "\", body: {order: " + n + "}}}, {name: items, arguments: {method: PUT, url: \"" + ledger_url + "/items/" + n +
              "\", body: {item: " + n + "}}}]\n";
  }
  script += "      - text: \"placed " + std::to_string(steps) + " orders\"\n";
  return "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: " + name + ", namespace: default}\nspec:\n"
         "  goal: place the orders\n"
         "  model:\n    backend: scripted\n    script:\n" + script +
         "  tools:\n"
         "    - {name: orders, kind: http, effect: side_effecting, http: {allowedHosts: [\"" + host + "\"]}}\n"
         "    - {name: items, kind: http, effect: idempotent, http: {allowedHosts: [\"" + host + "\"]}}\n"
         "  recovery: {unknownOutcome: tell_model}\n" + extra;
}

// Leaves a marker for each test case of the suite that ran, so the RBAC audit
// (tests/e2e/rbac_audit_test.cc) knows whether it saw the whole suite.
class RanMarker : public Catch::EventListenerBase {
 public:
  using Catch::EventListenerBase::EventListenerBase;
  void testCaseEnded(const Catch::TestCaseStats& stats) override {
    const char* dir = std::getenv("CARAPACE_RBAC_AUDIT_DIR");
    if (!dir || !*dir) return;
    fs::create_directories(dir);
    std::ofstream(std::string(dir) + "/ran-" + carapace::Sha256Hex(stats.testInfo->name).substr(0, 16)) << stats.testInfo->name;
  }
};
CATCH_REGISTER_LISTENER(RanMarker)

int CountPaths(const LedgerServer& ledger, const std::string& method, const std::string& path) {
  int n = 0;
  for (const auto& e : ledger.entries()) n += e.method == method && e.path == path;
  return n;
}

}  // namespace

TEST_CASE("kubectl apply runs the agent in a pod with its objects, and kubectl get ar shows its result", "[e2e]") {
  Cluster cluster;
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  cluster.Apply(LedgerAgent("orders", ledger.url(), 3));
  REQUIRE(cluster.WaitForPhase("orders", "Succeeded"));

  json ar = cluster.GetAr("orders");
  CHECK(ar["status"]["result"] == "placed 3 orders");
  CHECK(ar["status"]["observedGeneration"] == ar["metadata"]["generation"]);
  std::map<std::string, std::string> conditions;
  for (const auto& c : ar["status"]["conditions"]) conditions[c["type"]] = c["status"];
  CHECK(conditions["Accepted"] == "True");
  CHECK(conditions["Succeeded"] == "True");
  CHECK(conditions["Degraded"] == "False");
  CommandResult wait = cluster.Kubectl({"wait", "--for=condition=Ready", "ar/orders", "--timeout=30s"});
  INFO(wait.err);
  CHECK(wait.exit_code == 0);

  // Its objects exist and are owned by it.
  const std::string uid = ar["metadata"]["uid"];
  for (auto [api_version, plural, name] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"apps/v1", "statefulsets", "orders"}, {"v1", "services", "orders"},
           {"v1", "configmaps", "orders-spec"}, {"v1", "secrets", "orders-control"}}) {
    auto o = cluster.api().Get(api_version, plural, "default", name);
    INFO(plural << "/" << name);
    REQUIRE(o.ok());
    CHECK((*o)["metadata"]["ownerReferences"][0]["uid"] == uid);
  }
  CHECK(CountPaths(ledger, "POST", "/orders/3") == 1);
  // Steady: the worker is still asked for its status every second, and nothing is written.
  cluster.api().ResetCounters();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  CHECK(cluster.api().Requests("POST") + cluster.api().Requests("PUT") + cluster.api().Requests("PATCH") +
            cluster.api().Requests("DELETE") == 0);
  // The phase shows in the table kubectl prints.
  CommandResult table = cluster.Kubectl({"get", "ar"});
  CHECK_THAT(table.out, Catch::Matchers::ContainsSubstring("Succeeded"));
}

TEST_CASE("with tracing on, each reconcile is a span naming its AgentRun, and the agent's turns reach the receiver",
          "[e2e][tracing]") {
  OtlpReceiver receiver;
  REQUIRE(receiver.Start());
  Cluster cluster(1, nullptr, {"--worker-otlp-endpoint=" + receiver.endpoint()},
                  {{"OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()}, {"OTEL_BSP_SCHEDULE_DELAY", "50"}});
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  cluster.Apply(LedgerAgent("traced", ledger.url(), 2));
  REQUIRE(cluster.WaitForPhase("traced", "Succeeded"));
  const json ar = cluster.GetAr("traced");
  const std::string uid = ar["metadata"]["uid"];

  // The operator's spans: one per reconcile, each naming the AgentRun it reconciled.
  REQUIRE(receiver.WaitFor([&](const std::vector<ReceivedSpan>& spans) {
    for (const auto& s : spans) {
      if (s.name == "reconcile AgentRun" && s.Attr("carapace.agentrun.phase") == "Succeeded") return true;
    }
    return false;
  }));
  size_t reconciles = 0;
  for (const auto& s : receiver.SpansNamed("reconcile AgentRun")) {
    INFO(s.attributes.dump());
    CHECK(s.resource.at("service.name") == "carapace-operator");
    CHECK(s.Attr("k8s.namespace.name") == "default");
    CHECK(s.Attr("carapace.agentrun.name") == "traced");
    CHECK(s.Attr("carapace.agentrun.uid") == uid);
    CHECK(s.parent_span_id.empty());
    ++reconciles;
  }
  CHECK(reconciles >= 2);

  // The worker in the pod got the endpoint from the operator: its turn, named by the pod.
  REQUIRE(receiver.WaitFor([](const std::vector<ReceivedSpan>& spans) {
    for (const auto& s : spans) {
      if (s.name == "invoke_agent traced") return true;
    }
    return false;
  }));
  const ReceivedSpan turn = receiver.SpansNamed("invoke_agent traced").at(0);
  CHECK(turn.resource.at("service.name") == "carapace-worker");
  CHECK(turn.resource.at("k8s.pod.name") == "traced-0");
  CHECK(turn.resource.at("carapace.agentrun.name") == "traced");
  CHECK(receiver.SpansNamed("execute_tool ").size() >= 2);
  CHECK(receiver.refusals().empty());
  // What left and what did not, on the worker's /metrics.
  const std::string metrics = cluster.WorkerMetrics("traced-0");
  CHECK_THAT(metrics, Catch::Matchers::ContainsSubstring("carapace_trace_spans_exported_total"));
  CHECK_THAT(metrics, Catch::Matchers::ContainsSubstring("carapace_trace_spans_dropped_total{reason=\"queue_full\"} 0"));
}

TEST_CASE("a worker killed mid-run is restarted and resumes without repeating a side effect", "[e2e]") {
  Cluster cluster;
  LedgerServer ledger(150);  // each request takes 150 ms: the kill lands mid-run
  REQUIRE(ledger.Start());
  const int steps = 8;
  cluster.Apply(LedgerAgent("resilient", ledger.url(), steps));
  REQUIRE(WaitFor([&] { return ledger.entries().size() >= 4; }));
  const pid_t first = cluster.kubelet().WorkerPid("default", "resilient-0");
  REQUIRE(cluster.kubelet().Kill("default", "resilient-0", SIGKILL));
  REQUIRE(cluster.WaitForPhase("resilient", "Succeeded", 90000));
  CHECK(cluster.kubelet().Starts("default", "resilient-0") >= 2);
  CHECK(cluster.kubelet().WorkerPid("default", "resilient-0") != first);
  for (int i = 1; i <= steps; ++i) {
    INFO("order " << i);
    CHECK(CountPaths(ledger, "POST", "/orders/" + std::to_string(i)) <= 1);
  }
  // Idempotent calls may repeat, but only with the key they had.
  std::map<std::string, std::set<std::string>> keys;
  for (const auto& e : ledger.entries()) {
    if (e.method == "PUT") keys[e.path].insert(e.idempotency_key);
  }
  for (const auto& [path, k] : keys) CHECK(k.size() == 1);
}

TEST_CASE("suspend scales to zero and keeps the volume; unsuspend resumes the same run", "[e2e]") {
  Cluster cluster;
  LedgerServer ledger(300);
  REQUIRE(ledger.Start());
  const std::string manifest = LedgerAgent("sleeper", ledger.url(), 10);
  cluster.Apply(manifest);
  REQUIRE(WaitFor([&] { return ledger.entries().size() >= 2; }));
  const std::string claim = cluster.kubelet().ClaimDir("default", "state-sleeper-0");

  cluster.Apply(manifest + "  suspend: true\n");
  REQUIRE(cluster.WaitForPhase("sleeper", "Suspended"));
  REQUIRE(WaitFor([&] { return cluster.kubelet().WorkerPid("default", "sleeper-0") < 0; }));
  auto sts = cluster.api().Get("apps/v1", "statefulsets", "default", "sleeper");
  REQUIRE(sts.ok());
  CHECK((*sts)["spec"]["replicas"] == 0);
  CHECK(fs::exists(claim));
  const size_t calls_while_suspended = ledger.entries().size();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(ledger.entries().size() == calls_while_suspended);

  cluster.Apply(manifest + "  suspend: false\n");
  REQUIRE(cluster.WaitForPhase("sleeper", "Succeeded", 90000));
  for (int i = 1; i <= 10; ++i) CHECK(CountPaths(ledger, "POST", "/orders/" + std::to_string(i)) == 1);
}

TEST_CASE("delete removes every owned object and honours the volume retention policy", "[e2e]") {
  Cluster cluster;
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  cluster.Apply(LedgerAgent("kept", ledger.url(), 1));
  cluster.Apply(LedgerAgent("dropped", ledger.url(), 1, "  storage: {retention: {whenDeleted: Delete}}\n"));
  REQUIRE(cluster.WaitForPhase("kept", "Succeeded"));
  REQUIRE(cluster.WaitForPhase("dropped", "Succeeded"));
  REQUIRE(fs::exists(cluster.kubelet().ClaimDir("default", "state-dropped-0")));

  for (const char* name : {"kept", "dropped"}) {
    CommandResult r = cluster.Kubectl({"delete", "ar", name, "--timeout=60s"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
  }
  for (const std::string name : {"kept", "dropped"}) {
    REQUIRE(WaitFor([&] {
      return !cluster.api().Get("apps/v1", "statefulsets", "default", name).ok() &&
             !cluster.api().Get("v1", "configmaps", "default", name + "-spec").ok() &&
             !cluster.api().Get("v1", "services", "default", name).ok() &&
             !cluster.api().Get("v1", "secrets", "default", name + "-control").ok() &&
             !cluster.api().Get("v1", "pods", "default", name + "-0").ok();
    }));
    CHECK(WaitFor([&] { return cluster.kubelet().WorkerPid("default", name + "-0") < 0; }));
  }
  // Retain (the default) keeps the claim and its data; Delete removes both.
  CHECK(cluster.api().Get("v1", "persistentvolumeclaims", "default", "state-kept-0").ok());
  CHECK(fs::exists(cluster.kubelet().ClaimDir("default", "state-kept-0")));
  CHECK(WaitFor([&] { return !cluster.api().Get("v1", "persistentvolumeclaims", "default", "state-dropped-0").ok(); }));
  CHECK(WaitFor([&] { return !fs::exists(cluster.kubelet().ClaimDir("default", "state-dropped-0")); }));
}

TEST_CASE("an invalid AgentRun is not accepted, with the field path, and gets nothing", "[e2e]") {
  Cluster cluster;
  // What the CRD's schema can say, the API server refuses at kubectl apply.
  CommandResult refused = cluster.TryApply(
      "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: broken}\nspec:\n"
      "  goal: g\n  model: {backend: scripted, script: [{text: done}]}\n  budget: {maxSteps: 0}\n");
  CHECK(refused.exit_code != 0);
  CHECK_THAT(refused.err, Catch::Matchers::ContainsSubstring("spec.budget.maxSteps"));
  // What only the parser can judge (a cron range that goes backwards) is stored, and the
  // operator marks it Invalid with the field path.
  cluster.Apply(
      "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: broken}\nspec:\n"
      "  goal: g\n  model: {backend: scripted, script: [{text: done}]}\n"
      "  schedule: {cron: [{name: daily, schedule: \"0 9 * * 5-1\", prompt: go}]}\n");
  REQUIRE(cluster.WaitForPhase("broken", "Invalid"));
  json ar = cluster.GetAr("broken");
  std::string message;
  for (const auto& c : ar["status"]["conditions"]) {
    if (c["type"] == "Accepted") {
      CHECK(c["status"] == "False");
      message = c["message"];
    }
  }
  CHECK_THAT(message, Catch::Matchers::ContainsSubstring("spec.schedule.cron[0].schedule"));
  CHECK_FALSE(cluster.api().Get("apps/v1", "statefulsets", "default", "broken").ok());
  CHECK_FALSE(cluster.api().Get("v1", "configmaps", "default", "broken-spec").ok());
  CommandResult events = cluster.Kubectl({"get", "events", "-o", "json"});
  CHECK_THAT(events.out, Catch::Matchers::ContainsSubstring("InvalidSpec"));
}

TEST_CASE("two operators: one leads, and the other takes over within the lease when it is killed", "[e2e]") {
  Cluster cluster(2);
  REQUIRE(WaitFor([&] { return cluster.Leader(0) + cluster.Leader(1) == 1; }));
  const size_t leader = cluster.Leader(0) == 1 ? 0 : 1;
  const size_t standby = 1 - leader;
  // The standby stays a standby.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  CHECK(cluster.Leader(standby) == 0);

  cluster.operator_process(leader).Kill(SIGKILL);
  cluster.operator_process(leader).Wait(5000);
  const auto killed = std::chrono::steady_clock::now();
  REQUIRE(WaitFor([&] { return cluster.Leader(standby) == 1; }, 15000));
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  CHECK(took < 3 + 2 + 2);  // lease 3 s, plus a retry period and scheduling slack
  // And it reconciles.
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  cluster.Apply(LedgerAgent("after-failover", ledger.url(), 1));
  CHECK(cluster.WaitForPhase("after-failover", "Succeeded"));
}

TEST_CASE("dropped watches, expired history and conflicts are recovered from", "[e2e]") {
  Cluster cluster;
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  cluster.Apply(LedgerAgent("first", ledger.url(), 1));
  REQUIRE(cluster.WaitForPhase("first", "Succeeded"));

  cluster.api().DropWatches();
  cluster.api().ExpireHistory();
  // Conflicts on the next status writes: the operator retries them.
  cluster.api().FailNext(409, 2, "PUT", "/status");
  cluster.Apply(LedgerAgent("second", ledger.url(), 1));
  CHECK(cluster.WaitForPhase("second", "Succeeded"));
  cluster.api().DropWatches();
  cluster.Apply(LedgerAgent("third", ledger.url(), 1));
  CHECK(cluster.WaitForPhase("third", "Succeeded"));

  // The operator's metrics pass promtool and count the retries.
  auto [code, body] = HttpGet(cluster.operator_http_port(0), "/metrics");
  REQUIRE(code == 200);
  // The two injected conflicts failed two reconciles, which were retried.
  const std::string errors = "controller_runtime_reconcile_errors_total{controller=\"agentrun\"} ";
  const size_t at = body.find(errors);
  REQUIRE(at != std::string::npos);
  CHECK(std::stod(body.substr(at + errors.size())) >= 2);
  CHECK_THAT(body, Catch::Matchers::ContainsSubstring("workqueue_retries_total"));
  CHECK_THAT(body, Catch::Matchers::ContainsSubstring("carapace_agentruns{phase=\"Succeeded\"} 3"));
  const std::string scrape = cluster.dir().Sub("metrics.txt");
  std::ofstream(scrape) << body;
  CommandResult check = RunCommand({"/bin/sh", "-c", std::string(PROMTOOL_BIN) + " check metrics < " + scrape});
  INFO(check.out << check.err);
  CHECK(check.exit_code == 0);
}

TEST_CASE("an idle agent hibernates at no pod cost and wakes on a spec change with its run", "[e2e]") {
  Cluster cluster;
  const std::string manifest =
      "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: napper}\nspec:\n"
      "  goal: say you are ready\n"
      "  model:\n    backend: scripted\n    script:\n      - text: ready\n      - text: report written\n"
      "  schedule:\n    cron: [{name: yearly, schedule: \"0 0 1 1 *\", prompt: write the yearly report}]\n"
      "  idleTimeoutSeconds: 3\n";
  cluster.Apply(manifest);
  REQUIRE(cluster.WaitForPhase("napper", "Hibernating"));
  json ar = cluster.GetAr("napper");
  const std::string run_id = ar["status"]["runID"];
  CHECK_FALSE(run_id.empty());
  // Asleep until the cron prompt is due: the next 1 January, 00:00 UTC.
  const std::string wake_at = ar["status"]["hibernation"]["wakeAt"];
  CHECK(wake_at.substr(4) == "-01-01T00:00:00Z");
  REQUIRE(WaitFor([&] { return cluster.kubelet().WorkerPid("default", "napper-0") < 0; }));
  auto sts = cluster.api().Get("apps/v1", "statefulsets", "default", "napper");
  REQUIRE(sts.ok());
  CHECK((*sts)["spec"]["replicas"] == 0);

  // A spec change wakes it; how it runs changed, not what it does: the same run goes on.
  cluster.Apply(manifest + "  resources: {requests: {cpu: 20m, memory: 32Mi}}\n");
  REQUIRE(cluster.WaitForPhase("napper", "Idle"));
  REQUIRE(WaitFor([&] { return cluster.kubelet().WorkerPid("default", "napper-0") > 0; }));
  CHECK(cluster.GetAr("napper")["status"]["runID"] == run_id);
  CHECK(cluster.kubelet().Starts("default", "napper-0") == 2);
  CommandResult events = cluster.Kubectl({"get", "events", "-o", "json"});
  CHECK_THAT(events.out, Catch::Matchers::ContainsSubstring("Hibernated"));
  CHECK_THAT(events.out, Catch::Matchers::ContainsSubstring("Woken"));
}

TEST_CASE("drift is put back, a larger volume grows its claim, and an immutable change keeps the volume", "[e2e]") {
  Cluster cluster;
  // A class that can grow volumes: the API server's resize admission refuses it otherwise.
  cluster.Apply("apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: expandable}\n"
                "provisioner: example.com/disk\nallowVolumeExpansion: true\n");
  const std::string manifest =
      "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: keeper}\nspec:\n"
      "  goal: say you are ready\n"
      "  model:\n    backend: scripted\n    script:\n      - text: ready\n"
      "  schedule: {heartbeatSeconds: 3600}\n";
  cluster.Apply(manifest + "  storage: {size: 1Gi, storageClassName: expandable}\n");
  REQUIRE(cluster.WaitForPhase("keeper", "Idle"));
  const std::string run_id = cluster.GetAr("keeper")["status"]["runID"];

  // Someone edits the spec ConfigMap and scales the StatefulSet: both are put back.
  auto cm = cluster.api().Get("v1", "configmaps", "default", "keeper-spec");
  REQUIRE(cm.ok());
  (*cm)["data"]["agentrun.json"] = "{}";
  REQUIRE(cluster.api().Update("v1", "configmaps", "default", *cm).ok());
  auto sts = cluster.api().Get("apps/v1", "statefulsets", "default", "keeper");
  REQUIRE(sts.ok());
  const std::string sts_uid = (*sts)["metadata"]["uid"];
  (*sts)["spec"]["replicas"] = 3;
  REQUIRE(cluster.api().Update("apps/v1", "statefulsets", "default", *sts).ok());
  CHECK(WaitFor([&] {
    auto now = cluster.api().Get("v1", "configmaps", "default", "keeper-spec");
    auto s = cluster.api().Get("apps/v1", "statefulsets", "default", "keeper");
    return now.ok() && (*now)["data"]["agentrun.json"] != "{}" && s.ok() && (*s)["spec"]["replicas"] == 1;
  }));

  // A larger volume: the claim grows in place; the StatefulSet (whose claim template a
  // real server never lets change) stays.
  cluster.Apply(manifest + "  storage: {size: 3Gi, storageClassName: expandable}\n");
  CHECK(WaitFor([&] {
    auto pvc = cluster.api().Get("v1", "persistentvolumeclaims", "default", "state-keeper-0");
    return pvc.ok() && (*pvc)["spec"]["resources"]["requests"]["storage"] == "3Gi";
  }));
  auto same = cluster.api().Get("apps/v1", "statefulsets", "default", "keeper");
  REQUIRE(same.ok());
  CHECK((*same)["metadata"]["uid"] == sts_uid);

  // The storage class cannot change: the API server refuses the edit (the CRD's rule), and
  // nothing of the agent is touched.
  CommandResult refused = cluster.TryApply(manifest + "  storage: {size: 3Gi, storageClassName: fast}\n");
  CHECK(refused.exit_code != 0);
  CHECK_THAT(refused.err, Catch::Matchers::ContainsSubstring("storageClassName is immutable"));

  // A StatefulSet replaced by hand with another claim template (its immutable fields cannot
  // be edited in place) is recreated to the spec; the claim and the run are kept.
  json replaced = *same;
  for (const char* k : {"resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"}) {
    replaced["metadata"].erase(k);
  }
  replaced.erase("status");
  replaced["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] = "other";
  // Replaced while the operator is down (it would make its own at once otherwise), as an
  // older operator version might have left it.
  cluster.operator_process(0).Kill(SIGTERM);
  REQUIRE(cluster.operator_process(0).Wait(15000).exit_code == 0);
  REQUIRE(cluster.Kubectl({"delete", "statefulset", "keeper", "--cascade=orphan"}).exit_code == 0);
  auto created = cluster.api().Create("apps/v1", "statefulsets", "default", replaced);
  INFO(created.status().message());
  REQUIRE(created.ok());
  cluster.StartOperator();
  CHECK(WaitFor([&] {
    auto s = cluster.api().Get("apps/v1", "statefulsets", "default", "keeper");
    return s.ok() && (*s)["spec"]["volumeClaimTemplates"][0]["spec"].value("storageClassName", "") == "expandable";
  }));
  REQUIRE(cluster.WaitForPhase("keeper", "Idle"));
  REQUIRE(WaitFor([&] { return cluster.GetAr("keeper")["status"]["conditions"].dump().find("WorkerReady") != std::string::npos; }));
  CHECK(cluster.GetAr("keeper")["status"]["runID"] == run_id);
  CHECK(cluster.api().Get("v1", "persistentvolumeclaims", "default", "state-keeper-0").ok());
  CommandResult events = cluster.Kubectl({"get", "events", "-o", "json"});
  CHECK_THAT(events.out, Catch::Matchers::ContainsSubstring("StorageResized"));
  CHECK_THAT(events.out, Catch::Matchers::ContainsSubstring("Recreated"));
}

TEST_CASE("a pod that cannot start is replaced when the spec is fixed", "[e2e]") {
  Cluster cluster;
  // A key from a Secret that does not exist: the pod never starts (CreateContainerConfigError).
  cluster.Apply(
      "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: fixme}\nspec:\n"
      "  goal: say hello\n"
      "  model: {backend: openai, name: m, endpoint: \"http://127.0.0.1:9/v1\",\n"
      "          apiKey: {valueFrom: {secretKeyRef: {name: missing, key: key}}}}\n");
  REQUIRE(WaitFor([&] {
    auto pod = cluster.api().Get("v1", "pods", "default", "fixme-0");
    return pod.ok() && pod->dump().find("CreateContainerConfigError") != std::string::npos;
  }));
  CHECK(cluster.Phase("fixme") == "Pending");
  // The fix: a rolling update alone would wait for the broken pod forever.
  cluster.Apply(
      "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: fixme}\nspec:\n"
      "  goal: say hello\n"
      "  model: {backend: scripted, script: [{text: hello}]}\n");
  REQUIRE(cluster.WaitForPhase("fixme", "Succeeded"));
  CommandResult events = cluster.Kubectl({"get", "events", "-o", "json"});
  CHECK_THAT(events.out, Catch::Matchers::ContainsSubstring("StuckPodReplaced"));
}

TEST_CASE("a hibernating agent is woken for its next cron prompt", "[e2e]") {
  Cluster cluster;
  cluster.Apply(
      "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: minutely}\nspec:\n"
      "  goal: say you are ready\n"
      "  model:\n    backend: scripted\n    script:\n      - text: ready\n      - text: tick\n      - text: tock\n"
      "  schedule:\n    cron: [{name: every-minute, schedule: \"* * * * *\", prompt: tick}]\n"
      "  idleTimeoutSeconds: 1\n");
  REQUIRE(cluster.WaitForPhase("minutely", "Hibernating"));
  const int starts = cluster.kubelet().Starts("default", "minutely-0");
  // At the next whole minute the operator scales it back up, and the worker takes the prompt.
  REQUIRE(WaitFor([&] { return cluster.kubelet().Starts("default", "minutely-0") > starts; }, 75000));
  CHECK(WaitFor([&] { return cluster.GetAr("minutely").value("/status/step"_json_pointer, 0) >= 2; }, 30000));
}

TEST_CASE("an edited AgentRun is a new revision of the same agent: memory, queued message and run id kept, new tool used",
          "[e2e][revision]") {
  Cluster cluster;
  // Long-lived (a schedule): the goal stores a memory, then the agent waits for messages.
  const std::string head = "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: keeper}\nspec:\n";
  const std::string script =
      "  model:\n    backend: scripted\n    script:\n"
      "      - toolCalls: [{name: memory_store, arguments: {text: the customer prefers invoices by email}}]\n"
      "      - text: ready\n"
      "      - toolCalls: [{name: memory_search, arguments: {query: invoices}}]\n"
      "      - toolCalls: [{name: notes, arguments: {op: write, path: reply.md, content: invoice sent by email}}]\n"
      "      - text: done\n";
  const std::string v1 = head + "  instructions: You keep accounts.\n  goal: remember the customer\n" + script +
                         "  tools: [{name: memory, kind: memory}]\n  budget: {maxSteps: 3}\n"
                         "  schedule: {heartbeatSeconds: 3600}\n";
  cluster.Apply(v1);
  REQUIRE(cluster.WaitForPhase("keeper", "Idle"));
  const std::string run_id = cluster.GetAr("keeper")["status"]["runID"];
  // A message queued while the agent is paused stays in its inbox through the edit.
  CommandResult pause = cluster.WorkerCli("keeper", {"pause"});
  INFO(pause.out << pause.err);
  REQUIRE(pause.exit_code == 0);
  CommandResult send = cluster.WorkerCli("keeper", {"send", "send the invoice"});
  INFO(send.out << send.err);
  REQUIRE(send.exit_code == 0);
  REQUIRE(cluster.WaitForPhase("keeper", "Paused"));

  // The edit: new instructions, a tool added, the budget raised.
  const std::string v2 = head + "  instructions: You keep accounts, tersely.\n  goal: remember the customer\n" + script +
                         "  tools: [{name: memory, kind: memory}, {name: notes, kind: workspace}]\n"
                         "  budget: {maxSteps: 10}\n  schedule: {heartbeatSeconds: 3600}\n";
  cluster.Apply(v2);
  REQUIRE(WaitFor([&] { return cluster.GetAr("keeper").value("/status/revision"_json_pointer, 0) == 2; }, 60000));
  json ar = cluster.GetAr("keeper");
  CHECK(ar["status"]["runID"] == run_id);
  CHECK(ar["status"]["phase"] == "Paused");
  CommandResult resume = cluster.WorkerCli("keeper", {"resume"});
  INFO(resume.out << resume.err);
  REQUIRE(resume.exit_code == 0);
  REQUIRE(cluster.WaitForPhase("keeper", "Idle"));
  ar = cluster.GetAr("keeper");
  CHECK(ar["status"]["runID"] == run_id);
  CHECK(ar["status"]["result"] == "done");
  CHECK(cluster.kubelet().Starts("default", "keeper-0") == 2);
  CommandResult get = cluster.Kubectl({"get", "ar", "keeper"});
  CHECK_THAT(get.out, Catch::Matchers::ContainsSubstring("REVISION"));

  // Suspended, the worker lets go of its state dir: the log is read from the volume itself.
  cluster.Apply(v2 + "  suspend: true\n");
  REQUIRE(cluster.WaitForPhase("keeper", "Suspended"));
  REQUIRE(WaitFor([&] { return cluster.kubelet().WorkerPid("default", "keeper-0") < 0; }));
  const std::string claim = cluster.kubelet().ClaimDir("default", "state-keeper-0");
  CommandResult inspect;
  // The pod is gone once the worker has been told to stop; its process may still be draining.
  REQUIRE(WaitFor([&] {
    inspect = RunCommand({CARAPACE_BIN, "inspect", "--state-dir", claim + "/agent", "--json"});
    return inspect.exit_code == 0;
  }, 30000));
  const json log = json::parse(inspect.out);
  int run_starts = 0, revisions = 0;
  std::string found;
  for (const auto& e : log["events"]) {
    run_starts += e["type"] == "run_started";
    revisions += e["type"] == "spec_revised";
    // The queued message was answered with the memory of revision 1 ...
    if (e["type"] == "tool_result" && e["data"]["tool"] == "memory_search") found = e["data"]["output"].dump();
  }
  CHECK(run_starts == 1);
  CHECK(revisions == 1);
  CHECK_THAT(found, Catch::Matchers::ContainsSubstring("the customer prefers invoices by email"));
  std::ifstream reply(claim + "/agent/workspace/reply.md");
  std::string text((std::istreambuf_iterator<char>(reply)), {});
  CHECK(text == "invoice sent by email");  // ... and the tool of revision 2
}

TEST_CASE("a volume laid out by spec hash is adopted: the newest run continues, the others stay", "[e2e][revision]") {
  Cluster cluster;
  // Before revisions, the operator gave each spec its own state dir, runs/<12 hex>/. Two old
  // runs of this AgentRun on its volume: the newer one is the agent's life so far.
  // The claim is there from the old operator's StatefulSet (a real one keeps it: Retain).
  cluster.Apply("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: state-veteran-0, namespace: default}\n"
                "spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n");
  const std::string claim = cluster.kubelet().ClaimDir("default", "state-veteran-0");
  const std::string manifest = "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: veteran}\nspec:\n"
                               "  goal: say hello\n  model:\n    backend: scripted\n    script:\n      - text: hello\n";
  const std::string old_spec = cluster.dir().Sub("old.yaml");
  std::ofstream(old_spec) << manifest;
  fs::create_directories(claim + "/runs");
  for (const char* dir : {"/runs/0123456789ab", "/runs/ba9876543210"}) {
    CommandResult r = RunCommand({CARAPACE_BIN, "run", old_spec, "--state-dir", claim + dir});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the second one is newer
  }
  CommandResult newest = RunCommand({CARAPACE_BIN, "inspect", "--state-dir", claim + "/runs/ba9876543210", "--json"});
  REQUIRE(newest.exit_code == 0);
  const std::string run_id = json::parse(newest.out)["status"]["runId"];

  // The spec as it is now (its instructions edited since): a revision of that run.
  cluster.Apply(manifest + "  instructions: be kind\n");
  REQUIRE(cluster.WaitForPhase("veteran", "Succeeded"));
  REQUIRE(WaitFor([&] { return cluster.GetAr("veteran").value("/status/revision"_json_pointer, 0) == 2; }));
  json ar = cluster.GetAr("veteran");
  CHECK(ar["status"]["runID"] == run_id);
  CHECK(ar["status"]["result"] == "hello");
  CHECK(fs::exists(claim + "/agent/store"));
  CHECK(fs::exists(claim + "/runs/0123456789ab/store"));
  CHECK_FALSE(fs::exists(claim + "/runs/ba9876543210"));
}

TEST_CASE("a ConfigMap, Service or Secret that lost its labels or drifted is taken back", "[e2e]") {
  Cluster cluster;
  cluster.Apply("apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: owned}\nspec:\n"
                "  goal: say hello\n  model:\n    backend: scripted\n    script:\n      - text: hello\n"
                "  schedule: {heartbeatSeconds: 3600}\n");
  REQUIRE(cluster.WaitForPhase("owned", "Idle"));
  auto label = [&](const std::string& object) {
    auto l = [&](const std::string& kind, const std::string& name) {
      auto got = cluster.Kubectl({"get", kind, name, "-o", "json"});
      if (got.exit_code != 0) return std::string();
      return json::parse(got.out).value("/metadata/labels"_json_pointer, json::object()).value("app.kubernetes.io/managed-by", "");
    };
    const size_t slash = object.find('/');
    return l(object.substr(0, slash), object.substr(slash + 1));
  };
  // Labels taken off: out of the operator's caches, then taken back by name.
  for (const char* object : {"configmap/owned-spec", "service/owned"}) {
    REQUIRE(cluster.Kubectl({"label", object, "app.kubernetes.io/managed-by-"}).exit_code == 0);
  }
  CHECK(WaitFor([&] { return label("configmap/owned-spec") == "carapace-operator" && label("service/owned") == "carapace-operator"; }));
  // A Service edited by hand is put back.
  REQUIRE(cluster.Kubectl({"patch", "service", "owned", "--type", "json", "-p",
                           "[{\"op\":\"replace\",\"path\":\"/spec/ports/0/port\",\"value\":9999}]"})
              .exit_code == 0);
  CHECK(WaitFor([&] {
    auto svc = cluster.api().Get("v1", "services", "default", "owned");
    return svc.ok() && (*svc)["spec"]["ports"][0]["port"] == 7070;
  }));
  // The Secret is read by name (never watched): an edit is found when it is next read, at
  // the latest after a restart of the operator, and put back keeping the token.
  auto secret = cluster.api().Get("v1", "secrets", "default", "owned-control");
  REQUIRE(secret.ok());
  const json token = (*secret)["data"]["token"];
  REQUIRE(cluster.Kubectl({"label", "secret/owned-control", "app.kubernetes.io/managed-by-"}).exit_code == 0);
  cluster.operator_process(0).Kill(SIGTERM);
  REQUIRE(cluster.operator_process(0).Wait(15000).exit_code == 0);
  cluster.StartOperator();
  CHECK(WaitFor([&] { return label("secret/owned-control") == "carapace-operator"; }, 30000));
  CHECK(cluster.api().Get("v1", "secrets", "default", "owned-control")->value("/data/token"_json_pointer, json()) == token);
  CHECK(cluster.Phase("owned") == "Idle");
}

TEST_CASE("an AgentRun name at the limit gets every object; past it, or with a leading digit, it is refused at apply",
          "[e2e]") {
  Cluster cluster;
  const std::string longest = "a1-" + std::string(48, 'b') + "9";  // 52 characters
  REQUIRE(longest.size() == 52);
  auto manifest = [](const std::string& name) {
    return "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: " + name + "}\nspec:\n"
           "  goal: say hello\n  model:\n    backend: scripted\n    script:\n      - text: hello\n"
           "  schedule: {heartbeatSeconds: 3600}\n";
  };
  cluster.Apply(manifest(longest));
  REQUIRE(cluster.WaitForPhase(longest, "Idle"));
  CHECK(cluster.api().Get("v1", "services", "default", longest).ok());  // a DNS-1035 label
  auto pod = cluster.api().Get("v1", "pods", "default", longest + "-0");
  REQUIRE(pod.ok());
  // The StatefulSet's revision label, NAME-<10-character hash>, fits its 63 characters.
  CHECK(pod->value("/metadata/labels"_json_pointer, json::object()).value("controller-revision-hash", "").size() == 63);
  for (const std::string& bad : {std::string(53, 'a'), std::string("1st-researcher")}) {
    INFO(bad);
    CommandResult r = cluster.TryApply(manifest(bad));
    CHECK(r.exit_code != 0);
    CHECK_THAT(r.err, Catch::Matchers::ContainsSubstring("metadata.name"));
  }
}

TEST_CASE("a rotated model key reaches the running agent: its pod rolls, the run goes on, the next call uses the new key",
          "[e2e][secrets]") {
  const std::string key1 = "sk-first-key-0123456789", key2 = "sk-second-key-9876543210";
  FakeOpenAiServer model(key1);
  REQUIRE(model.Start());
  FakeCompletion ready, rotated;
  ready.content = {"ready"};
  rotated.content = {"done with the new key"};
  model.Push(ready);
  model.Push(rotated);
  Cluster cluster(1, nullptr, {"--secret-check-seconds", "1"});
  auto secret = [&](const std::string& key) {
    return "apiVersion: v1\nkind: Secret\nmetadata: {name: model-keys, namespace: default}\nstringData: {vllm: " + key + "}\n";
  };
  cluster.Apply(secret(key1));
  cluster.Apply("apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: keyed}\nspec:\n"
                "  goal: say you are ready\n"
                "  model:\n    backend: openai\n    name: m\n    endpoint: \"" + model.base_url() + "\"\n"
                "    apiKey: {valueFrom: {secretKeyRef: {name: model-keys, key: vllm}}}\n"
                "  schedule: {heartbeatSeconds: 3600}\n");
  REQUIRE(cluster.WaitForPhase("keyed", "Idle"));
  const std::string run_id = cluster.GetAr("keyed")["status"]["runID"];
  auto template_hash = [&] {
    auto sts = cluster.api().Get("apps/v1", "statefulsets", "default", "keyed");
    return sts.ok() ? sts->value("/spec/template/metadata/annotations/carapace.dev~1secrets-hash"_json_pointer, std::string()) : "";
  };
  const std::string hash1 = template_hash();
  CHECK(hash1.size() == 16);
  CHECK(hash1.find(key1) == std::string::npos);
  REQUIRE(cluster.kubelet().Starts("default", "keyed-0") == 1);

  // Steady: nothing rolls while the Secret stays as it is.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  CHECK(template_hash() == hash1);
  CHECK(cluster.kubelet().Starts("default", "keyed-0") == 1);

  // The key is rotated at the service and in the Secret: the operator sees it within its
  // check interval and the pod rolls (SIGTERM, the action in progress finishing first).
  model.SetApiKey(key2);
  cluster.Apply(secret(key2));
  REQUIRE(WaitFor([&] { return template_hash() != hash1 && !template_hash().empty(); }, 30000));
  REQUIRE(WaitFor([&] { return cluster.kubelet().Starts("default", "keyed-0") == 2; }, 60000));
  REQUIRE(cluster.WaitForPhase("keyed", "Idle"));
  CommandResult send = cluster.WorkerCli("keyed", {"send", "are you still there?"});
  INFO(send.out << send.err);
  REQUIRE(send.exit_code == 0);
  REQUIRE(WaitFor([&] { return cluster.GetAr("keyed").value("/status/result"_json_pointer, std::string()) == "done with the new key"; }, 60000));
  const auto requests = model.requests();
  REQUIRE(requests.size() >= 2);
  CHECK(requests.front().authorization == "Bearer " + key1);
  CHECK(requests.back().authorization == "Bearer " + key2);
  CHECK(cluster.GetAr("keyed")["status"]["runID"] == run_id);  // the same agent, not a new one
}

TEST_CASE("with --network-policy each agent gets a NetworkPolicy that follows its spec, costs no writes when "
          "settled, and goes with it",
          "[e2e][network-policy]") {
  Cluster cluster(1, nullptr,
                  {"--network-policy", "--network-policy-metrics-namespaces", "monitoring",
                   "--operator-pod-labels", "app.kubernetes.io/name=carapace-operator"});
  const std::string head = "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: fenced}\nspec:\n"
                           "  goal: say hello\n  model: {backend: scripted, script: [{text: hello}]}\n"
                           "  schedule: {heartbeatSeconds: 3600}\n";
  cluster.Apply(head);
  REQUIRE(cluster.WaitForPhase("fenced", "Idle"));
  auto policy = [&]() -> json {
    CommandResult r = cluster.Kubectl({"get", "networkpolicy", "fenced", "-o", "json"});
    return r.exit_code == 0 ? json::parse(r.out, nullptr, false) : json();
  };
  REQUIRE(WaitFor([&] { return policy().is_object(); }));
  json p = policy();
  const json ar = cluster.GetAr("fenced");
  CHECK(p["metadata"]["ownerReferences"][0]["uid"] == ar["metadata"]["uid"]);
  CHECK(p["spec"]["podSelector"]["matchLabels"]["carapace.dev/agentrun"] == "fenced");
  CHECK(p["spec"]["egress"].size() == 1);  // a scripted model: DNS only
  CHECK(p["spec"]["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "monitoring");

  // Settled: the server's defaults are in what the operator asks for, so nothing is written.
  cluster.api().ResetCounters();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  CHECK(cluster.api().Requests("POST") + cluster.api().Requests("PUT") + cluster.api().Requests("PATCH") +
            cluster.api().Requests("DELETE") == 0);

  // A tool added to the spec: its server's namespace is let out, and a host no rule can
  // name is said on the policy.
  cluster.Apply(head + "  tools:\n    - {name: mcp, kind: mcp, mcp: {url: \"http://mcp.tools.svc:3001/mcp\"}}\n"
                       "    - {name: web, kind: http, http: {allowedHosts: [api.example.com]}}\n");
  REQUIRE(WaitFor([&] { return policy()["spec"]["egress"].size() == 2; }, 30000));
  p = policy();
  CHECK(p["spec"]["egress"][1]["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "tools");
  CHECK(p["metadata"]["annotations"]["carapace.dev/unexpressed-egress"] == "api.example.com");

  // A person edits the policy by hand: it is put back.
  CommandResult edit = cluster.Kubectl({"patch", "networkpolicy", "fenced", "--type=merge", "-p",
                                        R"({"spec":{"egress":[{"to":[{"ipBlock":{"cidr":"0.0.0.0/0"}}]}]}})"});
  INFO(edit.err);
  REQUIRE(edit.exit_code == 0);
  CHECK(WaitFor([&] { return policy()["spec"]["egress"].size() == 2; }, 30000));

  // It goes with its AgentRun.
  REQUIRE(cluster.Kubectl({"delete", "ar", "fenced"}).exit_code == 0);
  CHECK(WaitFor([&] { return !policy().is_object(); }, 30000));
}
