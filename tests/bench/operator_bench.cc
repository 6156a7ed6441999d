// Operator benchmark (a program, not a timed test): 1,000 AgentRuns applied to the
// Kubernetes API double with client rate limits off; how long until every one has its
// StatefulSet and Accepted=True, API writes per AgentRun from new to steady, reconcile
// p50/p99 (from the operator's own histogram), and the operator's peak RSS. The floor is the
// same double answering the same number of plain writes from a client with as many
// threads as the operator has workers, measured in the same run.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
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

}  // namespace

int main() {
  SetUpProcess();
  log::SetLevel(log::Level::kWarn);
  const std::string source = CARAPACE_SOURCE_DIR;
  TempDir dir;
  KubeApiDoubleOptions options;
  options.rbac_files = {source + "/deploy/rbac/cluster_role.yaml", source + "/deploy/rbac/leader_election_role.yaml"};
  options.watch_history = 1000000;
  KubeApiDouble api(options);
  if (!api.Start().ok()) return 1;
  auto crd = LoadYamlFile(source + "/crds/carapace.dev_agentruns.yaml");
  if (!crd.ok() || !api.Create("apiextensions.k8s.io/v1", "customresourcedefinitions", "", YamlToJson(*crd)).ok()) {
    std::fprintf(stderr, "cannot install the CRD\n");
    return 1;
  }

  // Floor: the same number of writes the operator should need (6 per AgentRun), as plain
  // ConfigMap creates from kWorkers threads.
  kube::KubeConfig floor_config;
  floor_config.server = api.url();
  floor_config.token = options.operator_token;
  kube::RestClientOptions floor_options;
  floor_options.qps = 0;
  auto client = kube::RestClient::Create(floor_config, floor_options);
  if (!client.ok()) return 1;
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
  ChildProcess op({OPERATOR_BIN, "--kubeconfig", kubeconfig, "--http-listen", "127.0.0.1:" + std::to_string(http_port),
                   "--qps", "0", "--no-queue-rate-limit", "--workers", std::to_string(kWorkers)});
  while (HttpGet(http_port, "/readyz").first != 200) std::this_thread::sleep_for(std::chrono::milliseconds(20));
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
  const int64_t rss = PeakRssKiB(op.pid());
  op.Kill(SIGTERM);
  op.Wait(20000);

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
  return code == 200 && done_s <= 600 ? 0 : 1;
}
