// Desired-state builders for an AgentRun's objects (see desired_objects.h). Pure: the same
// AgentRun and settings always give the same JSON, so the reconciler can compare it with
// what exists and tests can pin it with golden files.
#include "operator/controller/desired_objects.h"

#include <algorithm>
#include <functional>
#include <map>

#include "common/hash.h"
#include "common/quantity.h"
#include "operator/kube/config.h"

namespace carapace::controller {

using nlohmann::json;

std::string ConfigMapName(const std::string& agentrun) { return agentrun + "-spec"; }
std::string SecretName(const std::string& agentrun) { return agentrun + "-control"; }
std::string ServiceName(const std::string& agentrun) { return agentrun; }
std::string StatefulSetName(const std::string& agentrun) { return agentrun; }
std::string PodName(const std::string& agentrun) { return StatefulSetName(agentrun) + "-0"; }
std::string ClaimName(const std::string& agentrun) {
  return std::string(kStateVolume) + "-" + StatefulSetName(agentrun) + "-0";
}

json SelectorLabels(const std::string& agentrun) {
  return {{"app.kubernetes.io/name", "carapace-worker"}, {kAgentRunLabel, agentrun}};
}

json Labels(const std::string& agentrun) {
  json labels = SelectorLabels(agentrun);
  labels["app.kubernetes.io/instance"] = agentrun;
  labels["app.kubernetes.io/managed-by"] = "carapace-operator";
  return labels;
}

json OwnerReference(const Owner& owner) {
  return {{"apiVersion", "carapace.dev/v1alpha1"}, {"kind", "AgentRun"}, {"name", owner.name},
          {"uid", owner.uid}, {"controller", true}, {"blockOwnerDeletion", true}};
}

std::vector<const ModelEndpointSpec*> ModelEndpoints(const AgentRunSpec& spec) {
  std::vector<const ModelEndpointSpec*> endpoints = {&spec.model};
  for (const auto& f : spec.model.fallbacks) endpoints.push_back(&f);
  if (spec.embedding) endpoints.push_back(&*spec.embedding);
  if (spec.context && spec.context->summary_model) endpoints.push_back(&*spec.context->summary_model);
  return endpoints;
}

std::string StateDir(const AgentRun& run) {
  const int64_t generation = run.spec.deployment.restart_generation;
  return std::string(kStateMountDir) + "/agent" + (generation == 0 ? "" : "-restart-" + std::to_string(generation));
}

std::string LegacyRunsDir() { return std::string(kStateMountDir) + "/runs"; }

namespace {

json Metadata(const std::string& name, const Owner& owner) {
  return {{"name", name}, {"namespace", owner.ns}, {"labels", Labels(owner.name)},
          {"ownerReferences", json::array({OwnerReference(owner)})}};
}


// Calls `fn` for every value the spec takes from a Secret (secretKeyRef): model keys and
// tool headers.
void ForEachSecretRef(const AgentRunSpec& spec, const std::function<void(const HeaderSpec&)>& fn) {
  auto visit = [&](const HeaderSpec& h) {
    if (!h.secret_name.empty()) fn(h);
  };
  for (const ModelEndpointSpec* m : ModelEndpoints(spec)) {
    if (m->api_key) visit(*m->api_key);
  }
  for (const auto& t : spec.tools) {
    for (const auto& h : t.http.headers) visit(h);
    for (const auto& h : t.mcp.headers) visit(h);
  }
}

// Every Secret key the spec refers to, as the environment variable the worker reads it from.
json SecretEnv(const AgentRunSpec& spec) {
  std::map<std::string, json> env;  // sorted and unique: the pod template must be stable
  ForEachSecretRef(spec, [&](const HeaderSpec& h) {
    env[h.from_env] = {{"name", h.from_env},
                       {"valueFrom", {{"secretKeyRef", {{"name", h.secret_name}, {"key", h.secret_key}}}}}};
  });
  json out = json::array();
  for (auto& [name, e] : env) out.push_back(std::move(e));
  return out;
}

json Resources(const DeploymentSpec& d) {
  // As the server will store them (canonical quantities, no empty maps): a literal "0.5" or
  // 1 would differ from the stored "500m" or "1" on every pass and be written forever.
  if (d.resources.is_object() && !d.resources.empty()) return CanonicalResources(d.resources);
  // A worker idles at about 32 MiB; the limit leaves room for large tool outputs.
  return {{"requests", {{"cpu", "50m"}, {"memory", "64Mi"}}}, {"limits", {{"memory", "512Mi"}}}};
}

// The ConfigMaps that hold the model endpoints' own chat templates (triton.chatTemplate
// .configMap), each mounted read-only where the worker reads it (ChatTemplateMountDir), with
// a volume name derived from the ConfigMap's: names up to 253 characters do not fit a volume
// name's 63.
std::vector<std::pair<std::string, std::string>> ChatTemplateVolumes(const AgentRunSpec& spec) {
  std::vector<std::pair<std::string, std::string>> volumes;
  for (const ModelEndpointSpec* e : ModelEndpoints(spec)) {
    const std::string& name = e->triton.jinja.config_map;
    if (name.empty() || std::any_of(volumes.begin(), volumes.end(), [&](const auto& v) { return v.first == name; })) continue;
    volumes.emplace_back(name, "chat-template-" + Sha256Hex(name).substr(0, 12));
  }
  return volumes;
}

json WorkerContainer(const AgentRun& run, const OperatorSettings& settings) {
  const DeploymentSpec& d = run.spec.deployment;
  auto probe = [&](const char* path, int period, int failures) {
    return json{{"httpGet", {{"path", path}, {"port", "http"}}},
                {"periodSeconds", period},
                {"timeoutSeconds", 2},
                {"failureThreshold", failures}};
  };
  json container = {
      {"name", kWorkerContainer},
      {"image", d.image.empty() ? settings.worker_image : d.image},
      {"imagePullPolicy", "IfNotPresent"},
      {"args", json::array({std::string("--spec=") + kSpecMountDir + "/" + kSpecFileName,
                            "--state-dir=" + StateDir(run),
                            "--grpc-listen=0.0.0.0:" + std::to_string(settings.control_port),
                            "--http-listen=0.0.0.0:" + std::to_string(settings.http_port),
                            std::string("--token-file=") + kTokenMountDir + "/" + kTokenKey,
                            "--grace-seconds=" + std::to_string(settings.worker_grace_seconds),
                            "--tmp-dir=/tmp"})},
      {"ports", json::array({{{"name", "control"}, {"containerPort", settings.control_port}, {"protocol", "TCP"}},
                             {{"name", "http"}, {"containerPort", settings.http_port}, {"protocol", "TCP"}}})},
      {"resources", Resources(d)},
      // Opening RocksDB after a crash can take a while on a large log: the startup probe
      // gives it up to 5 minutes before liveness counts.
      {"startupProbe", probe("/healthz", 5, 60)},
      {"livenessProbe", probe("/healthz", 10, 6)},
      {"readinessProbe", probe("/readyz", 5, 3)},
      {"securityContext",
       {{"allowPrivilegeEscalation", false},
        {"readOnlyRootFilesystem", true},
        {"runAsNonRoot", true},
        {"capabilities", {{"drop", json::array({"ALL"})}}}}},
      {"volumeMounts",
       json::array({{{"name", kStateVolume}, {"mountPath", kStateMountDir}},
                    {{"name", "spec"}, {"mountPath", kSpecMountDir}, {"readOnly", true}},
                    {{"name", "control-token"}, {"mountPath", kTokenMountDir}, {"readOnly", true}},
                    {{"name", "tmp"}, {"mountPath", "/tmp"}}})},
  };
  // Omitted when empty, as the API server omits it: an empty list would read as drift.
  // The first generation's state dir takes over a volume laid out by spec hash (runs/<hash>/,
  // operators before spec revisions): the newest run there continues.
  if (run.spec.deployment.restart_generation == 0) container["args"].push_back("--adopt-from=" + LegacyRunsDir());
  json env = SecretEnv(run.spec);
  if (!settings.worker_otlp_endpoint.empty()) {
    // POD_NAME first: Kubernetes expands $(POD_NAME) only from variables listed before.
    env.push_back({{"name", "POD_NAME"}, {"valueFrom", {{"fieldRef", {{"apiVersion", "v1"}, {"fieldPath", "metadata.name"}}}}}});
    env.push_back({{"name", "OTEL_EXPORTER_OTLP_ENDPOINT"}, {"value", settings.worker_otlp_endpoint}});
    env.push_back({{"name", "OTEL_SERVICE_NAME"}, {"value", "carapace-worker"}});
    env.push_back({{"name", "OTEL_RESOURCE_ATTRIBUTES"}, {"value", "k8s.pod.name=$(POD_NAME)"}});
  }
  if (!env.empty()) container["env"] = env;
  for (const auto& [config_map, volume] : ChatTemplateVolumes(run.spec)) {
    container["volumeMounts"].push_back({{"name", volume}, {"mountPath", ChatTemplateMountDir(config_map)}, {"readOnly", true}});
  }
  return container;
}

// spec.storage.restoreFrom: the init container that restores the copy into the worker's
// state dir before the worker opens it. A pod made again (rolled, evicted) runs it again:
// --skip-if-restored leaves a state dir that holds the run from this copy as it is, so the
// agent keeps everything it did since. The worker's image (which holds the CLI), security
// context and resources: an init container's resources count as max(init, containers), so
// the pod asks for no more than before.
json RestoreContainer(const AgentRun& run, const Owner& owner, const OperatorSettings& settings) {
  const RestoreSourceSpec& from = run.spec.deployment.storage.restore_from;
  const json worker = WorkerContainer(run, settings);
  json args = json::array({"restore", std::string("--from=") + kRestoreMountDir + "/" + from.path,
                           "--state-dir=" + StateDir(run), "--skip-if-restored",
                           // Who holds an imported archive: another AgentRun (or this name made
                           // again, a new uid) is refused it unless it forks.
                           "--claim-as=" + owner.ns + "/" + owner.name + "/" + owner.uid});
  // A raised restartGeneration starts a new run in a new state dir: from the copy that is a
  // new agent (a fork), never the copy's own life a second time from its fence.
  if (from.fork || run.spec.deployment.restart_generation > 0) args.push_back("--fork");
  return {{"name", kRestoreContainer},
          {"image", worker["image"]},
          {"imagePullPolicy", worker["imagePullPolicy"]},
          {"command", json::array({kCliPath})},
          {"args", args},
          {"resources", worker["resources"]},
          {"securityContext", worker["securityContext"]},
          // Why a restore was refused shows in the pod's status (kubectl describe pod).
          {"terminationMessagePolicy", "FallbackToLogsOnError"},
          // The copy's claim read-write: importing an archive writes its claim file beside it.
          {"volumeMounts", json::array({{{"name", kStateVolume}, {"mountPath", kStateMountDir}},
                                        {{"name", kRestoreSourceVolume}, {"mountPath", kRestoreMountDir}},
                                        {{"name", "tmp"}, {"mountPath", "/tmp"}}})}};
}

}  // namespace

std::set<std::pair<std::string, std::string>> ReferencedSecretKeys(const AgentRunSpec& spec) {
  std::set<std::pair<std::string, std::string>> keys;
  ForEachSecretRef(spec, [&](const HeaderSpec& h) { keys.insert({h.secret_name, h.secret_key}); });
  return keys;
}

json DesiredConfigMap(const AgentRun& run, const Owner& owner) {
  json meta = Metadata(ConfigMapName(owner.name), owner);
  meta["annotations"] = {{kSpecHashAnnotation, run.SpecHash()}};
  return {{"apiVersion", "v1"},
          {"kind", "ConfigMap"},
          {"metadata", meta},
          {"data", {{kSpecFileName, run.ManifestJson().dump(2) + "\n"}}}};
}

json DesiredSecret(const AgentRun& /*run*/, const Owner& owner, const std::string& token) {
  return {{"apiVersion", "v1"},
          {"kind", "Secret"},
          {"metadata", Metadata(SecretName(owner.name), owner)},
          {"type", "Opaque"},
          {"data", {{kTokenKey, kube::EncodeBase64(token)}}}};
}

json DesiredService(const AgentRun& /*run*/, const Owner& owner, const OperatorSettings& settings) {
  // Headless: the pod gets a stable DNS name (NAME-0.NAME.NS.svc) for the control API.
  return {{"apiVersion", "v1"},
          {"kind", "Service"},
          {"metadata", Metadata(ServiceName(owner.name), owner)},
          {"spec",
           {{"clusterIP", "None"},
            {"selector", SelectorLabels(owner.name)},
            {"ports", json::array({{{"name", "control"}, {"port", settings.control_port},
                                    {"targetPort", "control"}, {"protocol", "TCP"}},
                                   {{"name", "http"}, {"port", settings.http_port},
                                    {"targetPort", "http"}, {"protocol", "TCP"}}})}}}};
}

json DesiredStatefulSet(const AgentRun& run, const Owner& owner, const OperatorSettings& settings, int replicas,
                        const std::string& secrets_hash) {
  const StorageSpec& storage = run.spec.deployment.storage;
  json claim_spec = {{"accessModes", json::array({"ReadWriteOnce"})},
                     {"resources", {{"requests", {{"storage", CanonicalQuantity(storage.size).value_or(storage.size)}}}}}};
  if (!storage.storage_class.empty()) claim_spec["storageClassName"] = storage.storage_class;
  if (!storage.from_snapshot.empty()) {
    // dataSource, not dataSourceRef: every CSI snapshot-capable version takes it, and a
    // server fills dataSourceRef from it on the claim it creates.
    claim_spec["dataSource"] = {{"apiGroup", "snapshot.storage.k8s.io"}, {"kind", "VolumeSnapshot"},
                                {"name", storage.from_snapshot}};
  }

  json pod_spec = {
      {"automountServiceAccountToken", false},  // the worker never talks to the API server
      {"enableServiceLinks", false},
      {"terminationGracePeriodSeconds", settings.worker_grace_seconds + 15},
      {"securityContext",
       {{"runAsNonRoot", true},
        {"runAsUser", kWorkerUid},
        {"runAsGroup", kWorkerUid},
        {"fsGroup", kWorkerUid},  // the state volume is writable by the non-root worker
        {"fsGroupChangePolicy", "OnRootMismatch"},
        {"seccompProfile", {{"type", "RuntimeDefault"}}}}},
      {"containers", json::array({WorkerContainer(run, settings)})},
      {"volumes",
       json::array({{{"name", "spec"}, {"configMap", {{"name", ConfigMapName(owner.name)}}}},
                    {{"name", "control-token"}, {"secret", {{"secretName", SecretName(owner.name)}, {"defaultMode", 0440}}}},
                    {{"name", "tmp"}, {"emptyDir", {{"sizeLimit", "256Mi"}}}}})},
  };
  for (const auto& [config_map, volume] : ChatTemplateVolumes(run.spec)) {
    pod_spec["volumes"].push_back({{"name", volume}, {"configMap", {{"name", config_map}}}});
  }
  if (settings.control_tls.enabled()) AddControlTls(owner, &pod_spec);
  if (!storage.restore_from.claim_name.empty()) {
    pod_spec["initContainers"] = json::array({RestoreContainer(run, owner, settings)});
    pod_spec["volumes"].push_back(
        {{"name", kRestoreSourceVolume}, {"persistentVolumeClaim", {{"claimName", storage.restore_from.claim_name}}}});
  }
  json pod_annotations = {{kSpecHashAnnotation, run.SpecHash()}};
  if (!secrets_hash.empty()) pod_annotations[kSecretsHashAnnotation] = secrets_hash;
  return {
      {"apiVersion", "apps/v1"},
      {"kind", "StatefulSet"},
      {"metadata", Metadata(StatefulSetName(owner.name), owner)},
      {"spec",
       {{"replicas", replicas},
        {"serviceName", ServiceName(owner.name)},
        {"selector", {{"matchLabels", SelectorLabels(owner.name)}}},
        {"persistentVolumeClaimRetentionPolicy", {{"whenDeleted", storage.when_deleted}, {"whenScaled", storage.when_scaled}}},
        {"template",
         {{"metadata", {{"labels", Labels(owner.name)}, {"annotations", pod_annotations}}},
          {"spec", pod_spec}}},
        {"volumeClaimTemplates",
         json::array({{{"metadata", {{"name", kStateVolume}, {"labels", Labels(owner.name)}}}, {"spec", claim_spec}}})}}},
  };
}

}  // namespace carapace::controller
