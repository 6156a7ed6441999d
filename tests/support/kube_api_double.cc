// The Kubernetes API server double: one store of JSON objects with the API server's
// semantics (versions, generations, status, finalizers, GC, watches), served over HTTP.
#include "tests/support/kube_api_double.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <fstream>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "tests/support/kube_api_double_crd_validator.h"
#include "tests/support/kube_api_double_http.h"
#include "tests/support/kube_api_double_objects.h"
#include "tests/support/kube_api_double_rbac.h"
#include "tests/support/kube_api_double_semantics.h"

namespace carapace::testing {

namespace kd = kube_double;
using nlohmann::json;

namespace {

using ObjectPtr = std::shared_ptr<const json>;
using ObjectKey = std::pair<std::string, std::string>;  // namespace ("" when cluster-scoped), name

const std::vector<std::string> kAllVerbs = {"create", "delete", "deletecollection", "get",
                                            "list",   "patch",  "update",           "watch"};

// What discovery says about a resource, and how the store treats it.
struct ResourceType {
  std::string group, version, plural, singular, kind;
  bool namespaced = true;
  bool has_status = false;  // a status subresource: the main resource ignores .status
  std::vector<std::string> short_names, categories;
  json printer_columns = json::array();  // a CRD's additionalPrinterColumns
  json schema;                           // a CRD version's openAPIV3Schema (kubectl explain)
  std::string crd_name;                  // set for custom resources
  std::string schema_id;                 // names `schema` to the CRD validator

  std::string GroupVersion() const { return group.empty() ? version : group + "/" + version; }
  std::string StoreKey() const { return group + "/" + plural; }
  // "agentruns.carapace.dev", "configmaps": how the real server names a resource in errors.
  std::string Qualified() const { return group.empty() ? plural : plural + "." + group; }
  // "AgentRun.carapace.dev", "ConfigMap": how it names a kind in Invalid errors.
  std::string QualifiedKind() const { return group.empty() ? kind : kind + "." + group; }
  bool KeepsGeneration() const { return kube_double::KeepsGeneration(group, kind, !crd_name.empty()); }
};

// An API answer: the object (or list) or a Status, with its HTTP code.
struct Answer {
  int code = 200;
  json body;
  kd::HttpHeaders headers;
  bool ok() const { return code < 300; }
};

struct Entry {
  ObjectPtr object;
  std::string propagation;  // the policy of a delete waiting on finalizers
};

struct Change {
  int64_t rv;
  std::string type;  // ADDED, MODIFIED, DELETED
  std::string store_key;
  std::string ns;
  ObjectPtr object;
  ObjectPtr previous;  // before a MODIFIED, for selector transitions
};

struct Watcher {
  std::string store_key;
  std::string ns;  // "" for every namespace
  kd::LabelSelector labels;
  kd::FieldSelector fields;
  std::deque<std::pair<std::string, ObjectPtr>> queue;
  int64_t progress_rv = 0;  // every change up to here has been queued or skipped
  bool dropped = false;
  std::condition_variable cv;
};

struct Notification {
  std::string type, api_version, plural;
  ObjectPtr object;
};

struct Fault {
  int code;
  int remaining;
  std::string method, path_part;
};

std::string Rfc3339(std::chrono::system_clock::time_point t) {
  std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

std::string NowRfc3339() { return Rfc3339(std::chrono::system_clock::now()); }

std::optional<std::time_t> ParseRfc3339(const std::string& text) {
  std::tm tm{};
  if (strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm) == nullptr) return std::nullopt;
  return timegm(&tm);
}

// "5s", "3m", "2h", "4d" as kubectl shows ages.
std::string HumanAge(const std::string& timestamp) {
  auto then = ParseRfc3339(timestamp);
  if (!then) return "<unknown>";
  long secs = std::max<long>(0, static_cast<long>(std::time(nullptr) - *then));
  if (secs < 120) return std::to_string(secs) + "s";
  if (secs < 3600) return std::to_string(secs / 60) + "m";
  if (secs < 48 * 3600) return std::to_string(secs / 3600) + "h";
  return std::to_string(secs / 86400) + "d";
}

const char* ReasonForCode(int code) {
  switch (code) {
    case 400:
      return "BadRequest";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "NotFound";
    case 405:
      return "MethodNotAllowed";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 415:
      return "UnsupportedMediaType";
    case 422:
      return "Invalid";
    case 429:
      return "TooManyRequests";
    case 503:
      return "ServiceUnavailable";
    case 504:
      return "Timeout";
    default:
      return "InternalError";
  }
}

Answer Failure(int code, const std::string& reason, const std::string& message, const ResourceType* type = nullptr,
               const std::string& name = "") {
  json status = {{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", json::object()},
                 {"status", "Failure"}, {"message", message}, {"reason", reason},
                 {"code", code}};
  if (type != nullptr) {
    json details = {{"group", type->group}, {"kind", type->plural}};
    if (!name.empty()) details["name"] = name;
    status["details"] = details;
  }
  return {code, status, {}};
}

Answer NotFoundAnswer(const ResourceType& type, const std::string& name) {
  return Failure(404, "NotFound", type.Qualified() + " \"" + name + "\" not found", &type, name);
}

// A 422 as errors.NewInvalid makes it: the field errors joined in the message, and each as a
// cause (field, reason, body) in details, whose kind is the Kind: kubectl prints the causes.
Answer InvalidAnswer(const ResourceType& type, const std::string& name, const std::vector<std::string>& errors) {
  static const std::pair<const char*, const char*> kReasons[] = {
      {"Invalid value", "FieldValueInvalid"},       {"Forbidden", "FieldValueForbidden"},
      {"Required value", "FieldValueRequired"},     {"Unsupported value", "FieldValueNotSupported"},
      {"Duplicate value", "FieldValueDuplicate"},   {"Too long", "FieldValueTooLong"},
      {"Too many", "FieldValueTooMany"},            {"Not found", "FieldValueNotFound"}};
  json causes = json::array();
  std::string joined;
  for (const auto& e : errors) {
    joined += (joined.empty() ? "" : ", ") + e;
    size_t colon = e.find(": ");
    json cause = {{"message", colon == std::string::npos ? e : e.substr(colon + 2)}};
    if (colon != std::string::npos) {
      cause["field"] = e.substr(0, colon);
      for (const auto& [body, reason] : kReasons) {
        if (e.compare(colon + 2, std::strlen(body), body) == 0) cause["reason"] = reason;
      }
    }
    causes.push_back(cause);
  }
  if (errors.size() > 1) joined = "[" + joined + "]";
  Answer answer =
      Failure(422, "Invalid", type.QualifiedKind() + " \"" + name + "\" is invalid: " + joined, &type, name);
  answer.body["details"]["kind"] = type.kind;
  answer.body["details"]["causes"] = causes;
  return answer;
}

Answer InvalidAnswer(const ResourceType& type, const std::string& name, const std::string& what) {
  return InvalidAnswer(type, name, std::vector<std::string>{what});
}

Answer ConflictAnswer(const ResourceType& type, const std::string& name) {
  return Failure(409, "Conflict",
                 "Operation cannot be fulfilled on " + type.Qualified() + " \"" + name +
                     "\": the object has been modified; please apply your changes to the latest version and try again",
                 &type, name);
}

Answer NoRoute() { return Failure(404, "NotFound", "the server could not find the requested resource"); }

Status ToStatus(const Answer& answer) {
  std::string reason = answer.body.value("reason", "");
  std::string message = answer.body.value("message", "HTTP " + std::to_string(answer.code));
  if (reason == "NotFound") return NotFound(message);
  if (reason == "AlreadyExists") return AlreadyExists(message);
  if (reason == "Conflict") return FailedPrecondition("conflict: " + message);
  if (reason == "Invalid" || reason == "BadRequest") return InvalidArgument(message);
  if (reason == "Forbidden") return PermissionDenied(message);
  return Internal(message);
}

const json& Meta(const json& object) {
  static const json kEmpty = json::object();
  auto it = object.find("metadata");
  return it != object.end() && it->is_object() ? *it : kEmpty;
}

std::string MetaString(const json& object, const char* field) {
  const json& meta = Meta(object);
  auto it = meta.find(field);
  return it != meta.end() && it->is_string() ? it->get<std::string>() : "";
}

std::vector<std::string> Finalizers(const json& object) {
  std::vector<std::string> out;
  const json& meta = Meta(object);
  if (meta.contains("finalizers") && meta["finalizers"].is_array()) {
    for (const auto& f : meta["finalizers"]) {
      if (f.is_string()) out.push_back(f.get<std::string>());
    }
  }
  return out;
}

// Everything the user "specifies": the object without metadata and status.
json SpecPart(const json& object) {
  json copy = object;
  copy.erase("metadata");
  copy.erase("status");
  copy.erase("apiVersion");
  copy.erase("kind");
  return copy;
}

ResourceType Builtin(const std::string& group, const std::string& version, const std::string& plural,
                     const std::string& kind, bool namespaced, bool has_status,
                     std::vector<std::string> short_names = {}) {
  ResourceType t;
  t.group = group;
  t.version = version;
  t.plural = plural;
  t.kind = kind;
  t.singular = kind;
  std::transform(t.singular.begin(), t.singular.end(), t.singular.begin(), ::tolower);
  t.namespaced = namespaced;
  t.has_status = has_status;
  t.short_names = std::move(short_names);
  return t;
}

std::vector<ResourceType> BuiltinTypes() {
  return {
      Builtin("", "v1", "configmaps", "ConfigMap", true, false, {"cm"}),
      Builtin("", "v1", "secrets", "Secret", true, false),
      Builtin("", "v1", "services", "Service", true, true, {"svc"}),
      Builtin("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", true, true, {"pvc"}),
      Builtin("", "v1", "pods", "Pod", true, true, {"po"}),
      Builtin("", "v1", "events", "Event", true, false, {"ev"}),
      Builtin("", "v1", "namespaces", "Namespace", false, true, {"ns"}),
      Builtin("", "v1", "serviceaccounts", "ServiceAccount", true, false, {"sa"}),
      Builtin("apps", "v1", "statefulsets", "StatefulSet", true, true, {"sts"}),
      Builtin("apps", "v1", "deployments", "Deployment", true, true, {"deploy"}),  // the operator's own
      Builtin("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", true, false, {"netpol"}),
      Builtin("coordination.k8s.io", "v1", "leases", "Lease", true, false),
      Builtin("storage.k8s.io", "v1", "storageclasses", "StorageClass", false, false, {"sc"}),
      Builtin("events.k8s.io", "v1", "events", "Event", true, false, {"ev"}),
      Builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", false, true,
              {"crd", "crds"}),
      Builtin("rbac.authorization.k8s.io", "v1", "roles", "Role", true, false),
      Builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false, false),
      Builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true, false),
      Builtin("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false, false),
  };
}

bool IsCrdType(const ResourceType& t) {
  return t.group == "apiextensions.k8s.io" && t.plural == "customresourcedefinitions";
}
bool IsStatefulSetType(const ResourceType& t) { return t.group == "apps" && t.plural == "statefulsets"; }
bool IsNamespaceType(const ResourceType& t) { return t.group.empty() && t.plural == "namespaces"; }
bool IsSecretType(const ResourceType& t) { return t.group.empty() && t.plural == "secrets"; }
bool IsClaimType(const ResourceType& t) { return t.group.empty() && t.plural == "persistentvolumeclaims"; }
bool IsServiceType(const ResourceType& t) { return t.group.empty() && t.plural == "services"; }

std::string AnnotationOf(const json& object, const std::string& key) {
  const json& meta = Meta(object);
  auto annotations = meta.find("annotations");
  if (annotations == meta.end() || !annotations->is_object()) return "";
  auto it = annotations->find(key);
  return it != annotations->end() && it->is_string() ? it->get<std::string>() : "";
}

bool IsTrue(const std::string& value) { return value == "true" || value == "1"; }

// A list's continue token: where the next page starts, hex-encoded.
std::string EncodeContinue(const ObjectKey& last) {
  static const char kHex[] = "0123456789abcdef";
  std::string raw = last.first + '\n' + last.second, out;
  for (unsigned char c : raw) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

std::optional<ObjectKey> DecodeContinue(const std::string& token) {
  if (token.size() % 2 != 0) return std::nullopt;
  std::string raw;
  for (size_t i = 0; i < token.size(); i += 2) {
    auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
    int hi = hex(token[i]), lo = hex(token[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    raw.push_back(static_cast<char>(hi * 16 + lo));
  }
  size_t newline = raw.find('\n');
  if (newline == std::string::npos) return std::nullopt;
  return ObjectKey{raw.substr(0, newline), raw.substr(newline + 1)};
}

// The parts of a resource URL: /api/v1/namespaces/NS/PLURAL/NAME/SUB or /apis/G/V/...
struct ApiPath {
  std::string group, version, ns, plural, name, sub;
};

std::vector<std::string> Segments(const std::string& path) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < path.size()) {
    size_t slash = path.find('/', at);
    if (slash == std::string::npos) slash = path.size();
    if (slash > at) out.push_back(path.substr(at, slash - at));
    at = slash + 1;
  }
  return out;
}

}  // namespace

struct KubeApiDouble::Impl {
  explicit Impl(KubeApiDoubleOptions o) : options(std::move(o)), rng(std::random_device{}()) {
    for (auto& t : BuiltinTypes()) types[t.GroupVersion()][t.plural] = t;
    std::lock_guard<std::mutex> lock(mu);
    for (const char* ns : {"default", "kube-system", "kube-public", "kube-node-lease"}) {
      (void)CreateLocked(*FindTypeLocked("v1", "namespaces"), "", {{"metadata", {{"name", ns}}}});
    }
    notifications.clear();  // subscribers hear of changes made after construction only
    if (!options.crd_validator.empty()) validator = std::make_unique<kd::CrdValidator>(options.crd_validator);
    dispatcher = std::thread([this] { DispatchLoop(); });
    controllers = std::thread([this] { ControllerLoop(); });
  }

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(mu);
      controllers_stopping = true;
    }
    tasks_cv.notify_all();
    controllers.join();
    {
      std::lock_guard<std::mutex> lock(notify_mu);
      dispatcher_stopping = true;
    }
    notify_cv.notify_all();
    dispatcher.join();
  }

  // ---- Types ----

  const ResourceType* FindTypeLocked(const std::string& gv, const std::string& plural) const {
    auto g = types.find(gv);
    if (g == types.end()) return nullptr;
    auto t = g->second.find(plural);
    return t == g->second.end() ? nullptr : &t->second;
  }

  std::optional<ResourceType> FindType(const std::string& gv, const std::string& plural) const {
    std::lock_guard<std::mutex> lock(mu);
    const ResourceType* t = FindTypeLocked(gv, plural);
    return t ? std::optional<ResourceType>(*t) : std::nullopt;
  }

  void UnregisterCrdLocked(const std::string& crd_name) {
    for (auto g = types.begin(); g != types.end();) {
      for (auto t = g->second.begin(); t != g->second.end();) {
        t = t->second.crd_name == crd_name ? g->second.erase(t) : std::next(t);
      }
      g = g->second.empty() ? types.erase(g) : std::next(g);
    }
  }

  void RegisterCrdLocked(const json& crd) {
    std::string name = MetaString(crd, "name");
    UnregisterCrdLocked(name);
    const json spec = crd.value("spec", json::object());
    const json names = spec.value("names", json::object());
    for (const auto& v : spec.value("versions", json::array())) {
      if (!v.value("served", true)) continue;
      ResourceType t;
      t.group = spec.value("group", "");
      t.version = v.value("name", "");
      t.plural = names.value("plural", "");
      t.kind = names.value("kind", "");
      t.singular = names.value("singular", "");
      if (t.singular.empty()) {
        t.singular = t.kind;
        std::transform(t.singular.begin(), t.singular.end(), t.singular.begin(), ::tolower);
      }
      t.namespaced = spec.value("scope", "Namespaced") == "Namespaced";
      t.has_status =
          v.contains("subresources") && v["subresources"].is_object() && v["subresources"].contains("status");
      t.short_names = names.value("shortNames", std::vector<std::string>{});
      t.categories = names.value("categories", std::vector<std::string>{});
      t.printer_columns = v.value("additionalPrinterColumns", json::array());
      t.schema = v.value("/schema/openAPIV3Schema"_json_pointer, json());
      t.crd_name = name;
      t.schema_id = name + "/" + t.version + "/" + std::to_string(std::hash<std::string>{}(t.schema.dump()));
      if (t.version.empty() || t.plural.empty() || t.kind.empty()) continue;
      types[t.GroupVersion()][t.plural] = t;
    }
  }

  static json CrdStatus(const json& crd) {
    const json spec = crd.value("spec", json::object());
    json stored = json::array();
    for (const auto& v : spec.value("versions", json::array())) {
      if (v.value("storage", false)) stored.push_back(v.value("name", ""));
    }
    std::string now = NowRfc3339();
    auto condition = [&](const char* type, const char* reason, const char* message) {
      return json{
          {"type", type}, {"status", "True"}, {"lastTransitionTime", now}, {"reason", reason}, {"message", message}};
    };
    return {{"acceptedNames", spec.value("names", json::object())},
            {"conditions",
             {condition("NamesAccepted", "NoConflicts", "no conflicts found"),
              condition("Established", "InitialNamesAccepted", "the initial names have been accepted")}},
            {"storedVersions", stored}};
  }

  // ---- Store ----

  std::map<ObjectKey, Entry>& StoreOf(const ResourceType& t) { return stores[t.StoreKey()]; }

  const Entry* FindLocked(const ResourceType& t, const std::string& ns, const std::string& name) const {
    auto s = stores.find(t.StoreKey());
    if (s == stores.end()) return nullptr;
    auto e = s->second.find({t.namespaced ? ns : "", name});
    return e == s->second.end() ? nullptr : &e->second;
  }

  std::string NewUid() {
    std::uniform_int_distribution<uint64_t> dist;
    uint64_t a = dist(rng), b = dist(rng);
    char text[40];
    std::snprintf(text, sizeof text, "%08x-%04x-4%03x-%04x-%012llx", static_cast<unsigned>(a >> 32),
                  static_cast<unsigned>((a >> 16) & 0xffff), static_cast<unsigned>(a & 0xfff),
                  static_cast<unsigned>(0x8000 | ((b >> 48) & 0x3fff)),
                  static_cast<unsigned long long>(b & 0xffffffffffffULL));
    return text;
  }

  std::string GeneratedSuffix() {
    static const char kChars[] = "bcdfghjklmnpqrstvwxz2456789";
    std::uniform_int_distribution<size_t> dist(0, sizeof kChars - 2);
    std::string out;
    for (int i = 0; i < 5; ++i) out.push_back(kChars[dist(rng)]);
    return out;
  }

  void IndexOwnersLocked(const ResourceType& t, const json& object, bool add) {
    const json& meta = Meta(object);
    if (!meta.contains("ownerReferences") || !meta["ownerReferences"].is_array()) return;
    std::string dependent = t.StoreKey() + "\n" + MetaString(object, "namespace") + "\n" + MetaString(object, "name");
    for (const auto& ref : meta["ownerReferences"]) {
      std::string uid = ref.is_object() ? ref.value("uid", "") : "";
      if (uid.empty()) continue;
      if (add) {
        dependents[uid].insert(dependent);
      } else if (auto it = dependents.find(uid); it != dependents.end()) {
        it->second.erase(dependent);
        if (it->second.empty()) dependents.erase(it);
      }
    }
  }

  // Stores `object` at a new resourceVersion and tells watchers and subscribers.
  ObjectPtr CommitLocked(const ResourceType& t, json object, const std::string& event_type, ObjectPtr previous) {
    object["metadata"]["resourceVersion"] = std::to_string(++rv);
    auto ptr = std::make_shared<const json>(std::move(object));
    ObjectKey key{t.namespaced ? MetaString(*ptr, "namespace") : "", MetaString(*ptr, "name")};
    auto& store = StoreOf(t);
    if (previous) IndexOwnersLocked(t, *previous, false);
    if (event_type == "DELETED") {
      store.erase(key);
      live_uids.erase(MetaString(*ptr, "uid"));
    } else {
      live_uids.insert(MetaString(*ptr, "uid"));
      Entry& entry = store[key];
      entry.object = ptr;
      IndexOwnersLocked(t, *ptr, true);
    }
    RecordLocked(t, {rv, event_type, t.StoreKey(), key.first, ptr, previous});
    return ptr;
  }

  void RecordLocked(const ResourceType& t, Change change) {
    for (auto& w : watchers) {
      w->progress_rv = change.rv;
      if (w->store_key != change.store_key || (!w->ns.empty() && w->ns != change.ns)) continue;
      if (auto type = EventTypeFor(*w, change)) {
        w->queue.emplace_back(*type, change.object);
        w->cv.notify_all();
      }
    }
    {
      std::lock_guard<std::mutex> lock(notify_mu);
      notifications.push_back({change.type, t.GroupVersion(), t.plural, change.object});
    }
    notify_cv.notify_all();
    history.push_back(std::move(change));
    while (static_cast<int64_t>(history.size()) > std::max<int64_t>(options.watch_history, 0)) {
      history_floor = history.front().rv;
      history.pop_front();
    }
  }

  // The event a watcher sees for a change: selector transitions turn a MODIFIED into an
  // ADDED or DELETED, as the real server's watch cache does.
  static std::optional<std::string> EventTypeFor(const Watcher& w, const Change& c) {
    auto matches = [&](const json& o) { return w.labels.Matches(o) && w.fields.Matches(o); };
    bool now = matches(*c.object);
    if (c.type != "MODIFIED" || !c.previous) return now ? std::optional<std::string>(c.type) : std::nullopt;
    bool before = matches(*c.previous);
    if (now && before) return "MODIFIED";
    if (now) return "ADDED";
    if (before) return "DELETED";
    return std::nullopt;
  }

  // ---- Create ----

  // Fills what the server owns and checks what it validates, for a create.
  Answer PrepareNewLocked(const ResourceType& t, const std::string& ns, json* object_in) {
    json& object = *object_in;
    if (!object.is_object()) return Failure(400, "BadRequest", "the body of the request was not a JSON object");
    if (object.contains("kind") && object["kind"] != t.kind) {
      return Failure(
          400, "BadRequest",
          "the kind of the object (" + object["kind"].dump() + ") does not match the resource (" + t.kind + ")");
    }
    object["apiVersion"] = t.GroupVersion();
    object["kind"] = t.kind;
    if (!object.contains("metadata") || !object["metadata"].is_object()) object["metadata"] = json::object();
    json& meta = object["metadata"];
    if (t.namespaced) {
      std::string body_ns = MetaString(object, "namespace");
      if (!body_ns.empty() && body_ns != ns) {
        return Failure(400, "BadRequest",
                       "the namespace of the provided object does not match the namespace sent on the request");
      }
      meta["namespace"] = ns;
    } else {
      meta.erase("namespace");
    }
    std::string name = MetaString(object, "name");
    if (name.empty() && !MetaString(object, "generateName").empty()) {
      do {
        name = MetaString(object, "generateName") + GeneratedSuffix();
      } while (FindLocked(t, ns, name));
      meta["name"] = name;
    }
    if (name.empty()) return InvalidAnswer(t, "", "metadata.name: Required value: name or generateName is required");
    if (!kd::IsDns1123Subdomain(name)) {
      return InvalidAnswer(t, name,
                           "metadata.name: Invalid value: \"" + name +
                               "\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                               "characters, '-' or '.', and must start and end with an alphanumeric character");
    }
    meta["uid"] = NewUid();
    meta["creationTimestamp"] = NowRfc3339();
    if (t.KeepsGeneration()) {
      meta["generation"] = 1;
    } else {
      meta.erase("generation");
    }
    meta.erase("deletionTimestamp");
    meta.erase("deletionGracePeriodSeconds");
    meta.erase("managedFields");
    meta.erase("resourceVersion");
    return {201, json(), {}};
  }

  Answer CreateLocked(const ResourceType& t, const std::string& ns, json object, bool keep_status = false,
                      const std::string& field_validation = "") {
    Answer prepared = PrepareNewLocked(t, ns, &object);
    if (!prepared.ok()) return prepared;
    std::string name = MetaString(object, "name");
    if (FindLocked(t, ns, name)) {
      return Failure(409, "AlreadyExists", t.Qualified() + " \"" + name + "\" already exists", &t, name);
    }
    if (t.has_status && !keep_status) object.erase("status");
    if (IsSecretType(t)) FoldStringData(&object);
    if (IsNamespaceType(t)) object["status"] = {{"phase", "Active"}};
    if (IsStatefulSetType(t) && !keep_status) object["status"] = {{"replicas", 0}, {"availableReplicas", 0}};
    Answer admitted = AdmitLocked(t, nullptr, &object, field_validation);
    if (!admitted.ok()) return admitted;
    if (IsCrdType(t)) {
      const json spec = object.value("spec", json::object());
      std::string expected = spec.value("names", json::object()).value("plural", "") + "." + spec.value("group", "");
      if (name != expected) {
        return InvalidAnswer(
            t, name, "metadata.name: Invalid value: \"" + name + "\": must be spec.names.plural+\".\"+spec.group");
      }
      object["status"] = CrdStatus(object);
      RegisterCrdLocked(object);
    }
    ObjectPtr stored = CommitLocked(t, std::move(object), "ADDED", nullptr);
    if (IsStatefulSetType(t)) CreateClaimsLocked(*stored);
    return {201, *stored, admitted.headers};
  }

  // Secrets take stringData as plain text and keep it base64-encoded in data.
  static void FoldStringData(json* secret) {
    auto it = secret->find("stringData");
    if (it == secret->end()) return;
    if (it->is_object()) {
      for (auto kv = it->begin(); kv != it->end(); ++kv) {
        if (kv.value().is_string()) (*secret)["data"][kv.key()] = kd::Base64Encode(kv.value().get<std::string>());
      }
    }
    secret->erase("stringData");
  }

  // ---- Update ----

  Answer UpdateLocked(const ResourceType& t, const std::string& ns, const std::string& name, json object,
                      bool status_only, const std::string& field_validation = "") {
    if (!object.is_object()) return Failure(400, "BadRequest", "the body of the request was not a JSON object");
    std::string body_name = MetaString(object, "name");
    if (!body_name.empty() && body_name != name) {
      return Failure(400, "BadRequest",
                     "the name of the object (" + body_name + ") does not match the name on the URL (" + name + ")");
    }
    std::string body_ns = MetaString(object, "namespace");
    if (t.namespaced && !body_ns.empty() && body_ns != ns) {
      return Failure(400, "BadRequest",
                     "the namespace of the provided object does not match the namespace sent on the request");
    }
    const Entry* entry = FindLocked(t, ns, name);
    if (!entry) return NotFoundAnswer(t, name);
    ObjectPtr old = entry->object;
    std::string body_rv = MetaString(object, "resourceVersion");
    // Custom resources allow no unconditional update: a PUT must say which version it changes.
    if (body_rv.empty() && !t.crd_name.empty()) {
      return Failure(422, "Invalid", t.crd_name + " \"" + name +
                                         "\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be "
                                         "specified for an update");
    }
    if (!body_rv.empty() && body_rv != MetaString(*old, "resourceVersion")) return ConflictAnswer(t, name);

    json updated = status_only ? *old : std::move(object);
    if (status_only) {
      if (object.contains("status")) {
        updated["status"] = object["status"];
      } else {
        updated.erase("status");
      }
    } else {
      KeepServerFields(t, *old, &updated);
    }
    if (old->contains("metadata") && (*old)["metadata"].contains("deletionTimestamp")) {
      std::vector<std::string> before = Finalizers(*old), after = Finalizers(updated);
      std::vector<std::string> added;
      for (const auto& f : after) {
        if (std::find(before.begin(), before.end(), f) == before.end()) added.push_back("\"" + f + "\"");
      }
      if (!added.empty()) {
        std::string list;
        for (const auto& f : added) list += (list.empty() ? "" : ", ") + f;
        return InvalidAnswer(t, name,
                             "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being "
                             "deleted, found new finalizers []string{" +
                                 list + "}");
      }
    }
    if (IsSecretType(t)) FoldStringData(&updated);
    Answer admitted;
    if (!status_only) {
      admitted = AdmitLocked(t, old.get(), &updated, field_validation);
      if (!admitted.ok()) return admitted;
    }
    if (!status_only && t.KeepsGeneration() && SpecPart(updated) != SpecPart(*old)) {
      updated["metadata"]["generation"] = Meta(*old).value("generation", 1) + 1;
    }
    json unchanged_check = updated;
    unchanged_check["metadata"]["resourceVersion"] = MetaString(*old, "resourceVersion");
    if (unchanged_check == *old) return {200, *old, admitted.headers};  // a no-op write changes nothing, as in the real server
    if (Meta(updated).contains("deletionTimestamp") && Finalizers(updated).empty()) {
      // The real server does not write this update: it deletes the object instead.
      const std::string propagation = entry->propagation;  // a copy: the removal erases the entry
      return {200, *RemoveLocked(t, std::move(updated), propagation, old), {}};
    }
    if (IsCrdType(t)) {
      updated["status"] = CrdStatus(updated);
      RegisterCrdLocked(updated);
    }
    ObjectPtr stored = CommitLocked(t, std::move(updated), "MODIFIED", old);
    if (IsStatefulSetType(t) && !status_only) {
      CreateClaimsLocked(*stored);
      DeleteScaledDownClaimsLocked(*old, *stored);
    }
    if (IsClaimType(t) && !status_only) ExpandClaimLocked(*old, *stored);
    return {200, *stored, admitted.headers};
  }

  // A write through the main resource cannot change what the server owns.
  static void KeepServerFields(const ResourceType& t, const json& old, json* updated) {
    (*updated)["apiVersion"] = old["apiVersion"];
    (*updated)["kind"] = old["kind"];
    if (!updated->contains("metadata") || !(*updated)["metadata"].is_object()) (*updated)["metadata"] = json::object();
    json& meta = (*updated)["metadata"];
    const json& old_meta = Meta(old);
    for (const char* field : {"name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp",
                              "deletionGracePeriodSeconds", "resourceVersion"}) {
      if (old_meta.contains(field)) {
        meta[field] = old_meta[field];
      } else {
        meta.erase(field);
      }
    }
    meta.erase("managedFields");
    if (t.has_status) {
      if (old.contains("status")) {
        (*updated)["status"] = old["status"];
      } else {
        updated->erase("status");
      }
    }
  }

  Answer PatchLocked(const ResourceType& t, const std::string& ns, const std::string& name, const std::string& body,
                     const std::string& content_type, bool status_only, const std::string& field_validation = "") {
    const Entry* entry = FindLocked(t, ns, name);
    if (!entry) return NotFoundAnswer(t, name);
    std::string media = content_type.substr(0, content_type.find(';'));
    if (media != "application/merge-patch+json" && media != "application/json-patch+json" &&
        media != "application/strategic-merge-patch+json") {
      return Failure(
          415, "UnsupportedMediaType",
          "the body of the request was in an unknown format - accepted media types include: "
          "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json");
    }
    json patch = json::parse(body, nullptr, false);
    if (patch.is_discarded()) return Failure(400, "BadRequest", "error decoding patch: invalid JSON");
    json patched;
    try {
      if (media == "application/json-patch+json") {
        if (!patch.is_array())
          return Failure(400, "BadRequest", "json: cannot unmarshal object into Go value of type jsonpatch.Patch");
        patched = entry->object->patch(patch);
      } else if (media == "application/merge-patch+json") {
        patched = *entry->object;
        patched.merge_patch(patch);
      } else {
        patched = kd::StrategicMergePatch(*entry->object, patch);
      }
    } catch (const json::exception& e) {
      return Failure(422, "Invalid",
                     std::string("the server rejected our request due to an error in our request: ") + e.what(), &t,
                     name);
    }
    if (!patched.is_object()) return InvalidAnswer(t, name, "the patch made the object something other than an object");
    return UpdateLocked(t, ns, name, std::move(patched), status_only, field_validation);
  }

  // ---- Delete, finalizers, garbage collection ----

  Answer DeleteLocked(const ResourceType& t, const std::string& ns, const std::string& name,
                      const std::string& propagation, const json& preconditions = json::object()) {
    const Entry* entry = FindLocked(t, ns, name);
    if (!entry) return NotFoundAnswer(t, name);
    ObjectPtr old = entry->object;
    if (preconditions.is_object()) {
      std::string uid = preconditions.value("uid", ""), version = preconditions.value("resourceVersion", "");
      if ((!uid.empty() && uid != MetaString(*old, "uid")) ||
          (!version.empty() && version != MetaString(*old, "resourceVersion"))) {
        return ConflictAnswer(t, name);
      }
    }
    if (Meta(*old).contains("deletionTimestamp")) return {200, *old, {}};
    const std::string uid = MetaString(*old, "uid");
    if (propagation == "Foreground" && dependents.count(uid)) {
      // The server marks the owner with the foregroundDeletion finalizer; the garbage
      // collector deletes the dependents, then the finalizer (garbagecollector.go).
      json marked = *old;
      marked["metadata"]["finalizers"].push_back("foregroundDeletion");
      marked["metadata"]["deletionTimestamp"] = NowRfc3339();
      marked["metadata"]["deletionGracePeriodSeconds"] = 0;
      ObjectPtr stored = CommitLocked(t, std::move(marked), "MODIFIED", old);
      StoreOf(t)[{t.namespaced ? ns : "", name}].propagation = propagation;
      ScheduleLocked([this, t, ns, name, uid] { FinishForegroundLocked(t, ns, name, uid); });
      return {200, *stored, {}};
    }
    if (!Finalizers(*old).empty()) {
      json marked = *old;
      marked["metadata"]["deletionTimestamp"] = NowRfc3339();
      marked["metadata"]["deletionGracePeriodSeconds"] = 0;
      ObjectPtr stored = CommitLocked(t, std::move(marked), "MODIFIED", old);
      StoreOf(t)[{t.namespaced ? ns : "", name}].propagation = propagation;
      return {200, *stored, {}};
    }
    return {200, *RemoveLocked(t, *old, propagation, old), {}};
  }

  // Removes the object for good, then what hangs on it: dependents (or their owner
  // references, for Orphan), retained claims, a CRD's objects, a namespace's contents.
  ObjectPtr RemoveLocked(const ResourceType& t, json object, const std::string& propagation,
                         ObjectPtr stored = nullptr) {
    ObjectPtr previous = stored ? stored : std::make_shared<const json>(object);
    ObjectPtr gone = CommitLocked(t, std::move(object), "DELETED", previous);
    const json& removed = *gone;
    std::string uid = MetaString(removed, "uid");
    bool orphan = propagation == "Orphan";
    if (orphan) {
      if (auto it = dependents.find(uid); it != dependents.end()) {
        std::set<std::string> refs = it->second;
        for (const auto& ref : refs) CollectDependentLocked(ref, uid, true);
      }
    } else {
      // The garbage collector notices the owner is gone a little later and deletes its
      // dependents then (pkg/controller/garbagecollector); the delete has already returned.
      if (dependents.count(uid)) ScheduleLocked([this, uid] { CollectDependentsLocked(uid); });
      if (IsStatefulSetType(t)) ScheduleLocked([this, sts = removed] { DeleteRetainedClaimsLocked(sts); });
    }
    if (IsCrdType(t)) RemoveCustomResourcesLocked(MetaString(removed, "name"));
    if (IsNamespaceType(t)) RemoveNamespaceContentsLocked(MetaString(removed, "name"));
    return gone;
  }

  std::optional<ResourceType> TypeByStoreKeyLocked(const std::string& store_key) const {
    for (const auto& [gv, plurals] : types) {
      for (const auto& [plural, t] : plurals) {
        if (t.StoreKey() == store_key) return t;
      }
    }
    return std::nullopt;
  }

  void CollectDependentLocked(const std::string& ref, const std::string& owner_uid, bool orphan) {
    size_t first = ref.find('\n'), second = ref.find('\n', first + 1);
    auto t = TypeByStoreKeyLocked(ref.substr(0, first));
    if (!t) return;
    std::string ns = ref.substr(first + 1, second - first - 1), name = ref.substr(second + 1);
    const Entry* entry = FindLocked(*t, ns, name);
    if (!entry) return;
    bool other_owner = false;  // a dependent with another live owner only loses the dangling reference
    for (const auto& r : Meta(*entry->object).value("ownerReferences", json::array())) {
      std::string other = r.is_object() ? r.value("uid", "") : "";
      other_owner = other_owner || (other != owner_uid && live_uids.count(other));
    }
    if (!orphan && !other_owner) {
      (void)DeleteLocked(*t, ns, name, "Background");
      return;
    }
    json updated = *entry->object;
    json kept = json::array();
    for (const auto& r : updated["metadata"]["ownerReferences"]) {
      if (r.value("uid", "") != owner_uid) kept.push_back(r);
    }
    if (kept.empty()) {
      updated["metadata"].erase("ownerReferences");
    } else {
      updated["metadata"]["ownerReferences"] = kept;
    }
    CommitLocked(*t, std::move(updated), "MODIFIED", entry->object);
  }

  void RemoveCustomResourcesLocked(const std::string& crd_name) {
    std::optional<ResourceType> custom;
    for (const auto& [gv, plurals] : types) {
      for (const auto& [plural, t] : plurals) {
        if (t.crd_name == crd_name) custom = t;
      }
    }
    if (!custom) return;
    UnregisterCrdLocked(crd_name);
    auto& store = StoreOf(*custom);
    while (!store.empty()) RemoveLocked(*custom, *store.begin()->second.object, "Background");
  }

  void RemoveNamespaceContentsLocked(const std::string& ns) {
    std::vector<ResourceType> namespaced;
    for (const auto& [gv, plurals] : types) {
      for (const auto& [plural, t] : plurals) {
        if (t.namespaced) namespaced.push_back(t);
      }
    }
    for (const auto& t : namespaced) {
      auto& store = StoreOf(t);
      for (auto it = store.lower_bound({ns, ""}); it != store.end() && it->first.first == ns;
           it = store.lower_bound({ns, ""})) {
        RemoveLocked(t, *it->second.object, "Background");
      }
    }
  }

  // ---- The StatefulSet controller's claims ----

  static std::string WhenDeleted(const json& sts) {
    const json spec = sts.value("spec", json::object());
    return spec.value("persistentVolumeClaimRetentionPolicy", json::object()).value("whenDeleted", "Retain");
  }

  void CreateClaimsLocked(const json& sts) {
    const json spec = sts.value("spec", json::object());
    int64_t replicas =
        spec.contains("replicas") && spec["replicas"].is_number_integer() ? spec["replicas"].get<int64_t>() : 1;
    std::string sts_name = MetaString(sts, "name"), ns = MetaString(sts, "namespace");
    const ResourceType* claims = FindTypeLocked("v1", "persistentvolumeclaims");
    for (const auto& tmpl : spec.value("volumeClaimTemplates", json::array())) {
      std::string tmpl_name = MetaString(tmpl, "name");
      if (tmpl_name.empty()) continue;
      for (int64_t i = 0; i < replicas; ++i) {
        std::string claim_name = tmpl_name + "-" + sts_name + "-" + std::to_string(i);
        if (FindLocked(*claims, ns, claim_name)) continue;
        (void)CreateLocked(ResourceType(*claims), ns, ClaimFor(sts, tmpl, claim_name), true);
      }
    }
  }

  static json ClaimFor(const json& sts, const json& tmpl, const std::string& claim_name) {
    json labels = Meta(tmpl).value("labels", json::object());
    json selector =
        sts.value("spec", json::object()).value("selector", json::object()).value("matchLabels", json::object());
    if (selector.is_object()) labels.update(selector);
    json claim_spec = tmpl.value("spec", json::object());
    if (!claim_spec.contains("volumeMode")) claim_spec["volumeMode"] = "Filesystem";
    json capacity = claim_spec.value("resources", json::object()).value("requests", json::object());
    json claim = {{"metadata", {{"name", claim_name}, {"labels", labels}}},
                  {"spec", claim_spec},
                  {"status",
                   {{"phase", "Bound"},
                    {"accessModes", claim_spec.value("accessModes", json::array())},
                    {"capacity", capacity}}}};
    if (WhenDeleted(sts) == "Delete") {
      claim["metadata"]["ownerReferences"] = json::array({{{"apiVersion", "apps/v1"},
                                                           {"kind", "StatefulSet"},
                                                           {"name", MetaString(sts, "name")},
                                                           {"uid", MetaString(sts, "uid")},
                                                           {"controller", true},
                                                           {"blockOwnerDeletion", true}}});
    }
    return claim;
  }

  // persistentVolumeClaimRetentionPolicy.whenScaled: Delete: the StatefulSet controller
  // deletes the claims of the ordinals a scale-down removed (pkg/controller/statefulset/
  // stateful_set_utils.go), once their pods are gone: a little later.
  void DeleteScaledDownClaimsLocked(const json& old, const json& sts) {
    const int64_t before = kd::StatefulSetReplicas(old), after = kd::StatefulSetReplicas(sts);
    const json policy = sts.value("/spec/persistentVolumeClaimRetentionPolicy/whenScaled"_json_pointer, json());
    if (after >= before || policy != "Delete") return;
    ScheduleLocked([this, sts, before] {
      const std::string sts_name = MetaString(sts, "name"), ns = MetaString(sts, "namespace");
      const Entry* current = FindLocked(*FindTypeLocked("apps/v1", "statefulsets"), ns, sts_name);
      if (!current || MetaString(*current->object, "uid") != MetaString(sts, "uid")) return;
      const int64_t replicas = kd::StatefulSetReplicas(*current->object);  // it may have grown again
      ResourceType claims = *FindTypeLocked("v1", "persistentvolumeclaims");
      for (const auto& tmpl : sts.value("spec", json::object()).value("volumeClaimTemplates", json::array())) {
        for (int64_t i = replicas; i < before; ++i) {
          (void)DeleteLocked(claims, ns, MetaString(tmpl, "name") + "-" + sts_name + "-" + std::to_string(i),
                             "Background");
        }
      }
    });
  }

  void DeleteRetainedClaimsLocked(const json& sts) {
    if (WhenDeleted(sts) != "Delete") return;
    std::string sts_name = MetaString(sts, "name"), ns = MetaString(sts, "namespace");
    ResourceType claims = *FindTypeLocked("v1", "persistentvolumeclaims");
    for (const auto& tmpl : sts.value("spec", json::object()).value("volumeClaimTemplates", json::array())) {
      std::string prefix = MetaString(tmpl, "name") + "-" + sts_name + "-";
      std::vector<std::string> names;
      auto& store = StoreOf(claims);
      for (auto it = store.lower_bound({ns, prefix});
           it != store.end() && it->first.first == ns && it->first.second.rfind(prefix, 0) == 0; ++it) {
        std::string ordinal = it->first.second.substr(prefix.size());
        if (!ordinal.empty() && std::all_of(ordinal.begin(), ordinal.end(), ::isdigit))
          names.push_back(it->first.second);
      }
      for (const auto& name : names) (void)DeleteLocked(claims, ns, name, "Background");
    }
  }

  // ---- Admission: what the server does between decoding a write and storing it ----

  // Defaults and canonical quantities, admission plugins, name/label and update validation
  // (kube_api_double_semantics.h), and a custom resource's CRD schema. `old` is null on
  // create. On success the answer's headers carry the warnings a real server sends.
  Answer AdmitLocked(const ResourceType& t, const json* old, json* object, const std::string& field_validation) {
    const std::string name = MetaString(*object, "name");
    if (auto decode_error = t.crd_name.empty() ? kd::DefaultAndCanonicalise(t.kind, object) : std::nullopt) {
      return Failure(400, "BadRequest",
                     t.kind + " in version \"" + t.version + "\" cannot be handled as a " + t.kind + ": " + *decode_error);
    }
    if (IsStatefulSetType(t) && !options.statefulset_auto_delete_pvc && (*object).contains("spec") &&
        (*object)["spec"].is_object()) {
      (*object)["spec"].erase("persistentVolumeClaimRetentionPolicy");  // a disabled feature's field
    }
    if (IsServiceType(t)) {
      if (old) kd::KeepAllocatedServiceFields(*old, object);
      kd::AllocateServiceIps([this] { return NextServiceIpLocked(); }, object);
    }
    if (IsClaimType(t) && !old) DefaultStorageClassLocked(object);
    std::vector<std::string> errors = kd::ValidateNameAndLabels(t.crd_name.empty() ? t.kind : "", *object);
    if (old && t.crd_name.empty()) {
      for (auto& e : kd::ValidateUpdate(t.kind, *old, *object)) errors.push_back(std::move(e));
    }
    Answer admitted{200, json(), {}};
    if (!t.crd_name.empty()) {
      admitted = ValidateCustomLocked(t, old, object, field_validation, &errors);
      if (!admitted.ok()) return admitted;
    }
    if (!errors.empty()) return InvalidAnswer(t, name, errors);
    if (IsClaimType(t) && old) return ResizeAdmissionLocked(t, *old, *object);
    return admitted;
  }

  // A custom resource through its CRD's structural schema: undeclared fields pruned (with a
  // warning; refused under fieldValidation=Strict), defaults, then the schema and the
  // x-kubernetes-validations rules. Validation ratchets: an update that leaves everything but
  // metadata and status as it was is not validated again.
  Answer ValidateCustomLocked(const ResourceType& t, const json* old, json* object, const std::string& field_validation,
                              std::vector<std::string>* errors) {
    if (!validator || !t.schema.is_object() || (old && SpecPart(*old) == SpecPart(*object))) return {200, json(), {}};
    auto verdict = validator->Validate(t.schema_id, t.schema, *object, old ? *old : json());
    if (!verdict.ok()) return Failure(500, "InternalError", verdict.status().message());
    Answer admitted{200, json(), {}};
    if (!verdict->unknown.empty() && field_validation == "Strict") {
      std::string list;
      for (const auto& path : verdict->unknown) list += (list.empty() ? "" : ", ") + ("unknown field \"" + path + "\"");
      return Failure(400, "BadRequest",
                     t.kind + " in version \"" + t.version + "\" cannot be handled as a " + t.kind +
                         ": strict decoding error: " + list);
    }
    if (field_validation != "Ignore") {
      for (const auto& path : verdict->unknown) {
        admitted.headers.push_back({"Warning", "299 - " + json("unknown field \"" + path + "\"").dump()});
      }
    }
    for (auto& e : verdict->errors) errors->push_back(std::move(e));
    json stored = std::move(verdict->object);
    if (object->contains("status")) stored["status"] = (*object)["status"];
    *object = std::move(stored);
    return admitted;
  }

  std::string NextServiceIpLocked() {
    int64_t n = ++service_ips;  // from 10.96.0.10: .1 is the kubernetes Service's
    return "10.96." + std::to_string((n / 256) % 256) + "." + std::to_string(n % 256);
  }

  // DefaultStorageClass admission (plugin/pkg/admission/storage/storageclass/setdefault/
  // admission.go): a claim that names no class gets the default one, the newest if several
  // (pkg/volume/util/storageclass.go, GetDefaultClass).
  void DefaultStorageClassLocked(json* claim) {
    if (!claim->contains("spec") || !(*claim)["spec"].is_object()) return;
    json& spec = (*claim)["spec"];
    if (spec.contains("storageClassName") && !spec["storageClassName"].is_null()) return;
    if (!AnnotationOf(*claim, "volume.beta.kubernetes.io/storage-class").empty()) return;
    const json* chosen = nullptr;
    for (const auto& [key, entry] : StoreOf(*FindTypeLocked("storage.k8s.io/v1", "storageclasses"))) {
      const json& sc = *entry.object;
      if (AnnotationOf(sc, "storageclass.kubernetes.io/is-default-class") != "true" &&
          AnnotationOf(sc, "storageclass.beta.kubernetes.io/is-default-class") != "true") {
        continue;
      }
      auto newer = [](const json& a, const json& b) {
        std::string ta = MetaString(a, "creationTimestamp"), tb = MetaString(b, "creationTimestamp");
        return ta != tb ? ta > tb : MetaString(a, "name") < MetaString(b, "name");
      };
      if (chosen == nullptr || newer(sc, *chosen)) chosen = &sc;
    }
    if (chosen != nullptr) spec["storageClassName"] = MetaString(*chosen, "name");
  }

  // PersistentVolumeClaimResize admission (plugin/pkg/admission/storage/persistentvolume/
  // resize/admission.go): a claim grows only when bound and its class allows expansion.
  Answer ResizeAdmissionLocked(const ResourceType& t, const json& old, const json& claim) {
    auto before = kd::ClaimStorageRequest(old), after = kd::ClaimStorageRequest(claim);
    if (!after || *after <= before.value_or(0)) return {200, json(), {}};
    const std::string name = MetaString(claim, "name");
    auto forbidden = [&](const std::string& why) {
      return Failure(403, "Forbidden", t.Qualified() + " \"" + name + "\" is forbidden: " + why, &t, name);
    };
    if (old.value("/status/phase"_json_pointer, json()) != "Bound") {
      return forbidden("Only bound persistent volume claims can be expanded");
    }
    json class_name = old.value("/spec/storageClassName"_json_pointer, json());
    std::string cls = class_name.is_string() ? class_name.get<std::string>()
                                             : AnnotationOf(old, "volume.beta.kubernetes.io/storage-class");
    const Entry* sc = cls.empty() ? nullptr : FindLocked(*FindTypeLocked("storage.k8s.io/v1", "storageclasses"), "", cls);
    if (sc == nullptr || sc->object->value("allowVolumeExpansion", false) != true) {
      return forbidden(
          "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must "
          "support resize");
    }
    return {200, json(), {}};
  }

  // The volume expansion a real cluster's resizer and kubelet carry out after an admitted
  // resize: a little later, status.capacity reports the new size.
  void ExpandClaimLocked(const json& old, const json& claim) {
    auto before = kd::ClaimStorageRequest(old), after = kd::ClaimStorageRequest(claim);
    if (!after || *after <= before.value_or(0)) return;
    std::string ns = MetaString(claim, "namespace"), name = MetaString(claim, "name"), uid = MetaString(claim, "uid");
    ScheduleLocked([this, ns, name, uid] {
      ResourceType claims = *FindTypeLocked("v1", "persistentvolumeclaims");
      const Entry* entry = FindLocked(claims, ns, name);
      if (!entry || MetaString(*entry->object, "uid") != uid) return;
      json resized = *entry->object;
      json request = resized.value("/spec/resources/requests/storage"_json_pointer, json());
      if (request.is_null() || resized.value("/status/capacity/storage"_json_pointer, json()) == request) return;
      resized["status"]["capacity"]["storage"] = request;
      CommitLocked(claims, std::move(resized), "MODIFIED", entry->object);
    });
  }

  // ---- The controllers the double plays, acting a little after what wakes them ----

  void ScheduleLocked(std::function<void()> task) {
    tasks.emplace(std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max(options.controller_delay_ms, 0)),
                  std::move(task));
    tasks_cv.notify_all();
  }

  void ControllerLoop() {
    std::unique_lock<std::mutex> lock(mu);
    while (!controllers_stopping) {
      if (tasks.empty()) {
        tasks_cv.wait(lock);
        continue;
      }
      auto due = tasks.begin()->first;
      if (std::chrono::steady_clock::now() < due) {
        tasks_cv.wait_until(lock, due);
        continue;
      }
      std::function<void()> task = std::move(tasks.begin()->second);
      tasks.erase(tasks.begin());
      try {
        task();
      } catch (const std::exception&) {  // a bug in the double must not take the test process down
      }
    }
  }

  // The garbage collector's pass over an owner that is gone.
  void CollectDependentsLocked(const std::string& owner_uid) {
    auto it = dependents.find(owner_uid);
    if (it == dependents.end()) return;
    std::set<std::string> refs = it->second;
    for (const auto& ref : refs) CollectDependentLocked(ref, owner_uid, false);
  }

  // Foreground deletion: the dependents go first; once none is left, the owner's
  // foregroundDeletion finalizer is removed, and with the last finalizer the owner.
  void FinishForegroundLocked(const ResourceType& t, const std::string& ns, const std::string& name,
                              const std::string& uid) {
    CollectDependentsLocked(uid);
    if (dependents.count(uid)) {  // dependents still finalizing: look again later
      ScheduleLocked([this, t, ns, name, uid] { FinishForegroundLocked(t, ns, name, uid); });
      return;
    }
    const Entry* entry = FindLocked(t, ns, name);
    if (!entry || MetaString(*entry->object, "uid") != uid) return;
    json updated = *entry->object;
    json kept = json::array();
    for (const auto& f : Finalizers(updated)) {
      if (f != "foregroundDeletion") kept.push_back(f);
    }
    if (kept.empty()) {
      updated["metadata"].erase("finalizers");
      const std::string propagation = entry->propagation;
      RemoveLocked(t, std::move(updated), propagation, entry->object);
      return;
    }
    updated["metadata"]["finalizers"] = kept;
    CommitLocked(t, std::move(updated), "MODIFIED", entry->object);
  }

  // ---- Reads ----

  struct ListPage {
    std::vector<ObjectPtr> items;
    std::string continue_token;
    int64_t resource_version = 0;
  };

  ListPage ListLocked(const ResourceType& t, const std::string& ns, const kd::LabelSelector& labels,
                      const kd::FieldSelector& fields, int64_t limit, const std::optional<ObjectKey>& after) const {
    ListPage page;
    page.resource_version = rv;
    auto s = stores.find(t.StoreKey());
    if (s == stores.end()) return page;
    const auto& store = s->second;
    auto it = after ? store.upper_bound(*after) : store.lower_bound({ns, ""});
    if (!ns.empty() && after && it != store.end() && it->first.first < ns) it = store.lower_bound({ns, ""});
    for (; it != store.end(); ++it) {
      if (!ns.empty() && it->first.first != ns) break;
      const json& object = *it->second.object;
      if (!labels.Matches(object) || !fields.Matches(object)) continue;
      if (limit > 0 && static_cast<int64_t>(page.items.size()) == limit) {
        page.continue_token = EncodeContinue(std::prev(it)->first);
        break;
      }
      page.items.push_back(it->second.object);
    }
    return page;
  }

  // ---- Dispatch to in-process subscribers ----

  void DispatchLoop() {
    std::unique_lock<std::mutex> lock(notify_mu);
    while (true) {
      notify_cv.wait(lock, [&] { return dispatcher_stopping || !notifications.empty(); });
      if (notifications.empty()) return;
      Notification n = std::move(notifications.front());
      notifications.pop_front();
      lock.unlock();
      {
        std::lock_guard<std::recursive_mutex> subs_lock(subs_mu);
        for (const auto& [id, fn] : subscribers) fn(n.type, n.api_version, n.plural, *n.object);
      }
      lock.lock();
    }
  }

  // ---- HTTP ----

  bool Handle(const kd::HttpRequest& req, kd::HttpConnection& conn);
  std::optional<Answer> Route(const kd::HttpRequest& req, bool is_operator, kd::HttpConnection& conn, bool* keep);
  std::optional<Answer> Discovery(const std::vector<std::string>& segs) const;
  std::optional<Answer> OpenApiV3(const std::vector<std::string>& segs) const;
  json OpenApiDocLocked(const std::string& gv) const;
  Answer ServeResource(const kd::HttpRequest& req, const ResourceType& t, const ApiPath& p, const std::string& verb);
  bool ServeWatch(const kd::HttpRequest& req, const ResourceType& t, const std::string& ns, const std::string& name,
                  kd::HttpConnection& conn);
  Answer ServeList(const kd::HttpRequest& req, const ResourceType& t, const std::string& ns);
  Answer ForbiddenAnswer(const ResourceType& t, const std::string& verb, const std::string& resource,
                         const std::string& ns, const std::string& name) const;
  std::optional<Answer> OwnerReferenceAdmission(const kd::HttpRequest& req, const ResourceType& t, const ApiPath& p,
                                                const std::string& verb);
  json ToTable(const ResourceType& t, const std::vector<ObjectPtr>& objects, const json& list_meta,
               const std::string& include) const;
  std::optional<Answer> TakeFault(const kd::HttpRequest& req);
  void Count(const std::string& method, bool is_operator);
  // Update and UpdateStatus of the in-process API.
  Result<json> UpdateInProcess(const std::string& api_version, const std::string& plural, const std::string& ns,
                               const json& object, bool status_only);

  KubeApiDoubleOptions options;
  kd::RbacRules rbac;
  std::mt19937_64 rng;

  mutable std::mutex mu;  // guards the store, types, history and watchers
  int64_t rv = 0;
  int64_t history_floor = 0;  // a watch may resume from any resourceVersion >= this
  std::deque<Change> history;
  std::map<std::string, std::map<std::string, ResourceType>> types;   // group/version -> plural -> type
  std::map<std::string, std::map<ObjectKey, Entry>> stores;           // group/plural -> objects
  std::unordered_map<std::string, std::set<std::string>> dependents;  // owner uid -> "store\nns\nname"
  std::list<std::shared_ptr<Watcher>> watchers;
  bool stopping = false;
  std::unordered_set<std::string> live_uids;  // of every stored object: owners the GC must not collect for
  int64_t service_ips = 9;
  std::unique_ptr<kd::CrdValidator> validator;  // null: custom resources are stored as sent
  std::multimap<std::chrono::steady_clock::time_point, std::function<void()>> tasks;  // run under mu
  std::condition_variable tasks_cv;
  bool controllers_stopping = false;
  std::thread controllers;  // runs `tasks`: garbage collection and the controllers' work

  std::mutex faults_mu;
  std::deque<Fault> faults;
  std::atomic<int> latency_ms{0};
  mutable std::mutex counters_mu;
  std::map<std::string, int64_t> counts_all, counts_operator;

  std::mutex notify_mu;
  std::condition_variable notify_cv;
  std::deque<Notification> notifications;
  bool dispatcher_stopping = false;
  std::thread dispatcher;
  std::recursive_mutex subs_mu;  // recursive: a subscriber may unsubscribe from its callback
  std::map<int, std::function<void(const std::string&, const std::string&, const std::string&, const json&)>>
      subscribers;
  int next_subscriber = 1;

  std::unique_ptr<kd::HttpServer> server;
};

// ---- HTTP handling ----

void KubeApiDouble::Impl::Count(const std::string& method, bool is_operator) {
  std::lock_guard<std::mutex> lock(counters_mu);
  ++counts_all[method];
  if (is_operator) ++counts_operator[method];
}

std::optional<Answer> KubeApiDouble::Impl::TakeFault(const kd::HttpRequest& req) {
  std::lock_guard<std::mutex> lock(faults_mu);
  for (auto it = faults.begin(); it != faults.end(); ++it) {
    if (!it->method.empty() && it->method != req.method) continue;
    if (!it->path_part.empty() && req.path.find(it->path_part) == std::string::npos) continue;
    int code = it->code;
    if (--it->remaining <= 0) faults.erase(it);
    std::string message = code == 429 ? "Too many requests, please try again later."
                                      : "the double was told to fail this request with " + std::to_string(code);
    Answer answer = Failure(code, ReasonForCode(code), message);
    if (code == 429) {
      answer.body["details"] = {{"retryAfterSeconds", 1}};
      answer.headers.push_back({"Retry-After", "1"});
    }
    return answer;
  }
  return std::nullopt;
}

bool KubeApiDouble::Impl::Handle(const kd::HttpRequest& req, kd::HttpConnection& conn) {
  const std::string auth = req.Header("authorization");
  bool is_operator = !options.operator_token.empty() && auth == "Bearer " + options.operator_token;
  bool is_watch = IsTrue(req.Query("watch"));
  std::string counted = is_watch && req.method == "GET" ? "WATCH" : req.method;
  // Leader election renews a Lease every few seconds: counted apart, so that it does not
  // blur what the operator writes for its objects.
  if (req.path.find("/leases") != std::string::npos) counted = "LEASE_" + counted;
  Count(counted, is_operator);
  if (int ms = latency_ms.load(); ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  std::optional<Answer> answer = TakeFault(req);
  bool keep = true;
  if (!answer) {
    try {
      answer = Route(req, is_operator, conn, &keep);
    } catch (const std::exception& e) {  // a bug in the double must not take the test process down
      answer = Failure(500, "InternalError", std::string("the double failed: ") + e.what());
    }
  }
  if (!answer) return keep;  // streamed
  return conn.Reply(answer->code, "application/json", answer->body.dump(), answer->headers);
}

std::optional<Answer> KubeApiDouble::Impl::Discovery(const std::vector<std::string>& segs) const {
  std::lock_guard<std::mutex> lock(mu);
  auto resource_list = [&](const std::string& gv) -> std::optional<Answer> {
    auto g = types.find(gv);
    if (g == types.end()) return std::nullopt;
    json resources = json::array();
    for (const auto& [plural, t] : g->second) {
      json r = {{"name", plural},
                {"singularName", t.singular},
                {"namespaced", t.namespaced},
                {"kind", t.kind},
                {"verbs", kAllVerbs}};
      if (!t.short_names.empty()) r["shortNames"] = t.short_names;
      if (!t.categories.empty()) r["categories"] = t.categories;
      resources.push_back(r);
      if (t.has_status) {
        resources.push_back({{"name", plural + "/status"},
                             {"singularName", ""},
                             {"namespaced", t.namespaced},
                             {"kind", t.kind},
                             {"verbs", {"get", "patch", "update"}}});
      }
    }
    return Answer{
        200, {{"kind", "APIResourceList"}, {"apiVersion", "v1"}, {"groupVersion", gv}, {"resources", resources}}, {}};
  };
  auto group_json = [&](const std::string& group) {
    json versions = json::array();
    for (const auto& [gv, plurals] : types) {
      if (gv.rfind(group + "/", 0) == 0)
        versions.push_back({{"groupVersion", gv}, {"version", gv.substr(group.size() + 1)}});
    }
    json g = {{"name", group}, {"versions", versions}};
    if (!versions.empty()) g["preferredVersion"] = versions.back();
    return g;
  };
  if (segs.size() == 1 && segs[0] == "api") {
    return Answer{200,
                  {{"kind", "APIVersions"},
                   {"versions", {"v1"}},
                   {"serverAddressByClientCIDRs",
                    {{{"clientCIDR", "0.0.0.0/0"},
                      {"serverAddress", "127.0.0.1:" + std::to_string(server ? server->port() : 0)}}}}},
                  {}};
  }
  if (segs.size() == 2 && segs[0] == "api") return resource_list(segs[1]);
  if (segs.size() == 1 && segs[0] == "apis") {
    std::set<std::string> groups;
    for (const auto& [gv, plurals] : types) {
      if (gv.find('/') != std::string::npos) groups.insert(gv.substr(0, gv.find('/')));
    }
    json list = json::array();
    for (const auto& g : groups) list.push_back(group_json(g));
    return Answer{200, {{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", list}}, {}};
  }
  if (segs.size() == 2 && segs[0] == "apis") {
    json g = group_json(segs[1]);
    if (g["versions"].empty()) return std::nullopt;
    g["kind"] = "APIGroup";
    g["apiVersion"] = "v1";
    return Answer{200, g, {}};
  }
  if (segs.size() == 3 && segs[0] == "apis") return resource_list(segs[1] + "/" + segs[2]);
  return std::nullopt;
}

// Just enough OpenAPI v3 for kubectl: each group-version's document lists the PATCH of every
// resource with the fieldValidation parameter, so kubectl leaves validation to the server
// (which accepts everything) instead of asking for a full schema. No request bodies are
// described, so kubectl builds strategic merge patches from its compiled-in types. A custom
// resource's schema is published as the real server publishes it (named by reversed group,
// version and kind, tagged with its GVK), which is what `kubectl explain` reads.
json KubeApiDouble::Impl::OpenApiDocLocked(const std::string& gv) const {
  json paths = json::object();
  json schemas = json::object();
  auto g = types.find(gv);
  if (g == types.end()) return paths;
  for (const auto& [plural, t] : g->second) {
    if (t.schema.is_object()) {
      std::vector<std::string> labels;  // carapace.dev -> dev.carapace
      std::stringstream group(t.group);
      for (std::string label; std::getline(group, label, '.');) labels.insert(labels.begin(), label);
      std::string reversed;
      for (const auto& label : labels) reversed += (reversed.empty() ? "" : ".") + label;
      json schema = t.schema;
      schema["x-kubernetes-group-version-kind"] = json::array({{{"group", t.group}, {"version", t.version}, {"kind", t.kind}}});
      schemas[reversed + "." + t.version + "." + t.kind] = schema;
    }
    std::string prefix =
        (t.group.empty() ? "/api/" : "/apis/") + gv + (t.namespaced ? "/namespaces/{namespace}/" : "/");
    json gvk = {{"group", t.group}, {"version", t.version}, {"kind", t.kind}};
    json params = json::array();
    for (const char* name : {"dryRun", "fieldManager", "fieldValidation", "force"}) {
      params.push_back({{"name", name}, {"in", "query"}, {"schema", {{"type", "string"}}}});
    }
    json responses = {{"200", {{"description", "OK"}}}};
    paths[prefix + plural + "/{name}"] = {
        {"get", {{"x-kubernetes-group-version-kind", gvk}, {"responses", responses}}},
        {"patch", {{"x-kubernetes-group-version-kind", gvk}, {"parameters", params}, {"responses", responses}}}};
  }
  json doc = {{"openapi", "3.0.0"}, {"info", {{"title", "Kubernetes"}, {"version", "v1.32.0"}}}, {"paths", paths}};
  if (!schemas.empty()) doc["components"] = {{"schemas", schemas}};
  return doc;
}

std::optional<Answer> KubeApiDouble::Impl::OpenApiV3(const std::vector<std::string>& segs) const {
  std::lock_guard<std::mutex> lock(mu);
  if (segs.empty()) {
    json paths = json::object();
    for (const auto& [gv, plurals] : types) {
      std::string key = (gv.find('/') == std::string::npos ? "api/" : "apis/") + gv;
      std::string hash = std::to_string(std::hash<std::string>{}(OpenApiDocLocked(gv).dump()));
      paths[key] = {{"serverRelativeURL", "/openapi/v3/" + key + "?hash=" + hash}};
    }
    return Answer{200, {{"paths", paths}}, {}};
  }
  std::string gv;
  if (segs.size() == 2 && segs[0] == "api") gv = segs[1];
  if (segs.size() == 3 && segs[0] == "apis") gv = segs[1] + "/" + segs[2];
  if (gv.empty() || types.count(gv) == 0) return std::nullopt;
  return Answer{200, OpenApiDocLocked(gv), {}};
}

std::optional<Answer> KubeApiDouble::Impl::Route(const kd::HttpRequest& req, bool is_operator, kd::HttpConnection& conn,
                                                 bool* keep) {
  const std::vector<std::string> segs = Segments(req.path);
  if (req.path == "/version") {
    return Answer{200,
                  {{"major", "1"},
                   {"minor", "32"},
                   {"gitVersion", "v1.32.0-carapace-double"},
                   {"gitCommit", "0000000000000000000000000000000000000000"},
                   {"gitTreeState", "clean"},
                   {"buildDate", "2025-01-01T00:00:00Z"},
                   {"goVersion", "go1.23"},
                   {"compiler", "gc"},
                   {"platform", "linux/amd64"}},
                  {}};
  }
  if (req.path == "/healthz" || req.path == "/readyz" || req.path == "/livez") {
    *keep = true;
    conn.Reply(200, "text/plain", "ok");
    return std::nullopt;
  }
  if (segs.size() >= 2 && segs[0] == "openapi" && segs[1] == "v3") {
    auto answer = OpenApiV3(std::vector<std::string>(segs.begin() + 2, segs.end()));
    return answer ? *answer : NoRoute();
  }
  if (segs.empty() || (segs[0] != "api" && segs[0] != "apis")) return NoRoute();
  size_t base = segs[0] == "api" ? 2 : 3;
  if (segs.size() <= base) {
    if (req.method != "GET")
      return Failure(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
    auto answer = Discovery(segs);
    return answer ? *answer : NoRoute();
  }
  ApiPath p;
  p.group = segs[0] == "api" ? "" : segs[1];
  p.version = segs[base - 1];
  const std::string gv = p.group.empty() ? p.version : p.group + "/" + p.version;
  std::vector<std::string> rest(segs.begin() + static_cast<long>(base), segs.end());
  if (rest[0] == "namespaces" && rest.size() >= 3 && FindType(gv, rest[2])) {
    p.ns = rest[1];
    rest.erase(rest.begin(), rest.begin() + 2);
  }
  if (rest.size() > 3) return NoRoute();
  p.plural = rest[0];
  if (rest.size() > 1) p.name = rest[1];
  if (rest.size() > 2) p.sub = rest[2];
  std::optional<ResourceType> t = FindType(gv, p.plural);
  if (!t) return NoRoute();
  if ((!t->namespaced && !p.ns.empty()) || (t->namespaced && p.ns.empty() && !p.name.empty())) return NoRoute();
  if (!p.sub.empty() && (p.sub != "status" || !t->has_status)) return NoRoute();

  bool is_watch = IsTrue(req.Query("watch"));
  std::string verb;
  if (req.method == "GET") {
    verb = is_watch ? "watch" : p.name.empty() ? "list" : "get";
  } else if (req.method == "POST" && p.name.empty()) {
    verb = "create";
  } else if (req.method == "PUT" && !p.name.empty()) {
    verb = "update";
  } else if (req.method == "PATCH" && !p.name.empty()) {
    verb = "patch";
  } else if (req.method == "DELETE") {
    verb = p.name.empty() ? "deletecollection" : "delete";
  } else {
    return Failure(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
  }
  if (verb == "create" && t->namespaced && p.ns.empty()) {
    return Failure(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
  }
  std::string resource = p.sub.empty() ? p.plural : p.plural + "/" + p.sub;
  if (is_operator && !rbac.Allows(verb, t->group, resource, p.ns, p.name)) {
    return ForbiddenAnswer(*t, verb, resource, p.ns, p.name);
  }
  if (is_operator && (verb == "create" || verb == "update" || verb == "patch")) {
    if (auto refused = OwnerReferenceAdmission(req, *t, p, verb)) return *refused;
  }
  if (req.HasQuery("dryRun") && verb != "get" && verb != "list" && verb != "watch") {
    // Refused rather than carried out: a dry run that changed the store would mislead a test.
    return Failure(400, "BadRequest", "dryRun is not supported by the Kubernetes API double");
  }
  if (verb == "watch") {
    *keep = ServeWatch(req, *t, p.ns, p.name, conn);
    return std::nullopt;
  }
  return ServeResource(req, *t, p, verb);
}

// The OwnerReferencesPermissionEnforcement admission plugin (plugin/pkg/admission/gc/
// gc_admission.go): whoever changes an object's owner references (a create with any counts)
// must be allowed to delete the object, and whoever sets blockOwnerDeletion on a reference
// must be allowed to update the owner's finalizers subresource. Many production clusters
// (OpenShift among them) enable it; the operator's role must pass it.
std::optional<Answer> KubeApiDouble::Impl::OwnerReferenceAdmission(const kd::HttpRequest& req, const ResourceType& t,
                                                                   const ApiPath& p, const std::string& verb) {
  json body = json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
  if (body.is_discarded()) return std::nullopt;  // the write itself answers 400
  json old_refs = json::array();
  std::string name = p.name.empty() ? MetaString(body, "name") : p.name;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (verb != "create") {
      const Entry* entry = FindLocked(t, p.ns, p.name);
      if (!entry) return std::nullopt;  // the write answers 404
      old_refs = Meta(*entry->object).value("ownerReferences", json::array());
    }
  }
  json new_refs;
  if (body.is_array()) {  // a JSON patch: any operation on the references is a change
    for (const auto& op : body) {
      if (op.is_object() && op.value("path", "").rfind("/metadata/ownerReferences", 0) == 0) new_refs = json::array();
    }
    if (new_refs.is_null()) return std::nullopt;
  } else if (body.is_object() && body.contains("metadata") && body["metadata"].is_object() &&
             body["metadata"].contains("ownerReferences")) {
    new_refs = body["metadata"]["ownerReferences"];
  } else {
    if (verb == "create" || verb == "patch") return std::nullopt;  // none set, or none changed
    new_refs = json::array();                                       // an update without them removes them
  }
  if (!new_refs.is_array()) new_refs = json::array();
  if (new_refs == old_refs) return std::nullopt;
  const std::string user = "system:serviceaccount:" + options.operator_namespace + ":carapace-operator";
  if (!rbac.Allows("delete", t.group, t.plural, p.ns, name)) {
    return Failure(403, "Forbidden",
                   t.Qualified() + " \"" + name + "\" is forbidden: cannot set an ownerRef on a resource you can't delete: " +
                       t.plural + ", " + name + " (user " + user + ")",
                   &t, name);
  }
  for (const auto& ref : new_refs) {
    if (!ref.is_object() || !ref.value("blockOwnerDeletion", false)) continue;
    bool already = false;
    for (const auto& o : old_refs) already = already || (o.value("uid", "") == ref.value("uid", "") && o.value("blockOwnerDeletion", false));
    if (already) continue;
    std::optional<ResourceType> owner;
    {
      std::lock_guard<std::mutex> lock(mu);
      auto g = types.find(ref.value("apiVersion", ""));
      if (g != types.end()) {
        for (const auto& [plural, ot] : g->second) {
          if (ot.kind == ref.value("kind", "")) owner = ot;
        }
      }
    }
    if (!owner || !rbac.Allows("update", owner->group, owner->plural + "/finalizers", p.ns, ref.value("name", ""))) {
      return Failure(403, "Forbidden",
                     t.Qualified() + " \"" + name + "\" is forbidden: cannot set blockOwnerDeletion if an ownerReference "
                                                 "refers to a resource you can't set finalizers on: " +
                         ref.value("kind", "") + " " + ref.value("name", "") + " (user " + user + ")",
                     &t, name);
    }
  }
  return std::nullopt;
}

Answer KubeApiDouble::Impl::ForbiddenAnswer(const ResourceType& t, const std::string& verb, const std::string& resource,
                                            const std::string& ns, const std::string& name) const {
  std::string user = "system:serviceaccount:" + options.operator_namespace + ":carapace-operator";
  std::string subject = name.empty() ? t.Qualified() : t.Qualified() + " \"" + name + "\"";
  std::string scope = ns.empty() ? "at the cluster scope" : "in the namespace \"" + ns + "\"";
  return Failure(403, "Forbidden",
                 subject + " is forbidden: User \"" + user + "\" cannot " + verb + " resource \"" + resource +
                     "\" in API group \"" + t.group + "\" " + scope,
                 &t, name);
}

Answer KubeApiDouble::Impl::ServeResource(const kd::HttpRequest& req, const ResourceType& t, const ApiPath& p,
                                          const std::string& verb) {
  if (verb == "list") return ServeList(req, t, p.ns);
  auto body_json = [&]() { return req.body.empty() ? json::object() : json::parse(req.body, nullptr, false); };
  if (verb == "get") {
    std::lock_guard<std::mutex> lock(mu);
    const Entry* entry = FindLocked(t, p.ns, p.name);
    if (!entry) return NotFoundAnswer(t, p.name);
    if (req.Header("accept").find("as=Table") != std::string::npos && !t.crd_name.empty()) {
      return {200,
              ToTable(t, {entry->object}, {{"resourceVersion", MetaString(*entry->object, "resourceVersion")}},
                      req.Query("includeObject")),
              {}};
    }
    return {200, *entry->object, {}};
  }
  if (verb == "create" || verb == "update") {
    json body = body_json();
    if (body.is_discarded() || !body.is_object())
      return Failure(400, "BadRequest", "the request body is not a JSON object");
    std::lock_guard<std::mutex> lock(mu);
    return verb == "create" ? CreateLocked(t, p.ns, std::move(body), false, req.Query("fieldValidation"))
                            : UpdateLocked(t, p.ns, p.name, std::move(body), p.sub == "status",
                                           req.Query("fieldValidation"));
  }
  if (verb == "patch") {
    std::lock_guard<std::mutex> lock(mu);
    return PatchLocked(t, p.ns, p.name, req.body, req.Header("content-type"), p.sub == "status",
                       req.Query("fieldValidation"));
  }
  // delete and deletecollection: the policy comes from DeleteOptions in the body or the query.
  json options_body = body_json();
  if (options_body.is_discarded() || !options_body.is_object()) options_body = json::object();
  std::string propagation = options_body.value("propagationPolicy", req.Query("propagationPolicy"));
  if (options_body.value("orphanDependents", false)) propagation = "Orphan";
  if (verb == "delete") {
    std::lock_guard<std::mutex> lock(mu);
    return DeleteLocked(t, p.ns, p.name, propagation, options_body.value("preconditions", json::object()));
  }
  auto labels = kd::LabelSelector::Parse(req.Query("labelSelector"));
  auto fields = kd::FieldSelector::Parse(req.Query("fieldSelector"));
  if (!labels.ok()) return Failure(400, "BadRequest", labels.status().message());
  if (!fields.ok()) return Failure(400, "BadRequest", fields.status().message());
  std::lock_guard<std::mutex> lock(mu);
  ListPage page = ListLocked(t, p.ns, *labels, *fields, 0, std::nullopt);
  for (const auto& object : page.items) {
    (void)DeleteLocked(t, MetaString(*object, "namespace"), MetaString(*object, "name"), propagation);
  }
  return {200, {{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", json::object()}, {"status", "Success"}}, {}};
}

Answer KubeApiDouble::Impl::ServeList(const kd::HttpRequest& req, const ResourceType& t, const std::string& ns) {
  auto labels = kd::LabelSelector::Parse(req.Query("labelSelector"));
  auto fields = kd::FieldSelector::Parse(req.Query("fieldSelector"));
  if (!labels.ok()) return Failure(400, "BadRequest", labels.status().message());
  if (!fields.ok()) return Failure(400, "BadRequest", fields.status().message());
  int64_t limit = 0;
  if (req.HasQuery("limit")) {
    const std::string text = req.Query("limit");
    char* end = nullptr;
    limit = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || limit < 0) return Failure(400, "BadRequest", "invalid limit: " + text);
  }
  std::optional<ObjectKey> after;
  if (!req.Query("continue").empty()) {
    after = DecodeContinue(req.Query("continue"));
    if (!after) return Failure(400, "BadRequest", "continue key is not valid: " + req.Query("continue"));
  }
  ListPage page;
  {
    std::lock_guard<std::mutex> lock(mu);
    page = ListLocked(t, ns, *labels, *fields, limit, after);
  }
  json meta = {{"resourceVersion", std::to_string(page.resource_version)}};
  if (!page.continue_token.empty()) meta["continue"] = page.continue_token;
  if (req.Header("accept").find("as=Table") != std::string::npos && !t.crd_name.empty()) {
    return {200, ToTable(t, page.items, meta, req.Query("includeObject")), {}};
  }
  json items = json::array();
  for (const auto& object : page.items) {
    json item = *object;
    // The real server sends the items of a list of built-in types without apiVersion and
    // kind (kubernetes/kubernetes#3030: the list's own carry them); custom resources, which
    // it serves unstructured, keep theirs.
    if (t.crd_name.empty()) {
      item.erase("apiVersion");
      item.erase("kind");
    }
    items.push_back(std::move(item));
  }
  return {
      200,
      {{"kind", t.kind + "List"}, {"apiVersion", t.GroupVersion()}, {"metadata", meta}, {"items", std::move(items)}},
      {}};
}

// A meta.k8s.io Table, as `kubectl get` asks for: Name, then the CRD's printer columns.
json KubeApiDouble::Impl::ToTable(const ResourceType& t, const std::vector<ObjectPtr>& objects, const json& list_meta,
                                  const std::string& include) const {
  json columns = json::array({{{"name", "Name"},
                               {"type", "string"},
                               {"format", "name"},
                               {"description", "Name must be unique within a namespace."},
                               {"priority", 0}}});
  json printer = t.printer_columns.empty()
                     ? json::array({{{"name", "Age"}, {"type", "date"}, {"jsonPath", ".metadata.creationTimestamp"}}})
                     : t.printer_columns;
  for (const auto& c : printer) {
    columns.push_back({{"name", c.value("name", "")},
                       {"type", c.value("type", "string")},
                       {"format", c.value("format", "")},
                       {"description", c.value("description", "")},
                       {"priority", c.value("priority", 0)}});
  }
  json rows = json::array();
  for (const auto& object : objects) {
    json cells = json::array({MetaString(*object, "name")});
    for (const auto& c : printer) {
      std::vector<json> values = kd::JsonPathSelect(*object, c.value("jsonPath", ""));
      if (values.empty()) {
        cells.push_back(nullptr);
      } else if (c.value("type", "") == "date" && values[0].is_string()) {
        cells.push_back(HumanAge(values[0].get<std::string>()));
      } else if (values.size() == 1) {
        cells.push_back(values[0]);
      } else {
        std::string joined;
        for (const auto& v : values)
          joined += (joined.empty() ? "" : ",") + (v.is_string() ? v.get<std::string>() : v.dump());
        cells.push_back(joined);
      }
    }
    json row = {{"cells", cells}};
    if (include == "Object") {
      row["object"] = *object;
    } else if (include != "None") {
      row["object"] = {
          {"kind", "PartialObjectMetadata"}, {"apiVersion", "meta.k8s.io/v1"}, {"metadata", Meta(*object)}};
    }
    rows.push_back(row);
  }
  return {{"kind", "Table"},
          {"apiVersion", "meta.k8s.io/v1"},
          {"metadata", list_meta},
          {"columnDefinitions", columns},
          {"rows", rows}};
}

bool KubeApiDouble::Impl::ServeWatch(const kd::HttpRequest& req, const ResourceType& t, const std::string& ns,
                                     const std::string& name, kd::HttpConnection& conn) {
  auto labels = kd::LabelSelector::Parse(req.Query("labelSelector"));
  std::string field_text = req.Query("fieldSelector");
  if (!name.empty()) field_text += std::string(field_text.empty() ? "" : ",") + "metadata.name=" + name;
  auto fields = kd::FieldSelector::Parse(field_text);
  if (!labels.ok() || !fields.ok()) {
    Answer bad = Failure(400, "BadRequest", !labels.ok() ? labels.status().message() : fields.status().message());
    return conn.Reply(bad.code, "application/json", bad.body.dump());
  }
  const std::string from = req.Query("resourceVersion");
  int64_t from_rv = 0;
  if (!from.empty()) {
    char* end = nullptr;
    from_rv = std::strtoll(from.c_str(), &end, 10);
    if (*end != '\0' || from_rv < 0) {
      Answer bad = Failure(400, "BadRequest", "invalid resource version: " + from);
      return conn.Reply(bad.code, "application/json", bad.body.dump());
    }
  }
  const bool bookmarks = IsTrue(req.Query("allowWatchBookmarks"));
  // `kubectl get -w` asks for Table rows, as it does for lists.
  const bool as_table = req.Header("accept").find("as=Table") != std::string::npos && !t.crd_name.empty();
  const bool initial_events_end = IsTrue(req.Query("sendInitialEvents")) && bookmarks;
  int64_t timeout_s =
      req.HasQuery("timeoutSeconds") ? std::strtoll(req.Query("timeoutSeconds").c_str(), nullptr, 10) : 1800;
  if (timeout_s <= 0) timeout_s = 1800;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);

  auto watcher = std::make_shared<Watcher>();
  watcher->store_key = t.StoreKey();
  watcher->ns = ns;
  watcher->labels = *labels;
  watcher->fields = *fields;
  std::optional<int64_t> expired_floor;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (from_rv > 0 && !initial_events_end) {
      if (from_rv < history_floor) {
        expired_floor = history_floor;
      } else {
        auto first = std::upper_bound(history.begin(), history.end(), from_rv,
                                      [](int64_t v, const Change& c) { return v < c.rv; });
        for (auto it = first; it != history.end(); ++it) {
          if (it->store_key != watcher->store_key || (!ns.empty() && it->ns != ns)) continue;
          if (auto type = EventTypeFor(*watcher, *it)) watcher->queue.emplace_back(*type, it->object);
        }
      }
    } else {
      ListPage page = ListLocked(t, ns, *labels, *fields, 0, std::nullopt);
      for (auto& object : page.items) watcher->queue.emplace_back("ADDED", object);
    }
    watcher->progress_rv = rv;
    if (!expired_floor) watchers.push_back(watcher);
  }
  if (!conn.StartChunked(200, "application/json")) return false;
  if (expired_floor) {
    json status =
        Failure(410, "Expired", "too old resource version: " + from + " (" + std::to_string(*expired_floor) + ")").body;
    conn.SendChunk(json({{"type", "ERROR"}, {"object", status}}).dump() + "\n");
    return conn.EndChunked();
  }
  auto bookmark = [&](int64_t at, bool end_of_initial) {
    json meta = {{"resourceVersion", std::to_string(at)}};
    if (end_of_initial) meta["annotations"] = {{"k8s.io/initial-events-end", "true"}};
    return json({{"type", "BOOKMARK"},
                 {"object", {{"kind", t.kind}, {"apiVersion", t.GroupVersion()}, {"metadata", meta}}}})
               .dump() +
           "\n";
  };
  bool initial_pending = initial_events_end;
  const auto bookmark_every = std::chrono::milliseconds(std::max(options.bookmark_interval_ms, 10));
  auto next_bookmark = std::chrono::steady_clock::now() + bookmark_every;
  bool keep = true, ended = false;
  std::unique_lock<std::mutex> lock(mu);
  while (true) {
    if (stopping) {
      keep = false;
      break;
    }
    if (watcher->dropped) {
      conn.Abort();
      keep = false;
      break;
    }
    if (!watcher->queue.empty()) {
      std::deque<std::pair<std::string, ObjectPtr>> batch;
      batch.swap(watcher->queue);
      int64_t progress = watcher->progress_rv;
      lock.unlock();
      std::string text;
      for (const auto& [type, object] : batch) {
        json shown = as_table ? ToTable(t, {object}, {{"resourceVersion", MetaString(*object, "resourceVersion")}},
                                        req.Query("includeObject"))
                              : *object;
        text += json({{"type", type}, {"object", std::move(shown)}}).dump() + "\n";
      }
      if (initial_pending) text += bookmark(progress, true);
      initial_pending = false;
      bool sent = conn.SendChunk(text);
      lock.lock();
      if (!sent) {
        keep = false;
        break;
      }
      continue;
    }
    auto now = std::chrono::steady_clock::now();
    if (initial_pending || (bookmarks && now >= next_bookmark)) {
      std::string text = bookmark(watcher->progress_rv, initial_pending);
      initial_pending = false;
      next_bookmark = now + bookmark_every;
      lock.unlock();
      bool sent = conn.SendChunk(text);
      lock.lock();
      if (!sent) {
        keep = false;
        break;
      }
      continue;
    }
    if (now >= deadline) {
      ended = true;
      break;
    }
    // Wakes for the next event, bookmark, deadline, or a look at whether the client left.
    auto wake = std::min({deadline, bookmarks ? next_bookmark : deadline, now + std::chrono::milliseconds(250)});
    watcher->cv.wait_until(lock, wake);
    if (watcher->queue.empty() && !watcher->dropped && !stopping && conn.PeerClosed()) {
      keep = false;
      break;
    }
  }
  watchers.remove(watcher);
  lock.unlock();
  if (ended) keep = conn.EndChunked();
  return keep;
}

// ---- Public API ----

KubeApiDouble::KubeApiDouble(KubeApiDoubleOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

KubeApiDouble::~KubeApiDouble() { Stop(); }

Status KubeApiDouble::Start() {
  if (impl_->server) return FailedPrecondition("the Kubernetes API double is already running");
  CARAPACE_RETURN_IF_ERROR(impl_->rbac.Load(impl_->options.rbac_files, impl_->options.operator_namespace));
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = false;
  }
  auto server = std::make_unique<kd::HttpServer>(
      [this](const kd::HttpRequest& req, kd::HttpConnection& conn) { return impl_->Handle(req, conn); });
  CARAPACE_RETURN_IF_ERROR(server->Start(impl_->options.port));
  impl_->server = std::move(server);
  return Status::Ok();
}

void KubeApiDouble::Stop() {
  if (!impl_->server) return;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
    for (auto& w : impl_->watchers) w->cv.notify_all();
  }
  impl_->server->Stop();
  impl_->server.reset();
  // The e2e suite's least-privilege audit (tests/e2e/rbac_audit_test.cc) collects what the
  // operator asked of every double the suite ran.
  if (const char* dir = std::getenv("CARAPACE_RBAC_AUDIT_DIR"); dir && *dir) (void)impl_->rbac.WriteAudit(dir);
}

int KubeApiDouble::port() const { return impl_->server ? impl_->server->port() : 0; }

std::string KubeApiDouble::url() const { return "http://127.0.0.1:" + std::to_string(port()); }

Status KubeApiDouble::WriteKubeconfig(const std::string& path, const std::string& token) const {
  std::ofstream out(path, std::ios::trunc);
  if (!out) return IoError("cannot write kubeconfig " + path);
  out << "apiVersion: v1\nkind: Config\n"
      << "clusters:\n- name: carapace-double\n  cluster:\n    server: " << url() << "\n"
      << "users:\n- name: carapace-double\n  user:\n";
  if (token.empty()) {
    out << "    username: admin\n    password: admin\n";
  } else {
    out << "    token: " << json(token).dump() << "\n";
  }
  out << "contexts:\n- name: carapace-double\n  context:\n    cluster: carapace-double\n    user: carapace-double\n"
      << "    namespace: default\n"
      << "current-context: carapace-double\n";
  out.close();
  return out ? Status::Ok() : IoError("cannot write kubeconfig " + path);
}

std::string DefaultCrdValidator() { return CARAPACE_CRD_VALIDATOR; }

namespace {
std::string NamespaceOf(const std::string& ns, const nlohmann::json& object) {
  return !ns.empty() ? ns : MetaString(object, "namespace");
}
}  // namespace

Result<json> KubeApiDouble::Get(const std::string& api_version, const std::string& plural, const std::string& ns,
                                const std::string& name) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const ResourceType* t = impl_->FindTypeLocked(api_version, plural);
  if (!t) return NotFound("the server does not serve " + plural + " in " + api_version);
  const Entry* entry = impl_->FindLocked(*t, ns, name);
  if (!entry) return ToStatus(NotFoundAnswer(*t, name));
  return *entry->object;
}

std::vector<json> KubeApiDouble::List(const std::string& api_version, const std::string& plural, const std::string& ns,
                                      const std::string& label_selector) const {
  auto labels = kd::LabelSelector::Parse(label_selector);
  if (!labels.ok()) return {};
  std::lock_guard<std::mutex> lock(impl_->mu);
  const ResourceType* t = impl_->FindTypeLocked(api_version, plural);
  if (!t) return {};
  auto page = impl_->ListLocked(*t, t->namespaced ? ns : "", *labels, kd::FieldSelector(), 0, std::nullopt);
  std::vector<json> out;
  out.reserve(page.items.size());
  for (const auto& object : page.items) out.push_back(*object);
  return out;
}

Result<json> KubeApiDouble::Create(const std::string& api_version, const std::string& plural, const std::string& ns,
                                   const json& object) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const ResourceType* t = impl_->FindTypeLocked(api_version, plural);
  if (!t) return NotFound("the server does not serve " + plural + " in " + api_version);
  ResourceType type = *t;
  Answer answer = impl_->CreateLocked(type, type.namespaced ? NamespaceOf(ns, object) : "", object);
  if (!answer.ok()) return ToStatus(answer);
  return answer.body;
}

Result<json> KubeApiDouble::Update(const std::string& api_version, const std::string& plural, const std::string& ns,
                                   const json& object) {
  return impl_->UpdateInProcess(api_version, plural, ns, object, /*status_only=*/false);
}

Result<json> KubeApiDouble::UpdateStatus(const std::string& api_version, const std::string& plural,
                                         const std::string& ns, const json& object) {
  return impl_->UpdateInProcess(api_version, plural, ns, object, /*status_only=*/true);
}

Result<json> KubeApiDouble::Impl::UpdateInProcess(const std::string& api_version, const std::string& plural,
                                                  const std::string& ns, const json& object, bool status_only) {
  std::lock_guard<std::mutex> lock(mu);
  const ResourceType* t = FindTypeLocked(api_version, plural);
  if (!t) return NotFound("the server does not serve " + plural + " in " + api_version);
  ResourceType type = *t;
  Answer answer = UpdateLocked(type, type.namespaced ? NamespaceOf(ns, object) : "", MetaString(object, "name"),
                               object, status_only);
  if (!answer.ok()) return ToStatus(answer);
  return answer.body;
}

Status KubeApiDouble::Delete(const std::string& api_version, const std::string& plural, const std::string& ns,
                             const std::string& name) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const ResourceType* t = impl_->FindTypeLocked(api_version, plural);
  if (!t) return NotFound("the server does not serve " + plural + " in " + api_version);
  ResourceType type = *t;
  Answer answer = impl_->DeleteLocked(type, type.namespaced ? ns : "", name, "Background");
  return answer.ok() ? Status::Ok() : ToStatus(answer);
}

int KubeApiDouble::Subscribe(std::function<void(const std::string& type, const std::string& api_version,
                                                const std::string& plural, const json& object)>
                                 fn) {
  std::lock_guard<std::recursive_mutex> lock(impl_->subs_mu);
  int id = impl_->next_subscriber++;
  impl_->subscribers[id] = std::move(fn);
  return id;
}

void KubeApiDouble::Unsubscribe(int id) {
  std::lock_guard<std::recursive_mutex> lock(impl_->subs_mu);
  impl_->subscribers.erase(id);
}

void KubeApiDouble::FailNext(int code, int count, const std::string& method, const std::string& path_part) {
  if (count <= 0) return;
  std::lock_guard<std::mutex> lock(impl_->faults_mu);
  impl_->faults.push_back({code, count, method, path_part});
}

void KubeApiDouble::SetLatency(int ms) { impl_->latency_ms = std::max(ms, 0); }

void KubeApiDouble::DropWatches() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  for (auto& w : impl_->watchers) {
    w->dropped = true;
    w->cv.notify_all();
  }
}

void KubeApiDouble::ExpireHistory() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->history.clear();
  // The version moves on by one, and history starts there: even a watcher fully caught up
  // must list again, and a list from now on gives a version it can watch from.
  impl_->history_floor = ++impl_->rv;
}

int64_t KubeApiDouble::Requests(const std::string& method, bool operator_only) const {
  std::lock_guard<std::mutex> lock(impl_->counters_mu);
  const auto& counts = operator_only ? impl_->counts_operator : impl_->counts_all;
  if (!method.empty()) {
    auto it = counts.find(method);
    return it == counts.end() ? 0 : it->second;
  }
  int64_t total = 0;
  for (const auto& [m, n] : counts) total += n;
  return total;
}

void KubeApiDouble::ResetCounters() {
  std::lock_guard<std::mutex> lock(impl_->counters_mu);
  impl_->counts_all.clear();
  impl_->counts_operator.clear();
}

}  // namespace carapace::testing
