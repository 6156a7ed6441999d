// The operator's desired-state builders: golden JSON pins every field of the objects an
// AgentRun gets, and the properties users rely on (non-root, no token mounted, the spec
// hash on the pod template, the volume policy) are checked by name as well.
// Set CARAPACE_UPDATE_GOLDEN=1 to rewrite the golden files after a deliberate change.
#include <catch2/catch_test_macros.hpp>

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>

#include "common/agentrun/spec.h"
#include "common/file.h"
#include "operator/controller/desired_objects.h"
#include "operator/kube/config.h"

using namespace carapace;
using namespace carapace::controller;
using nlohmann::json;

namespace {

const std::string kGolden = std::string(CARAPACE_SOURCE_DIR) + "/tests/unit/golden/";

AgentRun GoldenRun() {
  auto run = LoadAgentRunFile(kGolden + "agentrun.yaml");
  REQUIRE(run.ok());
  return *run;
}

const Owner kOwner{"researcher", "agents", "6f1c2a9e-0000-4000-8000-000000000001"};

void CheckGolden(const json& actual, const std::string& file) {
  const std::string path = kGolden + file;
  if (std::getenv("CARAPACE_UPDATE_GOLDEN")) {
    std::ofstream(path) << actual.dump(2) << "\n";
  }
  auto text = ReadFile(path);
  REQUIRE(text.ok());
  const json expected = json::parse(*text);
  INFO("golden file " << file << "; diff (RFC 6902, expected -> actual): " << json::diff(expected, actual).dump(2));
  CHECK(actual == expected);
}

}  // namespace

TEST_CASE("the desired objects of an AgentRun match their golden JSON", "[operator][golden]") {
  const AgentRun run = GoldenRun();
  OperatorSettings settings;
  CheckGolden(DesiredConfigMap(run, kOwner), "configmap.json");
  CheckGolden(DesiredSecret(run, kOwner, "0123456789abcdef"), "secret.json");
  CheckGolden(DesiredService(run, kOwner, settings), "service.json");
  CheckGolden(DesiredStatefulSet(run, kOwner, settings, 1), "statefulset.json");
}

TEST_CASE("the worker's pod runs non-root, read-only, without capabilities or an API token", "[operator]") {
  const json sts = DesiredStatefulSet(GoldenRun(), kOwner, OperatorSettings{}, 1);
  const json& pod = sts["spec"]["template"]["spec"];
  CHECK(pod["automountServiceAccountToken"] == false);
  CHECK(pod["securityContext"]["runAsNonRoot"] == true);
  CHECK(pod["securityContext"]["fsGroup"] == kWorkerUid);
  CHECK(pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault");
  const json& c = pod["containers"][0];
  CHECK(c["securityContext"]["readOnlyRootFilesystem"] == true);
  CHECK(c["securityContext"]["allowPrivilegeEscalation"] == false);
  CHECK(c["securityContext"]["capabilities"]["drop"] == json::array({"ALL"}));
  CHECK(c["readinessProbe"]["httpGet"]["path"] == "/readyz");
  CHECK(c["livenessProbe"]["httpGet"]["path"] == "/healthz");
  // The worker drains for its grace period on SIGTERM; the pod waits longer than that.
  CHECK(pod["terminationGracePeriodSeconds"].get<int>() > OperatorSettings{}.worker_grace_seconds);
  CHECK(c["image"] == "registry.example/carapace-worker:1.0");
  CHECK(c["resources"]["limits"]["memory"] == "1Gi");
}

TEST_CASE("model and tool credentials reach the worker only as Secret references", "[operator]") {
  const json sts = DesiredStatefulSet(GoldenRun(), kOwner, OperatorSettings{}, 1);
  const json& env = sts["spec"]["template"]["spec"]["containers"][0]["env"];
  REQUIRE(env.size() == 2);
  CHECK(env[0]["name"] == SecretEnvName("mcp-auth", "header"));
  CHECK(env[0]["valueFrom"]["secretKeyRef"] == json({{"name", "mcp-auth"}, {"key", "header"}}));
  CHECK(env[1]["name"] == SecretEnvName("model-keys", "vllm"));
  for (const auto& e : env) CHECK_FALSE(e.contains("value"));
  // The ConfigMap holds the spec with references, never a value.
  const std::string spec_text = DesiredConfigMap(GoldenRun(), kOwner)["data"][kSpecFileName];
  CHECK(spec_text.find("secretKeyRef") != std::string::npos);

  // A summary model's key too.
  AgentRun run = GoldenRun();
  ContextSpec context;
  ModelEndpointSpec small;
  small.backend = "openai";
  small.name = "small";
  small.endpoint = "http://small:8000/v1";
  HeaderSpec key;
  key.name = "Authorization";
  key.secret_name = "small-key";
  key.secret_key = "token";
  key.from_env = SecretEnvName("small-key", "token");
  small.api_key = key;
  context.summary_model = small;
  run.spec.context = context;
  const json with_summary = DesiredStatefulSet(run, kOwner, OperatorSettings{}, 1)["spec"]["template"]["spec"]["containers"][0]["env"];
  REQUIRE(with_summary.size() == 3);
  bool found = false;
  for (const auto& e : with_summary) found = found || e["name"] == SecretEnvName("small-key", "token");
  CHECK(found);
}

TEST_CASE("a spec change changes the pod template but not the state directory; only restartGeneration does", "[operator]") {
  AgentRun a = GoldenRun();
  AgentRun b = a;
  b.spec.goal = "Something else.";
  const json sa = DesiredStatefulSet(a, kOwner, OperatorSettings{}, 1);
  const json sb = DesiredStatefulSet(b, kOwner, OperatorSettings{}, 1);
  CHECK(sa["spec"]["template"]["metadata"]["annotations"][kSpecHashAnnotation] == a.SpecHash());
  CHECK(sa["spec"]["template"] != sb["spec"]["template"]);
  // One state directory per AgentRun: the worker records the new spec as a revision.
  CHECK(StateDir(a) == StateDir(b));
  CHECK(StateDir(a) == "/var/lib/carapace/agent");
  AgentRun restarted = a;
  restarted.spec.deployment.restart_generation = 2;
  CHECK(StateDir(restarted) == "/var/lib/carapace/agent-restart-2");
  const json sr = DesiredStatefulSet(restarted, kOwner, OperatorSettings{}, 1);
  const json args = sr["spec"]["template"]["spec"]["containers"][0]["args"];
  CHECK(std::find(args.begin(), args.end(), "--state-dir=/var/lib/carapace/agent-restart-2") != args.end());
  // Only the first generation adopts a volume laid out by spec hash.
  CHECK(std::find(args.begin(), args.end(), "--adopt-from=/var/lib/carapace/runs") == args.end());
  const json a_args = sa["spec"]["template"]["spec"]["containers"][0]["args"];
  CHECK(std::find(a_args.begin(), a_args.end(), "--adopt-from=/var/lib/carapace/runs") != a_args.end());
  AgentRun c = a;
  c.spec.deployment.suspend = true;
  c.spec.deployment.image = "";
  CHECK(StateDir(c) == StateDir(a));
  const json sc = DesiredStatefulSet(c, kOwner, OperatorSettings{}, 0);
  CHECK(sc["spec"]["replicas"] == 0);
  CHECK(sc["spec"]["template"]["spec"]["containers"][0]["image"] == OperatorSettings{}.worker_image);
  // The worker reads the ConfigMap's manifest back to the same spec hash.
  auto parsed = ParseAgentRun(DesiredConfigMap(a, kOwner)["data"][kSpecFileName].get<std::string>(), "cm");
  REQUIRE(parsed.ok());
  CHECK(parsed->SpecHash() == a.SpecHash());
}

TEST_CASE("every object is owned by its AgentRun and carries its labels", "[operator]") {
  const AgentRun run = GoldenRun();
  for (const json& o : {DesiredConfigMap(run, kOwner), DesiredSecret(run, kOwner, "t"),
                        DesiredService(run, kOwner, OperatorSettings{}), DesiredStatefulSet(run, kOwner, OperatorSettings{}, 1)}) {
    INFO(o["kind"]);
    const json& ref = o["metadata"]["ownerReferences"][0];
    CHECK(ref["uid"] == kOwner.uid);
    CHECK(ref["controller"] == true);
    CHECK(o["metadata"]["namespace"] == "agents");
    CHECK(o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "carapace-operator");
  }
  CHECK(*kube::DecodeBase64(DesiredSecret(run, kOwner, "s3cret")["data"][kTokenKey]) == "s3cret");
}

TEST_CASE("a chat template ConfigMap is mounted read-only where the worker reads it, once per ConfigMap", "[operator]") {
  AgentRun run = GoldenRun();
  const json before = DesiredStatefulSet(run, kOwner, OperatorSettings{}, 1);
  ModelEndpointSpec fallback;
  fallback.backend = "triton";
  fallback.name = "qwen3-coder";
  fallback.endpoint = "triton:8001";
  fallback.triton.jinja.config_map = "qwen3-coder-tokenizer";
  fallback.triton.jinja.key = "tokenizer_config.json";
  run.spec.model.fallbacks = {fallback, fallback};  // the same ConfigMap twice: one volume
  const json sts = DesiredStatefulSet(run, kOwner, OperatorSettings{}, 1);
  const json& pod = sts["spec"]["template"]["spec"];
  REQUIRE(pod["volumes"].size() == before["spec"]["template"]["spec"]["volumes"].size() + 1);
  const json& volume = pod["volumes"].back();
  CHECK(volume["configMap"]["name"] == "qwen3-coder-tokenizer");
  const json& mount = pod["containers"][0]["volumeMounts"].back();
  CHECK(mount["name"] == volume["name"]);
  CHECK(mount["readOnly"] == true);
  CHECK(mount["mountPath"] == "/etc/carapace/chat-templates/qwen3-coder-tokenizer");
  // Where the worker looks for it: the mount and the key.
  CHECK(fallback.triton.jinja.Path() == mount["mountPath"].get<std::string>() + "/tokenizer_config.json");
  // A volume name is a DNS label of at most 63 characters, whatever the ConfigMap is called.
  fallback.triton.jinja.config_map = std::string(200, 'a');
  run.spec.model.fallbacks = {fallback};
  const json long_name = DesiredStatefulSet(run, kOwner, OperatorSettings{}, 1)["spec"]["template"]["spec"]["volumes"].back();
  CHECK(long_name["name"].get<std::string>().size() <= 63);
  // The spec the worker reads back names the same ConfigMap and key.
  const std::string spec_text = DesiredConfigMap(run, kOwner)["data"][kSpecFileName];
  auto read_back = ParseAgentRun(spec_text, "spec.json");
  INFO(read_back.status().ToString());
  REQUIRE(read_back.ok());
  REQUIRE(read_back->spec.model.fallbacks.size() == 1);
  CHECK(read_back->spec.model.fallbacks[0].triton.jinja.Path() ==
        "/etc/carapace/chat-templates/" + std::string(200, 'a') + "/tokenizer_config.json");
  CHECK(read_back->SpecHash() == run.SpecHash());
}

TEST_CASE("with --worker-otlp-endpoint the worker's pod gets the OTLP endpoint and its pod name, else nothing",
          "[operator][tracing]") {
  const json untraced = DesiredStatefulSet(GoldenRun(), kOwner, OperatorSettings{}, 1);
  CHECK(untraced.dump().find("OTEL_") == std::string::npos);  // the pod template, and its hash, as before

  OperatorSettings settings;
  settings.worker_otlp_endpoint = "http://otel-collector.monitoring:4317";
  const json env = DesiredStatefulSet(GoldenRun(), kOwner, settings, 1)["spec"]["template"]["spec"]["containers"][0]["env"];
  std::vector<std::string> names;
  for (const auto& e : env) names.push_back(e["name"]);
  // The Secret references first, as without tracing; POD_NAME before the variable that uses it.
  REQUIRE(names.size() == 6);
  CHECK(names[2] == "POD_NAME");
  CHECK(env[2]["valueFrom"]["fieldRef"] == json({{"apiVersion", "v1"}, {"fieldPath", "metadata.name"}}));
  CHECK(names[3] == "OTEL_EXPORTER_OTLP_ENDPOINT");
  CHECK(env[3]["value"] == "http://otel-collector.monitoring:4317");
  CHECK(names[4] == "OTEL_SERVICE_NAME");
  CHECK(env[4]["value"] == "carapace-worker");
  CHECK(names[5] == "OTEL_RESOURCE_ATTRIBUTES");
  CHECK(env[5]["value"] == "k8s.pod.name=$(POD_NAME)");
}

TEST_CASE("the NetworkPolicy lets the operator in, and out only DNS and the endpoints the spec names",
          "[operator][network-policy]") {
  auto run = ParseAgentRun(R"yaml(
apiVersion: carapace.dev/v1alpha1
kind: AgentRun
metadata: {name: fenced, namespace: agents}
spec:
  goal: g
  model:
    backend: openai
    name: m
    endpoint: http://vllm.models.svc:8000/v1
    fallbacks: [{backend: triton, name: t, endpoint: "10.1.2.3:8001"}]
  tools:
    - {name: mcp, kind: mcp, mcp: {url: "http://tools:3001/mcp"}}
    - {name: web, kind: http, http: {allowedHosts: ["api.example.com", "192.168.1.5:8443", "*", "localhost:9"]}}
)yaml", "test");
  REQUIRE(run.ok());
  OperatorSettings settings;
  settings.worker_otlp_endpoint = "http://otel.monitoring.svc.cluster.local:4317";
  settings.network_policy.enabled = true;
  settings.network_policy.operator_namespace = "carapace-system";
  settings.network_policy.operator_pod_labels = {{"app.kubernetes.io/name", "carapace-operator"}};
  settings.network_policy.metrics_namespaces = {"monitoring"};
  const Owner owner{"fenced", "agents", "6f1c2a9e-0000-4000-8000-000000000002"};
  const json policy = DesiredNetworkPolicy(*run, owner, settings,
                                           {{kEgressCidrsAnnotation, "203.0.113.0/24, bogus, 2001:db8::/32"}});

  CHECK(policy["metadata"]["ownerReferences"][0]["uid"] == owner.uid);
  CHECK(policy["spec"]["podSelector"]["matchLabels"] == SelectorLabels("fenced"));
  CHECK(policy["spec"]["policyTypes"] == json({"Ingress", "Egress"}));
  // In: the control port from the operator's pods in its namespace; metrics from monitoring.
  const json& ingress = policy["spec"]["ingress"];
  REQUIRE(ingress.size() == 2);
  CHECK(ingress[0]["ports"] == json::parse(R"([{"port": 7070, "protocol": "TCP"}])"));
  CHECK(ingress[0]["from"] == json::parse(R"([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "carapace-system"}},
                                              "podSelector": {"matchLabels": {"app.kubernetes.io/name": "carapace-operator"}}}])"));
  CHECK(ingress[1]["ports"] == json::parse(R"([{"port": 8080, "protocol": "TCP"}])"));
  CHECK(ingress[1]["from"] == json::parse(R"([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}])"));

  // Out: DNS; the Services' namespaces (the bare name is this namespace); addresses with
  // their ports; the annotation's CIDRs on any port. Loopback needs no rule.
  const json& egress = policy["spec"]["egress"];
  REQUIRE(egress.size() == 6);
  CHECK(egress[0] == json::parse(R"({"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]})"));
  std::set<std::string> namespaces;
  for (const auto& to : egress[1]["to"]) namespaces.insert(to["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]);
  CHECK(namespaces == std::set<std::string>{"agents", "models", "monitoring"});
  CHECK_FALSE(egress[1].contains("ports"));  // a Service may map its port to another on the pods
  std::map<std::string, json> blocks;
  for (size_t i = 2; i < egress.size(); ++i) blocks[egress[i]["to"][0]["ipBlock"]["cidr"]] = egress[i].value("ports", json());
  CHECK(blocks.at("10.1.2.3/32") == json::parse(R"([{"port": 8001, "protocol": "TCP"}])"));
  CHECK(blocks.at("192.168.1.5/32") == json::parse(R"([{"port": 8443, "protocol": "TCP"}])"));
  CHECK(blocks.at("203.0.113.0/24").is_null());
  CHECK(blocks.at("2001:db8::/32").is_null());
  // What a policy cannot say is said on it.
  CHECK(policy["metadata"]["annotations"][kUnexpressedEgressAnnotation] == "*,api.example.com");
  const std::string warnings = policy["metadata"]["annotations"][kEgressWarningsAnnotation];
  CHECK(warnings.find("\"bogus\" is not a CIDR") != std::string::npos);

  // Without the escape hatch's mistakes and unnamed hosts, both annotations are empty.
  AgentRun plain = *run;
  plain.spec.tools.pop_back();
  const json quiet = DesiredNetworkPolicy(plain, owner, settings, json::object());
  CHECK(quiet["metadata"]["annotations"][kUnexpressedEgressAnnotation] == "");
  CHECK(quiet["metadata"]["annotations"][kEgressWarningsAnnotation] == "");
}

TEST_CASE("spec.storage.fromSnapshot makes the volume from a VolumeSnapshot; without it the claim is as before",
          "[operator][snapshot]") {
  AgentRun run = GoldenRun();
  const json before = DesiredStatefulSet(run, kOwner, OperatorSettings{}, 1);
  CHECK_FALSE(before["spec"]["volumeClaimTemplates"][0]["spec"].contains("dataSource"));
  run.spec.deployment.storage.from_snapshot = "researcher-nightly";
  const json from = DesiredStatefulSet(run, kOwner, OperatorSettings{}, 1);
  CHECK(from["spec"]["volumeClaimTemplates"][0]["spec"]["dataSource"] ==
        json({{"apiGroup", "snapshot.storage.k8s.io"}, {"kind", "VolumeSnapshot"}, {"name", "researcher-nightly"}}));
  // Nothing else of the claim or the pod changes.
  json without = from;
  without["spec"]["volumeClaimTemplates"][0]["spec"].erase("dataSource");
  CHECK(without == before);
}

TEST_CASE("spec.storage.restoreFrom restores the copy in an init container before the worker; without it the pod is as "
          "before",
          "[operator][restore]") {
  AgentRun run = GoldenRun();
  const json before = DesiredStatefulSet(run, kOwner, OperatorSettings{}, 1);
  CHECK_FALSE(before["spec"]["template"]["spec"].contains("initContainers"));
  run.spec.deployment.storage.restore_from = {"agent-moves", "alice/notes.carapace", false};
  const json from = DesiredStatefulSet(run, kOwner, OperatorSettings{}, 1);
  const json& pod = from["spec"]["template"]["spec"];
  const json& worker = pod["containers"][0];
  REQUIRE(pod["initContainers"].size() == 1);
  const json& restore = pod["initContainers"][0];
  CHECK(restore["name"] == "restore");
  // The worker's image (it holds the CLI), run as the CLI, with the worker's limits and lockdown.
  CHECK(restore["image"] == worker["image"]);
  CHECK(restore["imagePullPolicy"] == worker["imagePullPolicy"]);
  CHECK(restore["command"] == json::array({"/usr/local/bin/carapace"}));
  CHECK(restore["resources"] == worker["resources"]);
  CHECK(restore["securityContext"] == worker["securityContext"]);
  CHECK(restore["terminationMessagePolicy"] == "FallbackToLogsOnError");
  // Into the state dir the worker opens, claimed by this AgentRun (namespace/name/uid).
  std::string worker_state_dir;
  for (const auto& a : worker["args"]) {
    if (a.get<std::string>().rfind("--state-dir=", 0) == 0) worker_state_dir = a;
  }
  REQUIRE_FALSE(worker_state_dir.empty());
  CHECK(restore["args"] == json::array({"restore", "--from=/restore-source/alice/notes.carapace", worker_state_dir,
                                        "--skip-if-restored",
                                        "--claim-as=agents/researcher/6f1c2a9e-0000-4000-8000-000000000001"}));
  // The state volume where the worker has it; the copy's claim read-write (the import's
  // claim file is written beside the archive).
  CHECK(restore["volumeMounts"] ==
        json::array({{{"name", "state"}, {"mountPath", "/var/lib/carapace"}},
                     {{"name", "restore-source"}, {"mountPath", "/restore-source"}},
                     {{"name", "tmp"}, {"mountPath", "/tmp"}}}));
  bool worker_has_state = false;
  for (const auto& m : worker["volumeMounts"]) {
    worker_has_state = worker_has_state || (m["name"] == "state" && m["mountPath"] == "/var/lib/carapace");
    CHECK(m["name"] != "restore-source");  // the worker never sees the copy
  }
  CHECK(worker_has_state);
  CHECK(pod["volumes"].back() ==
        json({{"name", "restore-source"}, {"persistentVolumeClaim", {{"claimName", "agent-moves"}}}}));

  CHECK(restore["args"].back() != "--fork");
  // A raised restartGeneration restores into the state dir the worker then opens, as a fork:
  // a new run from the copy, never the copy's own life again from its fence.
  run.spec.deployment.restart_generation = 3;
  const json restarted = DesiredStatefulSet(run, kOwner, OperatorSettings{}, 1);
  CHECK(restarted["spec"]["template"]["spec"]["initContainers"][0]["args"][2] ==
        "--state-dir=/var/lib/carapace/agent-restart-3");
  CHECK(restarted["spec"]["template"]["spec"]["initContainers"][0]["args"].back() == "--fork");
  run.spec.deployment.restart_generation = 0;

  // fork: a new agent from the copy.
  run.spec.deployment.storage.restore_from.fork = true;
  const json forked = DesiredStatefulSet(run, kOwner, OperatorSettings{}, 1);
  CHECK(forked["spec"]["template"]["spec"]["initContainers"][0]["args"].back() == "--fork");

  // Nothing else of the pod, the claim or the StatefulSet changes.
  json without = from;
  without["spec"]["template"]["spec"].erase("initContainers");
  without["spec"]["template"]["spec"]["volumes"].erase(without["spec"]["template"]["spec"]["volumes"].size() - 1);
  CHECK(without == before);
}

TEST_CASE("a spec image is the restore container's image too", "[operator][restore]") {
  AgentRun run = GoldenRun();
  run.spec.deployment.storage.restore_from = {"agent-moves", "backups/nightly", false};
  run.spec.deployment.image = "registry.example/carapace-worker:2.0";
  OperatorSettings settings;
  settings.worker_image = "registry.example/default:1";
  const json sts = DesiredStatefulSet(run, kOwner, settings, 1);
  CHECK(sts["spec"]["template"]["spec"]["initContainers"][0]["image"] == "registry.example/carapace-worker:2.0");
  CHECK(sts["spec"]["template"]["spec"]["initContainers"][0]["args"][1] == "--from=/restore-source/backups/nightly");
}
