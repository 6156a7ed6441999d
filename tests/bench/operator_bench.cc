// Operator benchmark (a program, not a timed test): 1,000 AgentRuns applied to the
// Kubernetes API double with client rate limits off; how long until every one has its
// StatefulSet and Accepted=True, API writes per AgentRun from new to steady, reconcile
// p50/p99 (from the operator's own histogram), and the operator's peak RSS; then the
// operator restarted, and its writes per minute at steady state over the 1,000. Before that,
// 8 AgentRuns with real workers (the process kubelet) run to steady, half long-lived (Idle)
// and half one-shot (Succeeded), for the writes an agent costs when its pod really runs. The
// floor is the same double answering the same number of plain writes from a client with as
// many threads as the operator has workers, measured in the same run.
#include <catch2/catch_test_macros.hpp>

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/manifest.h"
#include "common/process_setup.h"
#include "operator/kube/config.h"
#include "operator/kube/rest_client.h"
#include "tests/bench/bench_stats.h"
#include "tests/support/child_process.h"
#include "tests/support/kube_api_double.h"
#include "tests/support/process_kubelet.h"
#include "tests/support/worker_process.h"

using namespace carapace;
using namespace carapace::testing;
using nlohmann::json;

namespace {

constexpr int kAgentRuns = 1000;
constexpr int kWorkers = 2;

int64_t PeakRssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

// The q-quantile of a Prometheus histogram in a scrape, interpolated within its bucket.
double HistogramQuantile(const std::string& scrape, const std::string& name, double q) {
  std::vector<std::pair<double, double>> buckets;  // le, cumulative count
  std::istringstream in(scrape);
  std::string line;
  const std::string prefix = name + "_bucket{";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    size_t le = line.find("le=\"");
    size_t end = line.find('"', le + 4);
    std::string bound = line.substr(le + 4, end - le - 4);
    double count = std::stod(line.substr(line.rfind(' ') + 1));
    buckets.emplace_back(bound == "+Inf" ? 1e300 : std::stod(bound), count);
  }
  if (buckets.empty() || buckets.back().second == 0) return 0;
  const double rank = q * buckets.back().second;
  double prev_bound = 0, prev_count = 0;
  for (const auto& [bound, count] : buckets) {
    if (count >= rank) {
      if (bound > 1e299) return prev_bound;
      return prev_bound + (bound - prev_bound) * (rank - prev_count) / std::max(1.0, count - prev_count);
    }
    prev_bound = bound;
    prev_count = count;
  }
  return prev_bound;
}

json AgentRun(int i) {
  return {{"apiVersion", "carapace.dev/v1alpha1"},
          {"kind", "AgentRun"},
          {"metadata", {{"name", "agent-" + std::to_string(i)}, {"namespace", "bench"}}},
          {"spec", {{"goal", "benchmark agent " + std::to_string(i)},
                    {"model", {{"backend", "scripted"}, {"script", json::array({{{"text", "done"}}})}}}}}};
}

bool Accepted(const json& ar) {
  for (const auto& c : ar.value("/status/conditions"_json_pointer, json::array())) {
    if (c.value("type", "") == "Accepted") return c.value("status", "") == "True";
  }
  return false;
}

int64_t Writes(const KubeApiDouble& api) {
  return api.Requests("POST") + api.Requests("PUT") + api.Requests("PATCH") + api.Requests("DELETE");
}

ChildProcess* StartOperator(const std::string& kubeconfig, int http_port) {
  auto* op = new ChildProcess({OPERATOR_BIN, "--kubeconfig", kubeconfig, "--http-listen",
                               "127.0.0.1:" + std::to_string(http_port), "--qps", "0", "--no-queue-rate-limit",
                               "--workers", std::to_string(kWorkers), "--status-interval-seconds", "2"});
  while (HttpGet(http_port, "/readyz").first != 200) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return op;
}

// Writes per AgentRun from new to steady with real workers: `n` long-lived agents (heartbeat,
// reach Idle) and `n` one-shot ones (reach Succeeded). Returns {long-lived, one-shot}
// averages, or {-1, -1} when they did not get there.
std::pair<double, double> WritesWithWorkers(const std::string& source, const KubeApiDoubleOptions& options, int n) {
  TempDir dir;
  KubeApiDouble api(options);
  if (!api.Start().ok()) return {-1, -1};
  auto crd = LoadYamlFile(source + "/crds/carapace.dev_agentruns.yaml");
  if (!crd.ok() || !api.Create("apiextensions.k8s.io/v1", "customresourcedefinitions", "", YamlToJson(*crd)).ok()) {
    return {-1, -1};
  }
  LoopbackBlock loopback(2 * n);
  ProcessKubeletOptions k;
  k.worker_bin = WORKER_BIN;
  k.root = dir.Sub("node");
  k.first_ip = loopback.first();
  ProcessKubelet kubelet(&api, k);
  kubelet.Start();
  const std::string kubeconfig = dir.Sub("operator.kubeconfig");
  (void)api.WriteKubeconfig(kubeconfig, options.operator_token);
  std::unique_ptr<ChildProcess> op(StartOperator(kubeconfig, FreePort()));
  auto measure = [&](bool long_lived) -> double {
    api.ResetCounters();
    for (int i = 0; i < n; ++i) {
      json ar = AgentRun(i);
      ar["metadata"]["name"] = std::string(long_lived ? "service-" : "task-") + std::to_string(i);
      ar["metadata"]["namespace"] = "default";
      if (long_lived) ar["spec"]["schedule"] = {{"heartbeatSeconds", 3600}};
      (void)api.Create("carapace.dev/v1alpha1", "agentruns", "default", ar);
    }
    const std::string want = long_lived ? "Idle" : "Succeeded";
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (std::chrono::steady_clock::now() < deadline) {
      int done = 0;
      for (const auto& ar : api.List("carapace.dev/v1alpha1", "agentruns", "default")) {
        const std::string name = ar["metadata"]["name"];
        done += name.rfind(long_lived ? "service-" : "task-", 0) == 0 &&
                ar.value("/status/phase"_json_pointer, std::string()) == want;
      }
      if (done == n) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    std::this_thread::sleep_for(std::chrono::seconds(6));  // steady: three status polls, nothing more written
    return static_cast<double>(Writes(api)) / n;
  };
  const double long_lived = measure(true);
  const double one_shot = measure(false);
  op->Kill(SIGTERM);
  op->Wait(20000);
  kubelet.Stop();
  return {long_lived, one_shot};
}

}  // namespace

// A Catch2 program with one test case: the process kubelet (the phase with real workers)
// reports through Catch2 assertions, which need a running test case. Figures go to stdout.
TEST_CASE("operator benchmark", "[bench]") {
  SetUpProcess();
  log::SetLevel(log::Level::kWarn);
  const std::string source = CARAPACE_SOURCE_DIR;
  TempDir dir;
  KubeApiDoubleOptions options;
  options.rbac_files = {source + "/deploy/rbac/cluster_role.yaml", source + "/deploy/rbac/leader_election_role.yaml"};
  options.watch_history = 1000000;
  KubeApiDouble api(options);
  REQUIRE(api.Start().ok());
  auto crd = LoadYamlFile(source + "/crds/carapace.dev_agentruns.yaml");
  REQUIRE(crd.ok());
  REQUIRE(api.Create("apiextensions.k8s.io/v1", "customresourcedefinitions", "", YamlToJson(*crd)).ok());

  const auto [service_writes, task_writes] = WritesWithWorkers(source, options, 4);

  // Floor: the same number of writes the operator should need (6 per AgentRun), as plain
  // ConfigMap creates from kWorkers threads.
  kube::KubeConfig floor_config;
  floor_config.server = api.url();
  floor_config.token = options.operator_token;
  kube::RestClientOptions floor_options;
  floor_options.qps = 0;
  auto client = kube::RestClient::Create(floor_config, floor_options);
  REQUIRE(client.ok());
  const int floor_writes = 6 * kAgentRuns;
  const auto floor_start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < kWorkers; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < floor_writes; i += kWorkers) {
        json cm = {{"apiVersion", "v1"}, {"kind", "ConfigMap"},
                   {"metadata", {{"name", "floor-" + std::to_string(i)}, {"namespace", "floor"}}},
                   {"data", {{"k", "v"}}}};
        (void)(*client)->Create(kube::ConfigMaps(), "floor", cm);
      }
    });
  }
  for (auto& t : threads) t.join();
  const double floor_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - floor_start).count();

  std::string kubeconfig = dir.Sub("operator.kubeconfig");
  (void)api.WriteKubeconfig(kubeconfig, options.operator_token);
  const int http_port = FreePort();
  std::unique_ptr<ChildProcess> op(StartOperator(kubeconfig, http_port));
  api.ResetCounters();

  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kAgentRuns; ++i) (void)api.Create("carapace.dev/v1alpha1", "agentruns", "bench", AgentRun(i));
  const double applied_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double done_s = 0;
  while (true) {
    int ready = 0;
    std::map<std::string, bool> has_sts;
    for (const auto& sts : api.List("apps/v1", "statefulsets", "bench")) has_sts[sts["metadata"]["name"]] = true;
    for (const auto& ar : api.List("carapace.dev/v1alpha1", "agentruns", "bench")) {
      ready += Accepted(ar) && has_sts.count(ar["metadata"]["name"]);
    }
    done_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (ready == kAgentRuns || done_s > 600) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // listing 2,000 objects costs the double CPU too
  }
  const int64_t writes_at_done = Writes(api);
  std::this_thread::sleep_for(std::chrono::seconds(3));  // steady: nothing more should be written
  const int64_t writes = Writes(api);
  const int64_t reads = api.Requests("GET");
  const int64_t watches = api.Requests("WATCH");
  auto [code, scrape] = HttpGet(http_port, "/metrics");
  const int64_t rss = PeakRssKiB(op->pid());
  op->Kill(SIGTERM);
  op->Wait(20000);

  // Restarted (an upgrade, a failover): it lists everything again and must find nothing to do.
  const int restart_port = FreePort();
  const auto restart = std::chrono::steady_clock::now();
  op.reset(StartOperator(kubeconfig, restart_port));
  const double restart_ready_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - restart).count();
  api.ResetCounters();
  constexpr int kSteadyWindowS = 30;
  std::this_thread::sleep_for(std::chrono::seconds(kSteadyWindowS));
  const int64_t steady_writes = Writes(api);
  op->Kill(SIGTERM);
  op->Wait(20000);

  const double p50 = HistogramQuantile(scrape, "controller_runtime_reconcile_time_seconds", 0.50) * 1000;
  const double p99 = HistogramQuantile(scrape, "controller_runtime_reconcile_time_seconds", 0.99) * 1000;
  std::printf("floor: %d plain writes to the API double from %d threads in %.2f s (%.0f writes/s)\n", floor_writes,
              kWorkers, floor_s, floor_writes / floor_s);
  std::printf("operator: %d AgentRuns (created in %.2f s) all with a StatefulSet and Accepted=True after %.2f s; "
              "ratio to the floor %.2f (1.0 = as fast as the raw writes)\n",
              kAgentRuns, applied_s, done_s, done_s / floor_s);
  std::printf("API writes per AgentRun, new to steady: %.2f (aim <= 6; %.2f when all were accepted); reads %.2f, "
              "watch requests %lld\n",
              static_cast<double>(writes) / kAgentRuns, static_cast<double>(writes_at_done) / kAgentRuns,
              static_cast<double>(reads) / kAgentRuns, static_cast<long long>(watches));
  std::printf("reconcile time (operator's histogram, interpolated): p50 %.2f ms, p99 %.2f ms\n", p50, p99);
  std::printf("operator peak RSS with %d AgentRuns: %.1f MiB (aim < 30 MiB)\n", kAgentRuns, rss / 1024.0);
  std::printf("after a restart (ready in %.2f s): %.1f writes per minute at steady state over %d AgentRuns "
              "(aim 0; %lld in %d s)\n",
              restart_ready_s, steady_writes * 60.0 / kSteadyWindowS, kAgentRuns, static_cast<long long>(steady_writes),
              kSteadyWindowS);
  std::printf("with running workers, API writes per AgentRun from new to steady: %.2f long-lived (Idle), "
              "%.2f one-shot (Succeeded)\n",
              service_writes, task_writes);
  CHECK(code == 200);
  CHECK(done_s <= 600);
  CHECK(service_writes >= 0);
}
