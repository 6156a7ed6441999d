// The kube-apiserver's defaulting, canonicalisation and update validation of the built-in
// kinds the double serves, each rule after the Kubernetes source named next to it.
#include "tests/support/kube_api_double_semantics.h"

#include <map>
#include <mutex>
#include <regex>

#include "common/quantity.h"

namespace carapace::testing::kube_double {

using nlohmann::json;

const char kQuantityFormatError[] =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

namespace {

// Go's %q of a string, for the simple strings names and labels are.
std::string Quote(const std::string& s) { return json(s).dump(); }

void SetIfAbsent(json* object, const char* key, const json& value) {
  if (!object->contains(key) || (*object)[key].is_null()) (*object)[key] = value;
}

// int32 fields that are not pointers: the defaulting functions treat 0 as unset.
void SetIfZero(json* object, const char* key, int value) {
  if (!object->contains(key) || (*object)[key].is_null() || (*object)[key] == 0) (*object)[key] = value;
}

bool StringUnset(const json& object, const char* key) {
  return !object.contains(key) || !object[key].is_string() || object[key].get<std::string>().empty();
}

json* Child(json* object, const char* key) {
  if (!object->is_object()) return nullptr;
  auto it = object->find(key);
  return it != object->end() && it->is_object() ? &*it : nullptr;
}

// ---- Quantities (k8s.io/apimachinery/pkg/api/resource/quantity.go) ----

// Every value of a ResourceList canonical; the first malformed one is the decode error.
std::optional<std::string> CanonicaliseList(json* list) {
  if (list == nullptr || !list->is_object()) return std::nullopt;
  for (auto it = list->begin(); it != list->end(); ++it) {
    auto canonical = CanonicalQuantity(*it);
    if (!canonical) return std::string(kQuantityFormatError);
    *it = *canonical;
  }
  return std::nullopt;
}

// ResourceRequirements: limits and requests canonical; empty maps omitted (omitempty), the
// struct itself kept (resources: {} stays).
std::optional<std::string> CanonicaliseResources(json* owner) {
  json* resources = Child(owner, "resources");
  if (resources == nullptr) return std::nullopt;
  for (const char* part : {"limits", "requests"}) {
    if (auto error = CanonicaliseList(Child(resources, part))) return error;
  }
  *resources = CanonicalResources(*resources);
  return std::nullopt;
}

// ---- core/v1 (pkg/apis/core/v1/defaults.go) ----

// parsers.ParseImageName: the tag is what follows the last ':' after the last '/', before
// any digest; no tag and no digest means "latest".
std::string ImageTag(const std::string& image) {
  std::string name = image;
  bool has_digest = false;
  if (size_t at = name.find('@'); at != std::string::npos) {
    name = name.substr(0, at);
    has_digest = true;
  }
  size_t colon = name.rfind(':');
  size_t slash = name.rfind('/');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) return name.substr(colon + 1);
  return has_digest ? "" : "latest";
}

// SetDefaults_HTTPGetAction.
void DefaultHttpGet(json* handler) {
  json* get = handler ? Child(handler, "httpGet") : nullptr;
  if (get == nullptr) return;
  if (StringUnset(*get, "path")) (*get)["path"] = "/";
  if (StringUnset(*get, "scheme")) (*get)["scheme"] = "HTTP";
}

// SetDefaults_Probe.
void DefaultProbe(json* probe) {
  if (probe == nullptr) return;
  SetIfZero(probe, "timeoutSeconds", 1);
  SetIfZero(probe, "periodSeconds", 10);
  SetIfZero(probe, "successThreshold", 1);
  SetIfZero(probe, "failureThreshold", 3);
  DefaultHttpGet(probe);
}

// SetDefaults_Container, SetDefaults_ContainerPort, SetDefaults_ObjectFieldSelector.
std::optional<std::string> DefaultContainer(json* c, bool host_network) {
  if (!c->is_object()) return std::nullopt;
  if (StringUnset(*c, "imagePullPolicy")) {
    (*c)["imagePullPolicy"] = ImageTag(c->value("image", "")) == "latest" ? "Always" : "IfNotPresent";
  }
  if (StringUnset(*c, "terminationMessagePath")) (*c)["terminationMessagePath"] = "/dev/termination-log";
  if (StringUnset(*c, "terminationMessagePolicy")) (*c)["terminationMessagePolicy"] = "File";
  if (c->contains("ports") && (*c)["ports"].is_array()) {
    for (auto& port : (*c)["ports"]) {
      if (!port.is_object()) continue;
      if (StringUnset(port, "protocol")) port["protocol"] = "TCP";
      // defaultHostNetworkPorts: a host-network pod's ports are host ports.
      if (host_network && port.value("hostPort", 0) == 0 && port.contains("containerPort")) {
        port["hostPort"] = port["containerPort"];
      }
    }
  }
  if (c->contains("env") && (*c)["env"].is_array()) {
    for (auto& env : (*c)["env"]) {
      json* from = env.is_object() ? Child(&env, "valueFrom") : nullptr;
      if (json* field = from ? Child(from, "fieldRef") : nullptr; field && StringUnset(*field, "apiVersion")) {
        (*field)["apiVersion"] = "v1";
      }
    }
  }
  for (const char* probe : {"livenessProbe", "readinessProbe", "startupProbe"}) DefaultProbe(Child(c, probe));
  if (json* lifecycle = Child(c, "lifecycle")) {
    for (const char* hook : {"postStart", "preStop"}) DefaultHttpGet(Child(lifecycle, hook));
  }
  return CanonicaliseResources(c);
}

// SetDefaults_Volume (no source: an emptyDir) and the volume sources' default modes.
std::optional<std::string> DefaultVolume(json* v) {
  if (!v->is_object()) return std::nullopt;
  bool has_source = false;
  for (auto it = v->begin(); it != v->end(); ++it) has_source = has_source || it.key() != "name";
  if (!has_source) (*v)["emptyDir"] = json::object();
  for (const char* source : {"configMap", "secret", "downwardAPI", "projected"}) {
    if (json* s = Child(v, source)) SetIfAbsent(s, "defaultMode", 420);  // 0644
  }
  if (json* empty_dir = Child(v, "emptyDir"); empty_dir && empty_dir->contains("sizeLimit")) {
    auto canonical = CanonicalQuantity((*empty_dir)["sizeLimit"]);
    if (!canonical) return std::string(kQuantityFormatError);
    (*empty_dir)["sizeLimit"] = *canonical;
  }
  return std::nullopt;
}

// SetDefaults_PodSpec, with SetDefaults_Pod's extras for a Pod itself.
std::optional<std::string> DefaultPodSpec(json* spec, bool is_pod) {
  if (spec == nullptr) return std::nullopt;
  if (StringUnset(*spec, "dnsPolicy")) (*spec)["dnsPolicy"] = "ClusterFirst";
  if (StringUnset(*spec, "restartPolicy")) (*spec)["restartPolicy"] = "Always";
  SetIfAbsent(spec, "securityContext", json::object());
  SetIfAbsent(spec, "terminationGracePeriodSeconds", 30);
  if (StringUnset(*spec, "schedulerName")) (*spec)["schedulerName"] = "default-scheduler";
  if (is_pod) SetIfAbsent(spec, "enableServiceLinks", true);
  const bool host_network = spec->value("hostNetwork", false) == true;
  for (const char* list : {"initContainers", "containers", "ephemeralContainers"}) {
    if (!spec->contains(list) || !(*spec)[list].is_array()) continue;
    for (auto& c : (*spec)[list]) {
      // SetDefaults_Pod: a Pod's container with limits but no request asks for its limits.
      if (is_pod && c.is_object() && c.contains("resources") && c["resources"].contains("limits")) {
        json& resources = c["resources"];
        for (auto l = resources["limits"].begin(); l != resources["limits"].end(); ++l) {
          if (!resources.contains("requests") || !resources["requests"].contains(l.key())) {
            resources["requests"][l.key()] = *l;
          }
        }
      }
      if (auto error = DefaultContainer(&c, host_network)) return error;
    }
  }
  if (spec->contains("volumes") && (*spec)["volumes"].is_array()) {
    for (auto& v : (*spec)["volumes"]) {
      if (auto error = DefaultVolume(&v)) return error;
    }
  }
  return CanonicaliseList(Child(spec, "overhead"));
}

std::optional<std::string> DefaultPodTemplate(json* owner_spec) {
  json* tmpl = owner_spec ? Child(owner_spec, "template") : nullptr;
  return tmpl ? DefaultPodSpec(Child(tmpl, "spec"), false) : std::nullopt;
}

// SetDefaults_PersistentVolumeClaimSpec and SetDefaults_PersistentVolumeClaim (status.phase
// Pending), which the scheme applies to a StatefulSet's claim templates too.
std::optional<std::string> DefaultClaim(json* claim) {
  if (!claim->is_object()) return std::nullopt;
  if (!claim->contains("spec") || !(*claim)["spec"].is_object()) (*claim)["spec"] = json::object();
  json& spec = (*claim)["spec"];
  if (StringUnset(spec, "volumeMode")) spec["volumeMode"] = "Filesystem";
  if (!claim->contains("status") || !(*claim)["status"].is_object()) (*claim)["status"] = json::object();
  if (StringUnset((*claim)["status"], "phase")) (*claim)["status"]["phase"] = "Pending";
  if (auto error = CanonicaliseResources(&spec)) return error;
  return CanonicaliseList(Child(&(*claim)["status"], "capacity"));
}

// SetDefaults_Service (the allocator's part is AllocateServiceIps).
void DefaultService(json* service) {
  if (!service->contains("spec") || !(*service)["spec"].is_object()) (*service)["spec"] = json::object();
  json& spec = (*service)["spec"];
  if (StringUnset(spec, "sessionAffinity")) spec["sessionAffinity"] = "None";
  if (StringUnset(spec, "type")) spec["type"] = "ClusterIP";
  const std::string type = spec["type"].get<std::string>();
  if (spec["sessionAffinity"] == "ClientIP") {
    json& config = spec["sessionAffinityConfig"];
    if (!config.is_object()) config = json::object();
    if (!config.contains("clientIP") || !config["clientIP"].is_object()) config["clientIP"] = json::object();
    SetIfAbsent(&config["clientIP"], "timeoutSeconds", 10800);
  }
  if (spec.contains("ports") && spec["ports"].is_array()) {
    for (auto& port : spec["ports"]) {
      if (!port.is_object()) continue;
      if (StringUnset(port, "protocol")) port["protocol"] = "TCP";
      const json target = port.value("targetPort", json());
      if (target.is_null() || target == 0 || target == "") port["targetPort"] = port.value("port", json(0));
    }
  }
  if ((type == "NodePort" || type == "LoadBalancer") && StringUnset(spec, "externalTrafficPolicy")) {
    spec["externalTrafficPolicy"] = "Cluster";
  }
  if (type != "ExternalName" && StringUnset(spec, "internalTrafficPolicy")) spec["internalTrafficPolicy"] = "Cluster";
  if (type == "LoadBalancer") SetIfAbsent(&spec, "allocateLoadBalancerNodePorts", true);
}

// ---- apps/v1 (pkg/apis/apps/v1/defaults.go) ----

std::optional<std::string> DefaultStatefulSet(json* sts) {
  if (!sts->contains("spec") || !(*sts)["spec"].is_object()) (*sts)["spec"] = json::object();
  json& spec = (*sts)["spec"];
  if (StringUnset(spec, "podManagementPolicy")) spec["podManagementPolicy"] = "OrderedReady";
  if (!spec.contains("updateStrategy") || !spec["updateStrategy"].is_object()) spec["updateStrategy"] = json::object();
  json& strategy = spec["updateStrategy"];
  if (StringUnset(strategy, "type")) {
    strategy["type"] = "RollingUpdate";
    SetIfAbsent(&strategy, "rollingUpdate", json::object());
  }
  if (strategy["type"] == "RollingUpdate" && strategy.contains("rollingUpdate") &&
      strategy["rollingUpdate"].is_object()) {
    SetIfAbsent(&strategy["rollingUpdate"], "partition", 0);
  }
  // StatefulSetAutoDeletePVC is GA: the retention policy is always filled.
  if (!spec.contains("persistentVolumeClaimRetentionPolicy") ||
      !spec["persistentVolumeClaimRetentionPolicy"].is_object()) {
    spec["persistentVolumeClaimRetentionPolicy"] = json::object();
  }
  json& retention = spec["persistentVolumeClaimRetentionPolicy"];
  if (StringUnset(retention, "whenDeleted")) retention["whenDeleted"] = "Retain";
  if (StringUnset(retention, "whenScaled")) retention["whenScaled"] = "Retain";
  SetIfAbsent(&spec, "replicas", 1);
  SetIfAbsent(&spec, "revisionHistoryLimit", 10);
  if (spec.contains("volumeClaimTemplates") && spec["volumeClaimTemplates"].is_array()) {
    for (auto& claim : spec["volumeClaimTemplates"]) {
      if (auto error = DefaultClaim(&claim)) return error;
    }
  }
  return DefaultPodTemplate(&spec);
}

std::optional<std::string> DefaultDeployment(json* deploy) {
  if (!deploy->contains("spec") || !(*deploy)["spec"].is_object()) (*deploy)["spec"] = json::object();
  json& spec = (*deploy)["spec"];
  SetIfAbsent(&spec, "replicas", 1);
  if (!spec.contains("strategy") || !spec["strategy"].is_object()) spec["strategy"] = json::object();
  json& strategy = spec["strategy"];
  if (StringUnset(strategy, "type")) strategy["type"] = "RollingUpdate";
  if (strategy["type"] == "RollingUpdate") {
    SetIfAbsent(&strategy, "rollingUpdate", json::object());
    SetIfAbsent(&strategy["rollingUpdate"], "maxUnavailable", "25%");
    SetIfAbsent(&strategy["rollingUpdate"], "maxSurge", "25%");
  }
  SetIfAbsent(&spec, "revisionHistoryLimit", 10);
  SetIfAbsent(&spec, "progressDeadlineSeconds", 600);
  return DefaultPodTemplate(&spec);
}

// ---- Names (k8s.io/apimachinery/pkg/util/validation/validation.go) ----

const char kDns1035Message[] =
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation "
    "is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const char kDns1123LabelMessage[] =
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end "
    "with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const char kLabelValueMessage[] =
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
    "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const char kQualifiedNameMessage[] =
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

// Each pattern compiled once: compiling one per label of every write made the double's
// single lock the benchmark's bottleneck.
bool Matches(const std::string& text, const char* pattern) {
  static std::mutex mu;
  static std::map<std::string, std::regex> compiled;  // nodes never move: pointers stay valid
  const std::regex* re;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = compiled.find(pattern);
    if (it == compiled.end()) it = compiled.emplace(pattern, std::regex(pattern)).first;
    re = &it->second;
  }
  return std::regex_match(text, *re);
}

// IsQualifiedName: [prefix/]name, the prefix an RFC 1123 subdomain.
std::vector<std::string> QualifiedNameErrors(const std::string& key) {
  std::vector<std::string> out;
  std::string name = key;
  if (size_t slash = key.find('/'); slash != std::string::npos) {
    std::string prefix = key.substr(0, slash);
    name = key.substr(slash + 1);
    if (prefix.empty()) {
      out.push_back("prefix part must be non-empty");
    } else if (prefix.size() > 253 ||
               !Matches(prefix, "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")) {
      out.push_back(
          "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
          "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
          "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')");
    }
  }
  if (name.empty()) {
    out.push_back("name part must be non-empty");
  } else if (name.size() > 63) {
    out.push_back("name part must be no more than 63 characters");
  }
  if (!name.empty() && !Matches(name, "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")) out.push_back(kQualifiedNameMessage);
  return out;
}

// ValidateLabels (apimachinery/pkg/apis/meta/v1/validation/validation.go).
void LabelErrors(const json& labels, const std::string& path, std::vector<std::string>* out) {
  if (!labels.is_object()) return;
  for (auto it = labels.begin(); it != labels.end(); ++it) {
    for (const auto& message : QualifiedNameErrors(it.key())) {
      out->push_back(path + ": Invalid value: " + Quote(it.key()) + ": " + message);
    }
    if (!it->is_string()) continue;
    const std::string value = it->get<std::string>();
    if (value.size() > 63)
      out->push_back(path + ": Invalid value: " + Quote(value) + ": must be no more than 63 characters");
    if (!Matches(value, "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")) {
      out->push_back(path + ": Invalid value: " + Quote(value) + ": " + kLabelValueMessage);
    }
  }
}

const json& At(const json& object, const char* a, const char* b = nullptr) {
  static const json kNull;
  if (!object.is_object() || !object.contains(a)) return kNull;
  if (b == nullptr) return object[a];
  return object[a].is_object() && object[a].contains(b) ? object[a][b] : kNull;
}

}  // namespace

// SetDefaults_NetworkPolicyPort and SetDefaults_NetworkPolicy (pkg/apis/networking/v1/
// defaults.go): a port without a protocol is TCP; with no policyTypes, the policy is an
// Ingress policy, and an Egress one too when it has egress rules.
static void DefaultNetworkPolicy(json* object) {
  json* spec = Child(object, "spec");
  for (const char* direction : {"ingress", "egress"}) {
    if (!spec->contains(direction) || !(*spec)[direction].is_array()) continue;
    for (auto& rule : (*spec)[direction]) {
      if (!rule.is_object() || !rule.contains("ports") || !rule["ports"].is_array()) continue;
      for (auto& port : rule["ports"]) {
        if (port.is_object() && !port.contains("protocol")) port["protocol"] = "TCP";
      }
    }
  }
  if (!spec->contains("policyTypes") || (*spec)["policyTypes"].empty()) {
    json types = json::array({"Ingress"});
    if (spec->contains("egress") && (*spec)["egress"].is_array() && !(*spec)["egress"].empty()) types.push_back("Egress");
    (*spec)["policyTypes"] = types;
  }
}

std::optional<std::string> DefaultAndCanonicalise(const std::string& kind, json* object) {
  if (!object->is_object()) return std::nullopt;
  if (kind == "NetworkPolicy") DefaultNetworkPolicy(object);
  if (kind == "StatefulSet") return DefaultStatefulSet(object);
  if (kind == "Deployment") return DefaultDeployment(object);
  if (kind == "Pod") return DefaultPodSpec(Child(object, "spec"), true);
  if (kind == "PersistentVolumeClaim") return DefaultClaim(object);
  if (kind == "Service") DefaultService(object);
  if (kind == "StorageClass") {  // SetDefaults_StorageClass, pkg/apis/storage/v1/defaults.go
    SetIfAbsent(object, "reclaimPolicy", "Delete");
    SetIfAbsent(object, "volumeBindingMode", "Immediate");
  }
  return std::nullopt;
}

bool KeepsGeneration(const std::string& group, const std::string& kind, bool custom_resource) {
  if (custom_resource) return true;
  if (group == "apps")
    return kind == "StatefulSet" || kind == "Deployment" || kind == "DaemonSet" || kind == "ReplicaSet";
  return group == "apiextensions.k8s.io" && kind == "CustomResourceDefinition";
}

std::vector<std::string> ValidateNameAndLabels(const std::string& kind, const json& object) {
  std::vector<std::string> out;
  const json& name = At(object, "metadata", "name");
  if (name.is_string()) {
    const std::string n = name.get<std::string>();
    // ValidateServiceName (NameIsDNS1035Label) and ValidateNamespaceName (NameIsDNSLabel),
    // pkg/apis/core/validation/validation.go.
    const char* rule = kind == "Service" ? kDns1035Message : kind == "Namespace" ? kDns1123LabelMessage : nullptr;
    const char* pattern = kind == "Service" ? "[a-z]([-a-z0-9]*[a-z0-9])?" : "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
    if (rule != nullptr) {
      if (n.size() > 63)
        out.push_back("metadata.name: Invalid value: " + Quote(n) + ": must be no more than 63 characters");
      if (!Matches(n, pattern)) out.push_back("metadata.name: Invalid value: " + Quote(n) + ": " + rule);
    }
  }
  LabelErrors(At(object, "metadata", "labels"), "metadata.labels", &out);
  // ValidatePodTemplateSpec validates the template's ObjectMeta as well.
  const json& tmpl = At(object, "spec", "template");
  if (tmpl.is_object()) LabelErrors(At(tmpl, "metadata", "labels"), "spec.template.metadata.labels", &out);
  return out;
}

std::optional<int64_t> ClaimStorageRequest(const json& claim) {
  const json& spec = At(claim, "spec");
  const json q = spec.is_object() ? spec.value("/resources/requests/storage"_json_pointer, json()) : json();
  return q.is_string() ? QuantityValue(q.get<std::string>()) : std::nullopt;
}

std::vector<std::string> ValidateUpdate(const std::string& kind, const json& old, const json& updated) {
  std::vector<std::string> out;
  const json& old_spec = At(old, "spec");
  const json& new_spec = At(updated, "spec");
  if (kind == "StatefulSet") {
    // ValidateStatefulSetUpdate (pkg/apis/apps/validation/validation.go): the mutable
    // fields are copied from the old spec, and whatever still differs is forbidden.
    json clone = new_spec.is_object() ? new_spec : json::object();
    for (const char* field : {"replicas", "template", "updateStrategy", "minReadySeconds", "ordinals",
                              "persistentVolumeClaimRetentionPolicy"}) {
      if (old_spec.contains(field)) {
        clone[field] = old_spec[field];
      } else {
        clone.erase(field);
      }
    }
    if (clone != old_spec) {
      out.push_back(
          "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
          "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden");
    }
  } else if (kind == "PersistentVolumeClaim") {
    // ValidatePersistentVolumeClaimUpdate (pkg/apis/core/validation/validation.go): a bound
    // claim's storage request and its volumeAttributesClassName may change; volumeName
    // may be set once; nothing else.
    json before = old_spec.is_object() ? old_spec : json::object();
    json after = new_spec.is_object() ? new_spec : json::object();
    if (StringUnset(before, "volumeName")) {
      if (after.contains("volumeName")) {
        before["volumeName"] = after["volumeName"];
      } else {
        before.erase("volumeName");
      }
    }
    for (json* spec : {&before, &after}) spec->erase("volumeAttributesClassName");
    const bool bound = At(updated, "status", "phase") == "Bound";
    if (bound && after.contains("resources") && after["resources"].contains("requests")) {
      const json old_storage = before.value("/resources/requests/storage"_json_pointer, json());
      if (old_storage.is_null()) {
        after["resources"]["requests"].erase("storage");
      } else {
        after["resources"]["requests"]["storage"] = old_storage;
      }
    }
    if (before != after) {
      out.push_back(
          "spec: Forbidden: spec is immutable after creation except resources.requests and "
          "volumeAttributesClassName for bound claims");
    }
    auto old_size = ClaimStorageRequest(old), new_size = ClaimStorageRequest(updated);
    if (old_size && new_size && *new_size < *old_size) {
      out.push_back("spec.resources.requests.storage: Forbidden: field can not be less than previous value");
    }
  } else if (kind == "Service") {
    // validateUpgradeDowngradeClusterIPs (pkg/apis/core/validation/validation.go).
    const json old_ips = At(old_spec, "clusterIPs"), new_ips = At(new_spec, "clusterIPs");
    if (old_ips.is_array() && new_ips.is_array() && old_ips.size() == new_ips.size()) {
      std::string shown;
      for (const auto& ip : new_ips) shown += (shown.empty() ? "" : ", ") + ip.dump();
      for (size_t i = 0; i < old_ips.size(); ++i) {
        if (old_ips[i] != new_ips[i]) {
          out.push_back("spec.clusterIPs[" + std::to_string(i) + "]: Invalid value: []string{" + shown +
                        "}: may not change once set");
        }
      }
    } else if (old_ips.is_array() && !old_ips.empty() && new_ips.is_array() && !new_ips.empty() &&
               old_ips[0] != new_ips[0]) {
      out.push_back("spec.clusterIPs[0]: Invalid value: " + new_ips.dump() + ": may not change once set");
    }
  }
  return out;
}

void KeepAllocatedServiceFields(const json& old, json* updated) {
  const json& old_spec = At(old, "spec");
  if (!updated->contains("spec") || !(*updated)["spec"].is_object()) return;
  json& spec = (*updated)["spec"];
  if (StringUnset(spec, "clusterIP") && (!spec.contains("clusterIPs") || spec["clusterIPs"].empty())) {
    for (const char* field : {"clusterIP", "clusterIPs"}) {
      if (old_spec.contains(field)) spec[field] = old_spec[field];
    }
  }
  for (const char* field : {"ipFamilies", "ipFamilyPolicy"}) {
    if (!spec.contains(field) && old_spec.contains(field)) spec[field] = old_spec[field];
  }
}

void AllocateServiceIps(const std::function<std::string()>& allocate, json* service) {
  json& spec = (*service)["spec"];
  if (spec.value("type", "") == "ExternalName") return;
  // normalizeClusterIPs (storage.go): clusterIP and clusterIPs[0] name the same address.
  const bool has_ip = !StringUnset(spec, "clusterIP");
  const bool has_ips = spec.contains("clusterIPs") && spec["clusterIPs"].is_array() && !spec["clusterIPs"].empty();
  if (has_ip && !has_ips) spec["clusterIPs"] = json::array({spec["clusterIP"]});
  if (!has_ip && has_ips) spec["clusterIP"] = spec["clusterIPs"][0];
  if (!has_ip && !has_ips) {
    std::string ip = allocate();
    spec["clusterIP"] = ip;
    spec["clusterIPs"] = json::array({ip});
  }
  // alloc.go, initIPFamilyFields: a headless service without a selector asks for every
  // family the cluster has; every other one is single-stack.
  const bool headless = spec["clusterIP"] == "None";
  const bool selectorless = !spec.contains("selector") || !spec["selector"].is_object() || spec["selector"].empty();
  if (!spec.contains("ipFamilyPolicy"))
    spec["ipFamilyPolicy"] = headless && selectorless ? "RequireDualStack" : "SingleStack";
  if (!spec.contains("ipFamilies")) spec["ipFamilies"] = json::array({"IPv4"});
}

int64_t StatefulSetReplicas(const json& sts) {
  const json& replicas = At(sts, "spec", "replicas");
  return replicas.is_number_integer() ? replicas.get<int64_t>() : 1;
}

}  // namespace carapace::testing::kube_double
