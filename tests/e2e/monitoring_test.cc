// deploy/monitoring against what the programs export: the real operator (on the API
// double) and a real worker (under the process kubelet) run an agent that calls tools,
// their /metrics pages are scraped, and tests/support/metric_names.py checks that every
// metric the alerts and dashboards query is among them. Also: the operator's
// carapace_agentrun_worker_restarts follows the pod's restartCount and goes with the
// AgentRun, promtool checks and unit-tests the alerts, the dashboards are well formed and
// the kustomization renders.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/e2e/e2e_cluster.h"
#include "tests/support/child_process.h"
#include "tests/support/kube_api_double.h"
#include "tests/support/ledger_server.h"
#include "tests/support/process_kubelet.h"
#include "tests/support/repo_files.h"
#include "tests/support/wait.h"
#include "tests/support/worker_process.h"

using namespace carapace::testing;
using Catch::Matchers::ContainsSubstring;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string kSource = CARAPACE_SOURCE_DIR;
const std::string kMonitoring = kSource + "/deploy/monitoring";
const std::string kScript = kSource + "/tests/support/metric_names.py";
const std::vector<std::string> kDashboards = {kMonitoring + "/dashboards/carapace-fleet.json",
                                              kMonitoring + "/dashboards/carapace-agent.json"};

void Write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// promtool reads plain rules files: alerts.yaml's .spec, written to `path`.
void WriteRulesFile(const std::string& path) {
  CommandResult r = RunCommand({CARAPACE_PYTHON3, "-c",
                                "import sys, yaml\n"
                                "doc = yaml.safe_load(open(sys.argv[1]))\n"
                                "assert doc['kind'] == 'PrometheusRule', doc['kind']\n"
                                "yaml.safe_dump(doc['spec'], open(sys.argv[2], 'w'))\n",
                                kMonitoring + "/alerts.yaml", path});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
}

CommandResult CheckNames(const std::vector<std::string>& scrapes, const std::vector<std::string>& files) {
  std::vector<std::string> argv = {CARAPACE_PYTHON3, kScript};
  for (const auto& s : scrapes) argv.insert(argv.end(), {"--scrape", s});
  argv.insert(argv.end(), files.begin(), files.end());
  return RunCommand(argv);
}

// An agent whose two steps call http tools against a ledger (one call the ledger accepts,
// one to a host the tool refuses, for an error outcome), then answers.
std::string Agent(const std::string& name, const std::string& ledger_url) {
  const std::string host = ledger_url.substr(ledger_url.find("//") + 2);
  return "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: " + name +
         ", namespace: default}\nspec:\n"
         "  goal: place an order\n"
         "  model:\n    backend: scripted\n    script:\n"
         "      - toolCalls: [{name: orders, arguments: {method: POST, url: \"" +
         ledger_url +
         "/orders/1\", body: {order: 1}}}]\n"
         "      - toolCalls: [{name: orders, arguments: {method: GET, url: \"http://elsewhere.invalid/\"}}]\n"
         "      - text: placed\n"
         "  tools:\n"
         "    - {name: orders, kind: http, effect: side_effecting, http: {allowedHosts: [\"" +
         host +
         "\"]}}\n"
         "  budget: {maxSteps: 50}\n";
}

}  // namespace

TEST_CASE("every metric the alerts and dashboards query is exported by the operator or a worker", "[e2e][monitoring]") {
  Cluster cluster;
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  cluster.Apply(Agent("watched", ledger.url()));
  const bool done = WaitFor([&] { return cluster.Phase("watched") == "Succeeded"; }, 60000);
  INFO("operator log:\n" << cluster.OperatorLog(0) << "\nworker log:\n" << cluster.kubelet().WorkerLog("default", "watched-0"));
  REQUIRE(done);

  // The worker stays up after its goal; its page has the series of the whole run (it is
  // scraped before the restart below, which starts its counters again).
  const std::string worker = cluster.WorkerMetrics("watched-0");
  REQUIRE_THAT(worker, ContainsSubstring("outcome=\"error\""));  // the refused call
  REQUIRE_THAT(worker, ContainsSubstring("carapace_tool_call_duration_seconds_bucket"));
  REQUIRE_THAT(worker, ContainsSubstring("carapace_model_time_to_first_token_seconds_bucket"));

  // The operator reads the worker container's restartCount from the pod: 0, then 1 after
  // the kubelet restarts a killed worker.
  const std::string series = "carapace_agentrun_worker_restarts{agentrun=\"watched\",namespace=\"default\"}";
  REQUIRE(WaitFor([&] { return cluster.OperatorMetrics().find(series + " 0") != std::string::npos; }, 60000));
  REQUIRE(cluster.kubelet().Kill("default", "watched-0", SIGKILL));
  const bool restarted = WaitFor([&] { return cluster.OperatorMetrics().find(series + " 1") != std::string::npos; }, 60000);
  INFO(cluster.OperatorMetrics());
  REQUIRE(restarted);
  const std::string op = cluster.OperatorMetrics();

  const std::string operator_file = cluster.dir().Sub("operator-metrics.txt");
  const std::string worker_file = cluster.dir().Sub("worker-metrics.txt");
  Write(operator_file, op);
  Write(worker_file, worker);
  std::vector<std::string> sources = kDashboards;
  sources.insert(sources.begin(), kMonitoring + "/alerts.yaml");

  // Not SECTIONs: each would run the agent again. The AgentRun's deletion comes last.
  {  // the alerts and dashboards use only exported metrics
    CommandResult r = CheckNames({operator_file, worker_file}, sources);
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    // Both programs' metrics are used, so both scrapes count.
    CHECK_THAT(r.err, ContainsSubstring("carapace_agentrun_worker_restarts"));
    CHECK_THAT(r.err, ContainsSubstring("carapace_checkpoint_write_duration_seconds_bucket"));
  }

  {  // a rule or a dashboard querying a metric nobody exports fails the check, named with its place
    const std::string rules = cluster.dir().Sub("extra-rules.yaml");
    Write(rules,
          "groups:\n  - name: extra\n    rules:\n      - alert: Invented\n"
          "        expr: sum by (namespace) (rate(carapace_invented_total{job=\"x\"}[5m])) > 0\n");
    const std::string dashboard = cluster.dir().Sub("extra-dashboard.json");
    Write(dashboard, json{{"panels",
                           {{{"title", "Made up"},
                             {"targets",
                              {{{"refId", "A"},
                                {"expr",
                                 "histogram_quantile(0.9, sum by (le) "
                                 "(rate(carapace_made_up_seconds_bucket[$__rate_interval])))"}}}}}}}}
                         .dump());
    std::vector<std::string> with_extra = sources;
    with_extra.insert(with_extra.end(), {rules, dashboard});
    CommandResult r = CheckNames({operator_file, worker_file}, with_extra);
    INFO(r.out << r.err);
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.out, ContainsSubstring("carapace_invented_total is not exported"));
    CHECK_THAT(r.out, ContainsSubstring("extra-rules.yaml: group extra, Invented"));
    CHECK_THAT(r.out, ContainsSubstring("carapace_made_up_seconds_bucket is not exported"));
    CHECK_THAT(r.out, ContainsSubstring("panel 'Made up', target A"));
    CHECK_THAT(r.out, !ContainsSubstring("carapace_agent_phase"));  // only the missing ones

    // And without the operator's page, its metrics are missing.
    CommandResult worker_only = CheckNames({worker_file}, sources);
    CHECK(worker_only.exit_code == 1);
    CHECK_THAT(worker_only.out, ContainsSubstring("leader_election_master_status is not exported"));
  }

  {  // the restart series goes with the AgentRun
    REQUIRE(cluster.Kubectl({"delete", "ar", "watched", "--wait=false"}).exit_code == 0);
    const bool gone = WaitFor([&] {
      const std::string page = cluster.OperatorMetrics();
      return !page.empty() && page.find("agentrun=\"watched\"") == std::string::npos;
    });
    INFO(cluster.OperatorMetrics());
    CHECK(gone);
  }
}

TEST_CASE("metric_names.py reads PromQL, dashboards and scrapes as Prometheus and Grafana do", "[monitoring]") {
  TempDir dir;
  // A histogram's family declares its _bucket, _sum and _count; other names need a sample.
  const std::string scrape = dir.Sub("scrape.txt");
  Write(scrape,
        "# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n"
        "# HELP jobs_total Jobs.\n# TYPE jobs_total counter\njobs_total{kind=\"a\"} 3\n"
        "depth 2\n");
  const std::string rules = dir.Sub("rules.yaml");
  Write(rules,
        "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: x}\nspec:\n  groups:\n"
        "    - name: g\n      rules:\n"
        "        - record: job:jobs:rate5m\n          expr: sum without (kind) (rate(jobs_total{kind=~\"a|b\"}[5m]))\n"
        "        - alert: A\n"
        "          expr: |\n"
        "            histogram_quantile(0.99, sum by (le) (rate(lat_seconds_bucket{x=\"}{(\"}[5m] offset 1h)))\n"
        "            > 1e3 and on (pod) group_left (node) job:jobs:rate5m > bool 2 unless absent(up{job=\"j\"})\n"
        "        - alert: B\n          expr: depth / ignoring (q) lat_seconds_count > 0 or vector(1)\n");
  const std::string dashboard = dir.Sub("dashboard.json");
  Write(dashboard,
        json{{"panels",
              {{{"type", "row"},
                {"panels",
                 {{{"title", "in a row"},
                   {"targets",
                    {{{"refId", "A"}, {"expr", "sum(rate(lat_seconds_sum{a=\"${v}\"}[$__rate_interval]))"}}}}}}}}}},
             {"templating",
              {{"list",
                {{{"name", "v"}, {"type", "query"}, {"query", {{"query", "label_values(depth{a=~\"$w\"}, pod)"}}}},
                 {{"name", "w"}, {"type", "query"}, {"query", "label_values(pod)"}}}}}}}
            .dump());
  CommandResult ok = CheckNames({scrape}, {rules, dashboard});
  INFO(ok.out << ok.err);
  CHECK(ok.exit_code == 0);
  // depth, jobs_total, job:jobs:rate5m, lat_seconds_{bucket,count,sum}, up
  CHECK_THAT(ok.err, ContainsSubstring("7 metrics used"));

  // Remove the sample of `depth`: the rule and the variable that use it are named.
  Write(scrape, "# TYPE lat_seconds histogram\n# TYPE jobs_total counter\n");
  CommandResult missing = CheckNames({scrape}, {rules, dashboard});
  INFO(missing.out << missing.err);
  CHECK(missing.exit_code == 1);
  CHECK_THAT(missing.out, ContainsSubstring("depth is not exported"));
  CHECK_THAT(missing.out, ContainsSubstring("group g, B"));
  CHECK_THAT(missing.out, ContainsSubstring("variable v"));
  CHECK_THAT(missing.out, !ContainsSubstring("pod is not"));

  // Each of these once passed unchecked. A comment is not PromQL (its apostrophes start no
  // string that would hide the selectors up to the next one); a summary has no _bucket;
  // annotations and library panels query too.
  Write(scrape, "# TYPE rpc_seconds summary\n# TYPE jobs_total counter\njobs_total 1\ndepth 2\n");
  const std::string tricky = dir.Sub("tricky.yaml");
  Write(tricky,
        "groups:\n  - name: t\n    rules:\n"
        "      - alert: Commented\n        expr: |\n"
        "          # the job's rate, over depth\n"
        "          sum(rate(jobs_total[5m])) / commented_missing_total\n"
        "          # and the queue's \"depth\"\n"
        "          > depth\n"
        "      - alert: Summary\n"
        "        expr: histogram_quantile(0.9, rate(rpc_seconds_bucket[5m])) > rpc_seconds_count\n");
  const std::string tricky_dashboard = dir.Sub("tricky.json");
  Write(tricky_dashboard, R"({
    "annotations": {"list": [{"name": "restarts", "expr": "changes(annotated_missing_total[5m]) > 0"}]},
    "panels": [{"type": "row", "panels": [{"title": "shared", "libraryPanel": {"uid": "L1", "name": "shared"}}]}],
    "__elements": {"L1": {"name": "shared", "model": {"title": "shared",
                                                      "targets": [{"refId": "A", "expr": "library_missing_total"}]}}}})");
  CommandResult tricked = CheckNames({scrape}, {tricky, tricky_dashboard});
  INFO(tricked.out << tricked.err);
  CHECK(tricked.exit_code == 1);
  CHECK_THAT(tricked.out, ContainsSubstring("commented_missing_total is not exported"));
  CHECK_THAT(tricked.out, ContainsSubstring("rpc_seconds_bucket is not exported"));
  CHECK_THAT(tricked.out, ContainsSubstring("annotated_missing_total is not exported"));
  CHECK_THAT(tricked.out, ContainsSubstring("tricky.json: annotation restarts"));
  CHECK_THAT(tricked.out, ContainsSubstring("library_missing_total is not exported"));
  CHECK_THAT(tricked.out, !ContainsSubstring("the is not"));  // a comment's words are no names
  CHECK_THAT(tricked.out, !ContainsSubstring("rpc_seconds_count is not"));

  // A selector matching names by pattern names nothing that could be checked: refused.
  const std::string by_pattern = dir.Sub("pattern.yaml");
  Write(by_pattern, "groups:\n  - name: p\n    rules:\n      - alert: P\n        expr: sum({__name__=~\"jobs_.*\"})\n");
  CommandResult refused = CheckNames({scrape}, {by_pattern});
  INFO(refused.out << refused.err);
  CHECK(refused.exit_code == 2);
  CHECK_THAT(refused.err, ContainsSubstring("group p, P: __name__=~'jobs_.*' selects metrics by pattern"));
}

TEST_CASE("the alerts pass promtool's checks and unit tests", "[monitoring]") {
  TempDir dir;
  // promtool test rules finds the rules file next to the test file.
  const std::string rules = dir.Sub("carapace-alerts.rules.yaml");
  WriteRulesFile(rules);
  CommandResult check = RunCommand({PROMTOOL_BIN, "check", "rules", rules});
  INFO(check.out << check.err);
  CHECK(check.exit_code == 0);

  const std::string tests = dir.Sub("alerts_test.yaml");
  fs::copy_file(kMonitoring + "/tests/alerts_test.yaml", tests);
  CommandResult test = RunCommand({PROMTOOL_BIN, "test", "rules", tests});
  INFO(test.out << test.err);
  CHECK(test.exit_code == 0);

  // Every alert has a unit test, a severity, its annotations and a runbook section.
  const std::string runbook = ReadText(kSource + "/docs/runbook.md");
  const std::string test_text = ReadText(tests);
  CommandResult alerts =
      RunCommand({CARAPACE_PYTHON3, "-c",
                  "import sys, yaml, json\n"
                  "print(json.dumps([r for g in yaml.safe_load(open(sys.argv[1]))['groups'] for r in g['rules']]))\n",
                  rules});
  REQUIRE(alerts.exit_code == 0);
  const json list = json::parse(alerts.out);
  REQUIRE(list.size() >= 6);
  for (const auto& rule : list) {
    const std::string name = rule.value("alert", "");
    INFO(name);
    CHECK(!name.empty());
    CHECK(rule.value("/labels/severity"_json_pointer, std::string()) != "");
    CHECK(rule.value("/annotations/summary"_json_pointer, std::string()) != "");
    CHECK(rule.value("/annotations/description"_json_pointer, std::string()) != "");
    const std::string url = rule.value("/annotations/runbook_url"_json_pointer, std::string());
    std::string anchor = name;
    for (auto& c : anchor) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    CHECK_THAT(url, ContainsSubstring("docs/runbook.md#" + anchor));
    CHECK_THAT(runbook, ContainsSubstring("## " + name));
    CHECK_THAT(test_text, ContainsSubstring("alertname: " + name));
  }
}

TEST_CASE("the dashboards are Grafana dashboards whose panels all query the chosen data source", "[monitoring]") {
  for (const auto& path : kDashboards) {
    INFO(path);
    const json d = json::parse(ReadText(path), nullptr, false);
    REQUIRE(d.is_object());
    CHECK(d.value("uid", "") == fs::path(path).stem().string());
    CHECK(!d.value("title", "").empty());
    CHECK(d.value("tags", json::array()).dump() == R"(["carapace"])");
    CHECK(d.value("schemaVersion", 0) >= 36);
    std::set<std::string> variables;
    for (const auto& v : d["templating"]["list"]) variables.insert(v.value("name", ""));
    CHECK(variables.count("datasource") == 1);
    std::set<int> ids;
    int panels = 0;
    std::function<void(const json&)> walk = [&](const json& list) {
      for (const auto& p : list) {
        INFO(p.value("title", ""));
        CHECK(ids.insert(p.value("id", 0)).second);
        CHECK(p.contains("gridPos"));
        if (p.value("type", "") == "row") {
          walk(p.value("panels", json::array()));
          continue;
        }
        ++panels;
        CHECK(p.value("/datasource/uid"_json_pointer, std::string()) == "${datasource}");
        CHECK(!p.value("targets", json::array()).empty());
        for (const auto& t : p.value("targets", json::array())) {
          CHECK(!t.value("expr", "").empty());
          CHECK(!t.value("refId", "").empty());
        }
      }
    };
    walk(d["panels"]);
    CHECK(panels >= 8);
  }
}

TEST_CASE("deploy/monitoring renders with kubectl kustomize", "[monitoring]") {
  CommandResult r = RunCommand({KUBECTL_BIN, "kustomize", kMonitoring});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  std::set<std::string> kinds;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("kind: ", 0) == 0) kinds.insert(line.substr(6));
  }
  CHECK(kinds == std::set<std::string>{"ConfigMap", "PodMonitor", "PrometheusRule", "ServiceMonitor"});
  CHECK_THAT(r.out, ContainsSubstring("name: carapace-dashboards\n"));  // no hash suffix
  CHECK_THAT(r.out, ContainsSubstring("grafana_dashboard: \"1\""));
  CHECK_THAT(r.out, ContainsSubstring("carapace-fleet.json: |"));
  CHECK_THAT(r.out, ContainsSubstring("carapace-agent.json: |"));
}
