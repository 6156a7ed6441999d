// charts/carapace: `helm lint` passes and bad values fail naming the value; `helm template`
// renders what the values ask for; the chart's RBAC, CRD and alert rules are the
// repository's own files (through symlinks, also in `helm package`); and the rendered chart,
// applied to the API double, runs the operator as its service account under exactly the
// rendered ClusterRole and Role, reconciling an AgentRun.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "common/manifest.h"
#include "tests/integration/deploy_install.h"
#include "tests/support/repo_files.h"

using namespace carapace::testing;
using Catch::Matchers::ContainsSubstring;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string kSource = CARAPACE_SOURCE_DIR;
const std::string kChart = kSource + "/charts/carapace";
const std::string kNamespace = "carapace-system";

// Helm; with `home` (for install), its cache, config and data go there, never to the
// user's, and it installs with the memory release driver, which creates no objects. (A real
// install into the API double cannot work: Helm's release store speaks protobuf.)
CommandResult Helm(std::vector<std::string> args, const std::string& home = "") {
  args.insert(args.begin(), HELM_BIN);
  std::map<std::string, std::string> env;
  if (!home.empty()) {
    std::ofstream(home + "/releases.yaml");  // the memory driver starts from this (empty) file
    env.insert({{"HELM_DRIVER", "memory"},
                {"HELM_CACHE_HOME", home + "/cache"},
                {"HELM_CONFIG_HOME", home + "/config"},
                {"HELM_DATA_HOME", home + "/data"},
                {"HELM_MEMORY_DRIVER_DATA", home + "/releases.yaml"}});
  }
  ChildProcess helm(args, env);
  return helm.Wait(120000);
}

// `helm template` of the chart as `release` in carapace-system; REQUIREs success.
std::vector<json> RenderAs(const std::string& release, std::vector<std::string> extra,
                           const std::string& chart = kChart) {
  std::vector<std::string> args = {"template", release, chart, "--namespace", kNamespace};
  args.insert(args.end(), extra.begin(), extra.end());
  CommandResult r = Helm(args);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return ParseYamlDocs(r.out);
}

// The same as release `carapace`.
std::vector<json> Render(std::vector<std::string> extra, const std::string& chart = kChart) {
  return RenderAs("carapace", std::move(extra), chart);
}

// `helm template` that is expected to fail: its result.
CommandResult RenderFailing(std::vector<std::string> extra) {
  std::vector<std::string> args = {"template", "carapace", kChart, "--namespace", kNamespace};
  args.insert(args.end(), extra.begin(), extra.end());
  return Helm(args);
}

// `helm install` (memory driver, against the API double for the server version) with
// `extra`; returns its output, which holds the rendered NOTES.txt.
std::string InstallNotes(std::vector<std::string> extra) {
  TempDir home;
  InstallCluster cluster({kSource + "/deploy/rbac/cluster_role.yaml"}, kNamespace);
  std::vector<std::string> args = {"install", "carapace", kChart, "--kubeconfig", cluster.admin_kubeconfig(),
                                   "--namespace", kNamespace};
  args.insert(args.end(), extra.begin(), extra.end());
  CommandResult installed = Helm(args, home.path());
  INFO(installed.out << installed.err);
  REQUIRE(installed.exit_code == 0);
  return installed.out;
}

// The lines of `text` that contain `needle`.
std::vector<std::string> LinesWith(const std::string& text, const std::string& needle) {
  std::vector<std::string> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.find(needle) != std::string::npos) out.push_back(line);
  }
  return out;
}

// A copy of the chart with its symlinks resolved (std::filesystem::copy follows them), to
// render against changed deploy/ files without touching the repository's.
std::string CopyChart(const TempDir& dir) {
  const std::string copy = dir.Sub("carapace");
  fs::copy(kChart, copy, fs::copy_options::recursive);
  return copy;
}

json Env(const json& container, const std::string& name) {
  for (const auto& e : container.value("env", json::array())) {
    if (e.value("name", "") == name) return e.value("value", json());
  }
  return json();
}

// A copy, so that reading a field the object lacks gives null rather than undefined behaviour.
json Find(const std::vector<json>& docs, const std::string& kind, const std::string& name = "") {
  for (const auto& d : docs) {
    if (d.value("kind", "") == kind && (name.empty() || d["metadata"].value("name", "") == name)) return d;
  }
  FAIL_CHECK("no " << kind << " " << name << " in the render");
  return json::object();
}

size_t Count(const std::vector<json>& docs, const std::string& kind) {
  return std::count_if(docs.begin(), docs.end(), [&](const json& d) { return d.value("kind", "") == kind; });
}

std::vector<std::string> Args(json deployment) {
  return deployment["spec"]["template"]["spec"]["containers"][0]["args"].get<std::vector<std::string>>();
}

bool Has(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

std::string ChartAppVersion() { return LoadYamlAsJson(kChart + "/Chart.yaml")["appVersion"].get<std::string>(); }

// Pod Security `restricted` for one pod spec: non-root, RuntimeDefault seccomp, and each
// container without privilege escalation and with every capability dropped.
void CheckRestricted(const json& pod) {
  INFO(pod.dump(2));
  const json& psc = pod.value("securityContext", json::object());
  CHECK(psc.value("runAsNonRoot", false));
  CHECK(psc.value("runAsUser", 0) != 0);
  CHECK(psc.value("seccompProfile", json::object()).value("type", "") == "RuntimeDefault");
  CHECK_FALSE(pod.value("hostNetwork", false));
  CHECK_FALSE(pod.value("hostPID", false));
  for (const auto& c : pod.value("containers", json::array())) {
    const json& sc = c.value("securityContext", json::object());
    CHECK(sc.value("allowPrivilegeEscalation", true) == false);
    CHECK(sc.value("readOnlyRootFilesystem", false));
    CHECK_FALSE(sc.value("privileged", false));
    CHECK(sc.value("capabilities", json::object()).value("drop", json::array()) == json::array({"ALL"}));
    CHECK_FALSE(sc.value("capabilities", json::object()).contains("add"));
  }
}

// deploy/monitoring/dashboards/*.json: the chart's dashboards ConfigMap has one key per file.
std::vector<std::string> DashboardFiles() {
  std::vector<std::string> files;
  const fs::path dir = kSource + "/deploy/monitoring/dashboards";
  if (!fs::is_directory(dir)) return files;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".json") files.push_back(e.path().filename().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Values that turn every option on and set each knob away from its default.
std::string WriteAllOptionsValues(const TempDir& dir) {
  const std::string path = dir.Sub("all.yaml");
  std::ofstream(path) << R"(replicaCount: 2
image: {repository: registry.example/carapace-operator, tag: "9.9.9", pullPolicy: Always}
workerImage: {repository: registry.example/carapace-worker, tag: "9.9.8"}
imagePullSecrets: [{name: regcred}]
operator:
  workers: 5
  qps: 40
  burst: 60
  statusIntervalSeconds: 20
  leaseSeconds: 30
  watchNamespace: agents
  logLevel: debug
  extraArgs: ["--no-queue-rate-limit"]
serviceAccount: {create: true, name: carapace-sa, annotations: {iam.example/role: carapace}}
podAnnotations: {example.com/scrape: "no"}
podLabels: {team: agents}
nodeSelector: {kubernetes.io/os: linux, pool: system}
tolerations: [{key: dedicated, operator: Equal, value: system, effect: NoSchedule}]
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector: {matchLabels: {app.kubernetes.io/name: carapace-operator}}
priorityClassName: system-cluster-critical
tracing:
  endpoint: http://otel-collector.monitoring:4317
networkPolicy:
  enabled: true
  metricsNamespaces: [monitoring, observability]
  controlNamespaces: [ops]
controlTLS:
  enabled: true
  issuerRef: {kind: ClusterIssuer, name: agents-ca}
resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {memory: 512Mi}}
monitoring:
  serviceMonitor: {enabled: true, interval: 15s, labels: {release: prometheus}}
  podMonitor: {enabled: true, interval: 20s, labels: {release: prometheus}}
  prometheusRule: {enabled: true, labels: {release: prometheus}}
  dashboards: {enabled: true, labelKey: grafana_dashboard, labelValue: "1", namespace: monitoring, folder: Carapace}
)";
  return path;
}

}  // namespace

TEST_CASE("helm lint passes on the chart, with defaults and with every option on", "[deploy][helm]") {
  TempDir dir;
  const std::string all = WriteAllOptionsValues(dir);
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{}, {"--strict"}, {"--strict", "--values", all}}) {
    std::vector<std::string> args = {"lint", kChart};
    args.insert(args.end(), extra.begin(), extra.end());
    CommandResult r = Helm(args);
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.out, ContainsSubstring("0 chart(s) failed"));
  }
}

TEST_CASE("bad values fail helm lint and helm template, naming the value", "[deploy][helm]") {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"replicaCount=abc", "replicaCount"},
      {"replicaCount=-1", "replicaCount"},
      {"operator.workers=-3", "operator.workers"},
      {"operator.workers=65", "operator.workers"},
      {"operator.qps=-1", "operator.qps"},
      {"operator.logLevel=loud", "operator.logLevel"},
      {"image.pullPolicy=Sometimes", "image.pullPolicy"},
      {"noSuchKey=1", "noSuchKey"},
      {"operator.noSuchFlag=1", "noSuchFlag"},
      {"monitoring.serviceMonitor.enabled=maybe", "monitoring.serviceMonitor.enabled"},
      {"tracing.endpoint=otel-collector:4317", "tracing.endpoint"},
      {"networkPolicy.enabled=sometimes", "networkPolicy.enabled"},
      {"controlTLS.issuerRef.kind=Secret", "controlTLS.issuerRef.kind"},
      {"controlTLS.issuerRef.name=Agents_CA", "controlTLS.issuerRef.name"},
      {"controlTLS.enabled=true", "controlTLS.issuerRef.name"},
  };
  for (const auto& [set, named] : bad) {
    for (const char* command : {"lint", "template"}) {
      CommandResult r = Helm({command, kChart, "--set", set});
      INFO(command << " --set " << set << "\n" << r.out << r.err);
      CHECK(r.exit_code != 0);
      CHECK_THAT(r.out + r.err, ContainsSubstring(named));
    }
  }
  // Without its ServiceAccount the chart needs the name of one.
  CommandResult r = Helm({"template", kChart, "--set", "serviceAccount.create=false"});
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.err, ContainsSubstring("serviceAccount.name"));
}

TEST_CASE("helm template with defaults renders the operator as deploy/default has it", "[deploy][helm]") {
  const std::vector<json> docs = Render({"--include-crds"});
  CHECK(Count(docs, "CustomResourceDefinition") == 1);
  CHECK(Find(docs, "CustomResourceDefinition") == LoadYamlAsJson(kSource + "/crds/carapace.dev_agentruns.yaml"));
  for (const char* kind : {"ServiceMonitor", "PodMonitor", "PrometheusRule"}) CHECK(Count(docs, kind) == 0);
  CHECK(Count(docs, "ConfigMap") == 0);  // no dashboards

  json deployment = Find(docs, "Deployment", "carapace-operator");
  CHECK(deployment["metadata"]["namespace"] == kNamespace);
  CHECK(deployment["spec"]["replicas"] == 1);
  json pod = deployment["spec"]["template"]["spec"];
  CHECK(pod["serviceAccountName"] == "carapace-operator");
  json container = pod["containers"][0];
  CHECK(container["image"] == "ghcr.io/carapace-dev/carapace-operator:" + ChartAppVersion());
  const auto args = Args(deployment);
  CHECK(Has(args, "--leader-elect"));
  CHECK(Has(args, "--lease-namespace=" + kNamespace));
  CHECK(Has(args, "--http-listen=0.0.0.0:8081"));
  CHECK(Has(args, "--worker-image=ghcr.io/carapace-dev/carapace-worker:" + ChartAppVersion()));
  CHECK(Has(args, "--workers=2"));
  CHECK(container["ports"] == json::parse(R"([{"name": "http", "containerPort": 8081, "protocol": "TCP"}])"));
  CHECK(container["livenessProbe"]["httpGet"] == json::parse(R"({"path": "/healthz", "port": "http"})"));
  CHECK(container["readinessProbe"]["httpGet"] == json::parse(R"({"path": "/readyz", "port": "http"})"));
  CHECK(pod["securityContext"]["runAsUser"] == 65532);
  CheckRestricted(pod);
  for (const char* absent : {"nodeSelector", "tolerations", "affinity", "imagePullSecrets", "priorityClassName"}) {
    CHECK_FALSE(pod.contains(absent));
  }

  // The metrics Service selects the operator's pods on the http port.
  json service = Find(docs, "Service", "carapace-operator-metrics");
  CHECK(service["spec"]["ports"] ==
        json::parse(R"([{"name": "http", "port": 8081, "targetPort": "http", "protocol": "TCP"}])"));
  for (const auto& [key, value] : service["spec"]["selector"].items()) {
    CHECK(deployment["spec"]["template"]["metadata"]["labels"].value(key, "") == value);
  }
  CHECK(service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]);

  // helm test: a hook pod that asks /readyz of that Service, itself restricted.
  json test = Find(docs, "Pod");
  CHECK(test["metadata"]["annotations"]["helm.sh/hook"] == "test");
  CHECK(test["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded");
  CheckRestricted(test["spec"]);
  CHECK(Env(test["spec"]["containers"][0], "READYZ_URL") ==
        "http://carapace-operator-metrics." + kNamespace + ".svc:8081/readyz");

  // The bindings give the roles to the chart's service account.
  const json subject = {{"kind", "ServiceAccount"}, {"name", "carapace-operator"}, {"namespace", kNamespace}};
  json crb = Find(docs, "ClusterRoleBinding");
  CHECK(crb["roleRef"]["name"] == Find(docs, "ClusterRole")["metadata"]["name"]);
  CHECK(crb["subjects"] == json::array({subject}));
  json rb = Find(docs, "RoleBinding");
  CHECK(rb["metadata"]["namespace"] == kNamespace);
  CHECK(rb["roleRef"]["name"] == Find(docs, "Role")["metadata"]["name"]);
  CHECK(rb["subjects"] == json::array({subject}));
  CHECK(Find(docs, "Role")["metadata"]["namespace"] == kNamespace);
}

TEST_CASE("the chart's ClusterRole and Role have deploy/rbac's rules", "[deploy][helm]") {
  const std::vector<json> docs = Render({});
  CHECK(Count(docs, "ClusterRole") == 1);
  CHECK(Count(docs, "Role") == 1);
  CHECK(Find(docs, "ClusterRole")["rules"] == LoadYamlAsJson(kSource + "/deploy/rbac/cluster_role.yaml")["rules"]);
  CHECK(Find(docs, "Role")["rules"] == LoadYamlAsJson(kSource + "/deploy/rbac/leader_election_role.yaml")["rules"]);
  // rbac.create=false leaves them (and their bindings) to someone else.
  const std::vector<json> none = Render({"--set", "rbac.create=false"});
  for (const char* kind : {"ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding"}) CHECK(Count(none, kind) == 0);
}

TEST_CASE("helm template with every option on carries each one", "[deploy][helm]") {
  TempDir dir;
  const std::vector<std::string> dashboards = DashboardFiles();
  REQUIRE_FALSE(dashboards.empty());
  const std::vector<json> docs = Render({"--values", WriteAllOptionsValues(dir)});

  json deployment = Find(docs, "Deployment", "carapace-operator");
  CHECK(deployment["spec"]["replicas"] == 2);
  json pod = deployment["spec"]["template"]["spec"];
  json container = pod["containers"][0];
  CHECK(container["image"] == "registry.example/carapace-operator:9.9.9");
  CHECK(container["imagePullPolicy"] == "Always");
  const auto args = Args(deployment);
  for (const char* arg : {"--leader-elect", "--worker-image=registry.example/carapace-worker:9.9.8", "--workers=5",
                          "--qps=40", "--burst=60", "--status-interval-seconds=20", "--lease-seconds=30",
                          "--namespace=agents", "--no-queue-rate-limit",
                          "--worker-otlp-endpoint=http://otel-collector.monitoring:4317", "--network-policy",
                          "--network-policy-metrics-namespaces=monitoring,observability",
                          "--network-policy-control-namespaces=ops", "--worker-tls-issuer=ClusterIssuer/agents-ca"}) {
    CHECK(Has(args, arg));
  }
  CHECK(Has(args, "--lease-namespace=" + kNamespace));
  CHECK(container["env"] == json::parse(R"([{"name": "CARAPACE_LOG_LEVEL", "value": "debug"},
      {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
      {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel-collector.monitoring:4317"}])"));
  // The control port's rule names the operator's own pods by the Deployment's selector.
  std::string pod_labels;
  for (const auto& arg : args) {
    if (arg.rfind("--operator-pod-labels=", 0) == 0) pod_labels = arg.substr(22);
  }
  CHECK(!pod_labels.empty());
  for (const auto& [k, v] : deployment["spec"]["selector"]["matchLabels"].items()) {
    CHECK(pod_labels.find(k + "=" + v.get<std::string>()) != std::string::npos);
  }
  CHECK(container["resources"]["limits"]["memory"] == "512Mi");
  CHECK(pod["serviceAccountName"] == "carapace-sa");
  CHECK(Find(docs, "ServiceAccount", "carapace-sa")["metadata"]["annotations"]["iam.example/role"] == "carapace");
  CHECK(Find(docs, "ClusterRoleBinding")["subjects"][0]["name"] == "carapace-sa");
  CHECK(Find(docs, "RoleBinding")["subjects"][0]["name"] == "carapace-sa");
  CHECK(pod["nodeSelector"] == json::parse(R"({"kubernetes.io/os": "linux", "pool": "system"})"));
  CHECK(pod["tolerations"] ==
        json::parse(R"([{"key": "dedicated", "operator": "Equal", "value": "system", "effect": "NoSchedule"}])"));
  CHECK(pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] == 100);
  CHECK(pod["imagePullSecrets"] == json::parse(R"([{"name": "regcred"}])"));
  CHECK(pod["priorityClassName"] == "system-cluster-critical");
  json meta = deployment["spec"]["template"]["metadata"];
  CHECK(meta["annotations"]["example.com/scrape"] == "no");
  CHECK(meta["labels"]["team"] == "agents");
  for (const auto& [key, value] : deployment["spec"]["selector"]["matchLabels"].items()) {
    CHECK(meta["labels"].value(key, "") == value);
  }
  CheckRestricted(pod);

  // The ServiceMonitor scrapes the metrics Service's http port as
  // deploy/monitoring/servicemonitor.yaml does.
  json sm = Find(docs, "ServiceMonitor");
  CHECK(sm["metadata"]["labels"]["release"] == "prometheus");
  CHECK(sm["spec"]["namespaceSelector"]["matchNames"] == json::array({kNamespace}));
  json service = Find(docs, "Service", "carapace-operator-metrics");
  for (const auto& [key, value] : sm["spec"]["selector"]["matchLabels"].items()) {
    CHECK(service["metadata"]["labels"].value(key, "") == value);
  }
  CHECK(sm["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]);
  CHECK(sm["spec"]["endpoints"][0]["path"] == "/metrics");
  json sm_endpoints = LoadYamlAsJson(kSource + "/deploy/monitoring/servicemonitor.yaml")["spec"]["endpoints"];
  for (auto& e : sm_endpoints) e["interval"] = "15s";
  CHECK(sm["spec"]["endpoints"] == sm_endpoints);

  // The PodMonitor: the namespace the operator watches, the workers' labels and port
  // (checked against the operator's real StatefulSet in the API-double test below).
  json pm = Find(docs, "PodMonitor");
  CHECK(pm["metadata"]["labels"]["release"] == "prometheus");
  CHECK(pm["spec"]["namespaceSelector"] == json::parse(R"({"matchNames": ["agents"]})"));
  CHECK(pm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "carapace-worker");
  CHECK(pm["spec"]["podMetricsEndpoints"][0]["port"] == "http");
  CHECK(pm["spec"]["podMetricsEndpoints"][0]["path"] == "/metrics");
  json pm_source = LoadYamlAsJson(kSource + "/deploy/monitoring/podmonitor.yaml")["spec"];
  for (auto& e : pm_source["podMetricsEndpoints"]) e["interval"] = "20s";
  CHECK(pm["spec"]["selector"] == pm_source["selector"]);
  CHECK(pm["spec"]["podMetricsEndpoints"] == pm_source["podMetricsEndpoints"]);

  // The PrometheusRule is deploy/monitoring/alerts.yaml's spec.
  json rule = Find(docs, "PrometheusRule");
  CHECK(rule["metadata"]["labels"]["release"] == "prometheus");
  CHECK(rule["metadata"]["namespace"] == kNamespace);
  CHECK(rule["spec"] == LoadYamlAsJson(kSource + "/deploy/monitoring/alerts.yaml")["spec"]);

  // The dashboards: one ConfigMap, a key per deploy/monitoring/dashboards/*.json.
  json cm = Find(docs, "ConfigMap", "carapace-dashboards");
  CHECK(cm["metadata"]["namespace"] == "monitoring");
  CHECK(cm["metadata"]["labels"]["grafana_dashboard"] == "1");
  CHECK(cm["metadata"]["annotations"]["grafana_folder"] == "Carapace");
  std::vector<std::string> keys;
  for (const auto& [key, value] : cm["data"].items()) {
    keys.push_back(key);
    CHECK(json::parse(value.get<std::string>()) ==
          json::parse(ReadText(kSource + "/deploy/monitoring/dashboards/" + key)));
  }
  CHECK(keys == dashboards);
}

TEST_CASE("helm package resolves the symlinks into the archive", "[deploy][helm]") {
  TempDir dir;
  CommandResult packaged = Helm({"package", kChart, "--destination", dir.path()});
  INFO(packaged.out << packaged.err);
  REQUIRE(packaged.exit_code == 0);
  const std::string archive = dir.Sub("carapace-" + LoadYamlAsJson(kChart + "/Chart.yaml")["version"].get<std::string>() +
                                      ".tgz");
  REQUIRE(fs::exists(archive));
  CommandResult listing = RunCommand({"/usr/bin/tar", "-tvzf", archive});
  REQUIRE(listing.exit_code == 0);
  INFO(listing.out);
  std::istringstream lines(listing.out);
  for (std::string line; std::getline(lines, line);) CHECK(line.rfind('-', 0) == 0);  // plain files only
  CHECK_THAT(listing.out, !ContainsSubstring("kustomization.yaml"));  // .helmignore

  REQUIRE(RunCommand({"/usr/bin/tar", "-xzf", archive, "-C", dir.path()}).exit_code == 0);
  const std::string unpacked = dir.Sub("carapace");
  CHECK(ReadText(unpacked + "/crds/carapace.dev_agentruns.yaml") ==
        ReadText(kSource + "/crds/carapace.dev_agentruns.yaml"));
  for (const char* file : {"cluster_role.yaml", "leader_election_role.yaml"}) {
    CHECK(ReadText(unpacked + "/files/rbac/" + file) == ReadText(kSource + "/deploy/rbac/" + file));
  }
  for (const char* file : {"alerts.yaml", "servicemonitor.yaml", "podmonitor.yaml"}) {
    CHECK(ReadText(unpacked + "/files/monitoring/" + file) == ReadText(kSource + "/deploy/monitoring/" + file));
  }
  for (const auto& name : DashboardFiles()) {
    CHECK(ReadText(unpacked + "/files/monitoring/dashboards/" + name) ==
          ReadText(kSource + "/deploy/monitoring/dashboards/" + name));
  }
  // The archive renders exactly what the source directory does.
  const std::vector<std::string> options = {"--include-crds", "--set",
                                            "monitoring.prometheusRule.enabled=true,monitoring.serviceMonitor.enabled=true,"
                                            "monitoring.podMonitor.enabled=true,monitoring.dashboards.enabled=true"};
  CHECK(Render(options, archive) == Render(options));
}

TEST_CASE("the rendered chart installs on the API double and the operator reconciles under its RBAC",
          "[deploy][helm]") {
  TempDir dir;
  // What `helm install` creates (the CRD from crds/, no test hooks), applied with kubectl.
  CommandResult rendered = Helm({"template", "carapace", kChart, "--namespace", kNamespace, "--include-crds",
                                 "--skip-tests"});
  INFO(rendered.err);
  REQUIRE(rendered.exit_code == 0);
  std::ofstream(dir.Sub("install.yaml")) << rendered.out;
  // The double enforces the rendered roles, not deploy/rbac's.
  YAML::Emitter roles;
  for (const auto& node : YAML::LoadAll(rendered.out)) {
    if (node.IsMap() && node["kind"] && (node["kind"].as<std::string>() == "ClusterRole" ||
                                         node["kind"].as<std::string>() == "Role")) {
      roles << node;
    }
  }
  std::ofstream(dir.Sub("rbac.yaml")) << roles.c_str();
  std::vector<json> rbac = ParseYamlDocs(ReadText(dir.Sub("rbac.yaml")));
  REQUIRE(rbac.size() == 2);

  InstallCluster cluster({dir.Sub("rbac.yaml")}, kNamespace);
  // `helm install --create-namespace`: the chart does not own its namespace.
  REQUIRE(cluster.api().Create("v1", "namespaces", "", {{"metadata", {{"name", kNamespace}}}}).ok());
  CommandResult applied = cluster.Kubectl({"apply", "-f", dir.Sub("install.yaml")});
  INFO(applied.out << applied.err);
  REQUIRE(applied.exit_code == 0);
  CHECK(cluster.api().Get("apiextensions.k8s.io/v1", "customresourcedefinitions", "", "agentruns.carapace.dev").ok());
  CHECK(cluster.api().Get("v1", "services", kNamespace, "carapace-operator-metrics").ok());

  const json statefulset = cluster.RunOperatorAsDeployed("carapace-operator");
  REQUIRE_FALSE(statefulset.is_null());
  // The chart's default worker image reached the worker.
  json worker = statefulset["spec"]["template"]["spec"]["containers"][0];
  CHECK(worker["image"] == "ghcr.io/carapace-dev/carapace-worker:" + ChartAppVersion());

  // The PodMonitor selects the worker pods the operator makes, on a port they have.
  json pm = Find(Render({"--set", "monitoring.podMonitor.enabled=true"}), "PodMonitor");
  for (const auto& [key, value] : pm["spec"]["selector"]["matchLabels"].items()) {
    CHECK(statefulset["spec"]["template"]["metadata"]["labels"].value(key, "") == value);
  }
  std::set<std::string> ports;
  for (const auto& p : worker["ports"]) ports.insert(p["name"].get<std::string>());
  CHECK(ports.count(pm["spec"]["podMetricsEndpoints"][0]["port"].get<std::string>()) == 1);
  // Its relabeling reads the pod label the operator sets.
  const auto source_label = pm["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["sourceLabels"][0].get<std::string>();
  CHECK(source_label == "__meta_kubernetes_pod_label_carapace_dev_agentrun");
  CHECK(statefulset["spec"]["template"]["metadata"]["labels"].contains("carapace.dev/agentrun"));
}

TEST_CASE("helm install prints what to do next", "[deploy][helm]") {
  // With the memory release driver Helm installs into a printing fake client: enough for
  // the NOTES, which are rendered only on install. It still asks a server for its version
  // (and checks kubeVersion against it): the API double answers.
  const std::string notes = InstallNotes({"--set", "monitoring.podMonitor.enabled=true"});
  INFO(notes);
  // The sample needs no model service; examples/hello.yaml calls a ledger on the
  // demo's localhost, which no pod has.
  for (const char* next : {"rollout status deployment/carapace-operator", "helm test carapace", "helm install --wait",
                           "kubectl apply -f deploy/samples/notes-once.yaml", "kubectl get ar notes-once -w",
                           "kubectl describe ar notes-once",
                           "http://carapace-operator-metrics.carapace-system.svc:8081/metrics",
                           "PodMonitor carapace-system/carapace-workers",
                           "kubectl apply --server-side --force-conflicts -f crds/carapace.dev_agentruns.yaml"}) {
    CHECK_THAT(notes, ContainsSubstring(next));
  }
  CHECK_THAT(notes, !ContainsSubstring("examples/hello.yaml"));
  CHECK_THAT(notes, !ContainsSubstring("helm pull"));  // no chart repository is published
  // Helm created the CRD (field manager helm): a plain server-side apply conflicts.
  for (const auto& line : LinesWith(notes, "apply --server-side")) CHECK_THAT(line, ContainsSubstring("--force-conflicts"));
  const json sample = LoadYamlAsJson(kSource + "/deploy/samples/notes-once.yaml");
  CHECK(sample["metadata"]["name"] == "notes-once");
  CHECK_FALSE(sample["metadata"].contains("namespace"));  // it goes where kubectl says

  // An operator that watches one namespace sees AgentRuns there only.
  const std::string scoped = InstallNotes({"--set", "operator.watchNamespace=agents,test.enabled=false"});
  INFO(scoped);
  for (const char* next : {"kubectl -n agents apply -f deploy/samples/notes-once.yaml",
                           "kubectl -n agents get ar notes-once -w", "kubectl -n agents describe ar notes-once"}) {
    CHECK_THAT(scoped, ContainsSubstring(next));
  }
  CHECK_THAT(scoped, !ContainsSubstring("helm test"));  // no test pod to run
}

TEST_CASE("the chart needs Kubernetes 1.29, the first whose API server takes CEL quantity() in a new CRD",
          "[deploy][helm]") {
  // The reason: the CRD's storage-size transition rule.
  CHECK_THAT(ReadText(kSource + "/crds/carapace.dev_agentruns.yaml"), ContainsSubstring("quantity("));
  CHECK(LoadYamlAsJson(kChart + "/Chart.yaml")["kubeVersion"] == ">=1.29.0-0");
  CommandResult old = RenderFailing({"--kube-version", "1.28.15"});
  INFO(old.out << old.err);
  CHECK(old.exit_code != 0);
  CHECK_THAT(old.err, ContainsSubstring("kubeVersion"));
  // The -0 lets pre-release and vendor builds (v1.29.1-eks-...) in.
  for (const char* version : {"1.29.0", "v1.29.1-eks-2f008fe", "1.32.0"}) {
    INFO(version);
    CHECK(RenderFailing({"--kube-version", version}).exit_code == 0);
  }
  CHECK_THAT(ReadText(kChart + "/README.md"), ContainsSubstring("Kubernetes 1.29"));
}

TEST_CASE("the chart README shows commands that work from a pod and on a Helm-made CRD", "[deploy][helm]") {
  const std::string readme = ReadText(kChart + "/README.md");
  CHECK_THAT(readme, ContainsSubstring("kubectl apply -f deploy/samples/notes-once.yaml"));
  CHECK_THAT(readme, !ContainsSubstring("examples/hello.yaml"));
  CHECK_THAT(readme, !ContainsSubstring("helm pull"));
  CHECK_FALSE(LinesWith(readme, "apply --server-side").empty());
  for (const auto& line : LinesWith(readme, "apply --server-side")) CHECK_THAT(line, ContainsSubstring("--force-conflicts"));
  // The quick start waits for the operator before `helm test`.
  const auto installs = LinesWith(readme, "helm install carapace charts/carapace");
  REQUIRE_FALSE(installs.empty());
  CHECK_THAT(installs[0], ContainsSubstring("--wait"));
}

TEST_CASE("the helm test pod retries /readyz, a bounded number of times", "[deploy][helm]") {
  json pod = Find(Render({}), "Pod")["spec"];
  json container = pod["containers"][0];
  const json command = container["command"];
  REQUIRE(command.size() == 3);
  REQUIRE(command[0] == "sh");
  REQUIRE(command[1] == "-c");
  const std::string url = "http://carapace-operator-metrics." + kNamespace + ".svc:8081/readyz";
  REQUIRE(Env(container, "READYZ_URL") == url);

  // The pod's script under /bin/sh with stand-ins: wget logs its arguments and answers from
  // the SUCCEED_AT-th call on, sleep only logs how long it was asked to sleep.
  TempDir dir;
  fs::create_directory(dir.Sub("bin"));
  std::ofstream(dir.Sub("bin/wget")) << "#!/bin/sh\n"
                                        "echo \"$*\" >> \"$LOG_DIR/wget\"\n"
                                        "n=0; while read -r _; do n=$((n + 1)); done < \"$LOG_DIR/wget\"\n"
                                        "[ \"$n\" -ge \"$SUCCEED_AT\" ]\n";
  std::ofstream(dir.Sub("bin/sleep")) << "#!/bin/sh\necho \"$1\" >> \"$LOG_DIR/sleep\"\n";
  for (const char* tool : {"bin/wget", "bin/sleep"}) {
    fs::permissions(dir.Sub(tool), fs::perms::owner_all, fs::perm_options::add);
  }
  auto run = [&](const std::string& succeed_at, const std::string& logs) {
    fs::create_directory(dir.Sub(logs));
    ChildProcess sh({"/bin/sh", "-c", command[2].get<std::string>()},
                    {{"PATH", dir.Sub("bin") + ":/usr/bin:/bin"}, {"READYZ_URL", url},
                     {"LOG_DIR", dir.Sub(logs)}, {"SUCCEED_AT", succeed_at}});
    return sh.Wait(30000);
  };
  auto lines = [&](const std::string& file) {
    std::vector<std::string> out;
    if (!fs::exists(file)) return out;
    std::istringstream in(ReadText(file));
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  };

  // A slow start: the third try finds the operator ready.
  CommandResult slow = run("3", "slow");
  INFO(slow.out << slow.err);
  CHECK(slow.exit_code == 0);
  const auto tries = lines(dir.Sub("slow/wget"));
  CHECK(tries.size() == 3);
  for (const auto& t : tries) {
    CHECK_THAT(t, ContainsSubstring("--spider"));
    CHECK_THAT(t, ContainsSubstring(url));
  }
  CHECK(lines(dir.Sub("slow/sleep")).size() == 2);

  // An operator that never gets ready: the pod gives up after a bounded number of tries,
  // having waited about a minute in all (sleeps, not counting wget's own timeouts).
  CommandResult never = run("1000000", "never");
  INFO(never.out << never.err);
  CHECK(never.exit_code != 0);
  CHECK_THAT(never.err, ContainsSubstring("not ready"));
  const auto failed_tries = lines(dir.Sub("never/wget"));
  CHECK(failed_tries.size() > 3);
  CHECK(failed_tries.size() < 100);
  int slept = 0;
  for (const auto& s : lines(dir.Sub("never/sleep"))) slept += std::stoi(s);
  CHECK(slept >= 30);
  CHECK(slept <= 120);

  // test.enabled=false renders no test pod (e.g. no busybox to be had).
  CHECK(Count(Render({"--set", "test.enabled=false"}), "Pod") == 0);
  // A mirror for the image, with a numeric tag.
  json mirrored = Find(Render({"--set", "test.image.repository=mirror.example/busybox,test.image.tag=136"}), "Pod");
  CHECK(mirrored["spec"]["containers"][0]["image"] == "mirror.example/busybox:136");
}

TEST_CASE("values as --set and values files give them: numeric tags, scalar labels, replicaCount 0",
          "[deploy][helm]") {
  // --set makes integers of numbers, booleans of true/false.
  const std::vector<json> docs =
      Render({"--set",
              "image.tag=20240101,workerImage.tag=20240102,test.image.tag=20240103,"
              "monitoring.dashboards.enabled=true,monitoring.dashboards.labelValue=7,"
              "podLabels.tier=2,podLabels.canary=true,podAnnotations.revision=3,podAnnotations.sidecar=false"});
  json deployment = Find(docs, "Deployment", "carapace-operator");
  CHECK(deployment["spec"]["template"]["spec"]["containers"][0]["image"] ==
        "ghcr.io/carapace-dev/carapace-operator:20240101");
  CHECK(Has(Args(deployment), "--worker-image=ghcr.io/carapace-dev/carapace-worker:20240102"));
  CHECK(Find(docs, "Pod")["spec"]["containers"][0]["image"] == "busybox:20240103");
  CHECK(Find(docs, "ConfigMap")["metadata"]["labels"]["grafana_dashboard"] == "7");
  // Labels and annotations must be strings in the object, whatever the value's type was.
  json meta = deployment["spec"]["template"]["metadata"];
  CHECK(meta["labels"]["tier"] == "2");
  CHECK(meta["labels"]["canary"] == "true");
  CHECK(meta["annotations"]["revision"] == "3");
  CHECK(meta["annotations"]["sidecar"] == "false");

  // A values file makes a float of a number: 20240101, not 2.0240101e+07.
  TempDir dir;
  std::ofstream(dir.Sub("numbers.yaml")) << "image: {tag: 20240101}\npodAnnotations: {ratio: 1.5, count: 12345678}\n";
  json fromFile = Find(Render({"--values", dir.Sub("numbers.yaml")}), "Deployment");
  CHECK(fromFile["spec"]["template"]["spec"]["containers"][0]["image"] ==
        "ghcr.io/carapace-dev/carapace-operator:20240101");
  CHECK(fromFile["spec"]["template"]["metadata"]["annotations"] == json::parse(R"({"ratio": "1.5", "count": "12345678"})"));

  // 0 replicas pauses the operator; below 0 is still refused.
  CHECK(Find(Render({"--set", "replicaCount=0"}), "Deployment")["spec"]["replicas"] == 0);
  CHECK(RenderFailing({"--set", "replicaCount=-1"}).exit_code != 0);
}

TEST_CASE("topologySpreadConstraints reach the operator's pod, selecting its pods by default", "[deploy][helm]") {
  TempDir dir;
  std::ofstream(dir.Sub("spread.yaml")) << R"(replicaCount: 2
topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway}
  - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule,
     labelSelector: {matchLabels: {team: agents}}}
)";
  json deployment = Find(Render({"--values", dir.Sub("spread.yaml")}), "Deployment");
  json spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"];
  REQUIRE(spread.size() == 2);
  CHECK(spread[0]["topologyKey"] == "topology.kubernetes.io/zone");
  CHECK(spread[0]["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]);
  CHECK(spread[1]["labelSelector"] == json::parse(R"({"matchLabels": {"team": "agents"}})"));
  CHECK_FALSE(Find(Render({}), "Deployment")["spec"]["template"]["spec"].contains("topologySpreadConstraints"));
  CHECK(RenderFailing({"--set", "topologySpreadConstraints[0].maxSkew=1"}).exit_code != 0);  // no topologyKey
}

TEST_CASE("the monitors' relabelings come after deploy/monitoring's own", "[deploy][helm]") {
  TempDir dir;
  std::ofstream(dir.Sub("relabel.yaml")) << R"(monitoring:
  serviceMonitor:
    enabled: true
    relabelings: [{targetLabel: cluster, replacement: east, action: replace}]
    metricRelabelings: [{sourceLabels: [__name__], regex: go_.*, action: drop}]
  podMonitor:
    enabled: true
    relabelings: [{targetLabel: cluster, replacement: east, action: replace}]
    metricRelabelings: [{sourceLabels: [__name__], regex: go_.*, action: drop}]
)";
  const json user_relabel = json::parse(R"([{"targetLabel": "cluster", "replacement": "east", "action": "replace"}])");
  const json user_metric = json::parse(R"([{"sourceLabels": ["__name__"], "regex": "go_.*", "action": "drop"}])");
  auto expect = [&](json endpoints) {
    for (auto& e : endpoints) {
      json relabel = e.value("relabelings", json::array());
      json metric = e.value("metricRelabelings", json::array());
      relabel.insert(relabel.end(), user_relabel.begin(), user_relabel.end());
      metric.insert(metric.end(), user_metric.begin(), user_metric.end());
      e["relabelings"] = relabel;
      e["metricRelabelings"] = metric;
    }
    return endpoints;
  };
  const std::vector<json> docs = Render({"--values", dir.Sub("relabel.yaml")});
  CHECK(Find(docs, "ServiceMonitor")["spec"]["endpoints"] ==
        expect(LoadYamlAsJson(kSource + "/deploy/monitoring/servicemonitor.yaml")["spec"]["endpoints"]));
  json pm = Find(docs, "PodMonitor")["spec"]["podMetricsEndpoints"];
  CHECK(pm == expect(LoadYamlAsJson(kSource + "/deploy/monitoring/podmonitor.yaml")["spec"]["podMetricsEndpoints"]));
  // The file's agentrun relabeling is kept, first.
  CHECK(pm[0]["relabelings"][0]["targetLabel"] == "agentrun");

  // With a relabeling in the ServiceMonitor file (deploy/monitoring fixes the job label so
  // the alerts' job="carapace-operator" holds), the user's come after it.
  const std::string chart = CopyChart(dir);
  const std::string sm_file = chart + "/files/monitoring/servicemonitor.yaml";
  YAML::Node sm_doc = YAML::LoadFile(sm_file);
  sm_doc["spec"]["endpoints"][0]["relabelings"] =
      YAML::Load("[{targetLabel: job, replacement: carapace-operator, action: replace}]");
  YAML::Emitter out;
  out << sm_doc;
  std::ofstream(sm_file) << out.c_str();
  json sm = Find(Render({"--values", dir.Sub("relabel.yaml")}, chart), "ServiceMonitor")["spec"]["endpoints"];
  CHECK(sm[0]["relabelings"] == json::parse(R"([
    {"targetLabel": "job", "replacement": "carapace-operator", "action": "replace"},
    {"targetLabel": "cluster", "replacement": "east", "action": "replace"}])"));
}

TEST_CASE("the PrometheusRule needs the monitors whose metrics its alerts read", "[deploy][helm]") {
  for (const char* set : {"monitoring.prometheusRule.enabled=true",
                          "monitoring.prometheusRule.enabled=true,monitoring.serviceMonitor.enabled=true",
                          "monitoring.prometheusRule.enabled=true,monitoring.podMonitor.enabled=true"}) {
    CommandResult r = RenderFailing({"--set", set});
    INFO(set << "\n" << r.err);
    CHECK(r.exit_code != 0);
    CHECK_THAT(r.err, ContainsSubstring("monitoring.serviceMonitor.enabled"));
    CHECK_THAT(r.err, ContainsSubstring("monitoring.podMonitor.enabled"));
    CHECK_THAT(r.err, ContainsSubstring("allowWithoutMonitors"));
  }
  const std::vector<json> both = Render({"--set", "monitoring.prometheusRule.enabled=true,"
                                                  "monitoring.serviceMonitor.enabled=true,monitoring.podMonitor.enabled=true"});
  CHECK(Count(both, "PrometheusRule") == 1);
  // The escape hatch: the metrics are scraped some other way.
  const std::vector<json> alone =
      Render({"--set", "monitoring.prometheusRule.enabled=true,monitoring.prometheusRule.allowWithoutMonitors=true"});
  CHECK(Count(alone, "PrometheusRule") == 1);
  CHECK(Count(alone, "ServiceMonitor") == 0);
}

TEST_CASE("the PodMonitor looks where the operator watches unless told otherwise", "[deploy][helm]") {
  const std::string pm = "monitoring.podMonitor.enabled=true";
  auto selector = [](const std::vector<json>& docs) { return Find(docs, "PodMonitor")["spec"]["namespaceSelector"]; };
  CHECK(selector(Render({"--set", pm})) == json::parse(R"({"any": true})"));
  CHECK(selector(Render({"--set", pm + ",operator.watchNamespace=agents"})) ==
        json::parse(R"({"matchNames": ["agents"]})"));
  CHECK(selector(Render({"--set", pm + ",operator.watchNamespace=agents,monitoring.podMonitor.namespaceSelector.any=true"})) ==
        json::parse(R"({"any": true})"));
  CHECK(selector(Render({"--set", pm + ",monitoring.podMonitor.namespaceSelector.matchNames={a,b}"})) ==
        json::parse(R"({"matchNames": ["a", "b"]})"));
}

TEST_CASE("release names: one that contains the chart's name is not prefixed again", "[deploy][helm]") {
  CHECK(Count(RenderAs("my-carapace", {}), "Deployment") == 1);
  Find(RenderAs("my-carapace", {}), "Deployment", "my-carapace-operator");
  Find(RenderAs("prod", {}), "Deployment", "prod-carapace-operator");
  Find(RenderAs("prod", {"--set", "fullnameOverride=agents"}), "Deployment", "agents-operator");
  // The README says so.
  const std::string readme = ReadText(kChart + "/README.md");
  CHECK_THAT(readme, ContainsSubstring("`my-carapace` gives `my-carapace-operator`"));
  CHECK_THAT(readme, ContainsSubstring("`X-carapace-operator`"));
}

TEST_CASE("deploy/README's move from deploy/default to the chart keeps the CRD and the AgentRuns",
          "[deploy][helm]") {
  // The commands of deploy/README.md's "Moving to the Helm chart", run as written.
  const std::string readme = ReadText(kSource + "/deploy/README.md");
  const size_t section = readme.find("## Moving to the Helm chart");
  REQUIRE(section != std::string::npos);
  const size_t block = readme.find("```sh\n", section);
  REQUIRE(block != std::string::npos);
  const size_t block_end = readme.find("```", block + 6);
  std::vector<std::vector<std::string>> commands;
  std::istringstream lines(readme.substr(block + 6, block_end - block - 6));
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::vector<std::string> w;
    for (std::string word; words >> word;) w.push_back(word);
    if (!w.empty()) commands.push_back(w);
  }
  REQUIRE(commands.size() >= 2);
  // The install comes last, into the namespace deploy/default made.
  CHECK(commands.back()[0] == "helm");
  CHECK(Has(commands.back(), "charts/carapace"));
  CHECK(Has(commands.back(), kNamespace));

  TempDir dir;
  CommandResult kustomized = RunCommand({KUBECTL_BIN, "kustomize", kSource + "/deploy/default"});
  REQUIRE(kustomized.exit_code == 0);
  std::ofstream(dir.Sub("default.yaml")) << kustomized.out;
  InstallCluster cluster({kSource + "/deploy/rbac/cluster_role.yaml", kSource + "/deploy/rbac/leader_election_role.yaml"},
                         kNamespace);
  CommandResult applied = cluster.Kubectl({"apply", "-f", dir.Sub("default.yaml")});
  INFO(applied.out << applied.err);
  REQUIRE(applied.exit_code == 0);
  CommandResult agent = cluster.Kubectl({"apply", "-f", kSource + "/deploy/samples/notes-once.yaml"});
  INFO(agent.err);
  REQUIRE(agent.exit_code == 0);

  // What `helm install` would create (the CRD exists, so not that): deploy/default made
  // objects of the same names, which Helm would refuse to take over.
  const std::vector<json> chart = Render({"--skip-tests"});
  auto exists = [&](const json& object) {
    const std::string kind = object["kind"].get<std::string>();
    std::string plural = kind;
    std::transform(plural.begin(), plural.end(), plural.begin(), ::tolower);
    return cluster.api()
        .Get(object["apiVersion"].get<std::string>(), plural + "s", object["metadata"].value("namespace", ""),
             object["metadata"]["name"].get<std::string>())
        .ok();
  };
  CHECK(exists(Find(chart, "Deployment", "carapace-operator")));

  for (const auto& command : commands) {
    if (command[0] != "kubectl") continue;
    std::vector<std::string> args(command.begin() + 1, command.end());
    for (auto& a : args) {
      if (a.rfind("deploy/", 0) == 0) a = kSource + "/" + a;  // run from the repository root
    }
    CommandResult r = cluster.Kubectl(args);
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
  }
  for (const auto& object : chart) {
    INFO(object["kind"] << " " << object["metadata"]["name"]);
    CHECK_FALSE(exists(object));
  }
  CHECK(cluster.api().Get("apiextensions.k8s.io/v1", "customresourcedefinitions", "", "agentruns.carapace.dev").ok());
  CHECK(cluster.api().Get("carapace.dev/v1alpha1", "agentruns", "default", "notes-once").ok());
  CHECK(cluster.api().Get("v1", "namespaces", "", kNamespace).ok());
  // The chart's objects now go in their place.
  CommandResult rendered = Helm({"template", "carapace", kChart, "--namespace", kNamespace, "--skip-tests"});
  REQUIRE(rendered.exit_code == 0);
  std::ofstream(dir.Sub("chart.yaml")) << rendered.out;
  CommandResult installed = cluster.Kubectl({"apply", "-f", dir.Sub("chart.yaml")});
  INFO(installed.out << installed.err);
  CHECK(installed.exit_code == 0);
}
