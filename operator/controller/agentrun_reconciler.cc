// Reconciling one AgentRun (see agentrun_reconciler.h).
#include "operator/controller/agentrun_reconciler.h"

#include <openssl/rand.h>

#include <ctime>

#include "common/cron.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/quantity.h"
#include "common/time.h"
#include "operator/controller/agentrun_status.h"

namespace carapace::controller {

using nlohmann::json;
using std::chrono::milliseconds;

// What one reconcile has learned so far.
struct AgentRunReconciler::Context {
  std::string ns, name;
  json ar;  // the AgentRun as last read or written
  Owner owner;
  std::optional<AgentRun> run;
  std::string token;
  std::string secrets_hash;  // of the Secret data the worker reads (HashReferencedSecrets)
  std::string control_ca;    // with --worker-tls-issuer (ReadControlCa)
  Observation seen;
};

namespace {

std::string Rfc3339(int64_t unix_ms) { return FormatRfc3339Millis(unix_ms).substr(0, 19) + "Z"; }

int64_t ParseRfc3339(const std::string& text) {
  std::tm tm{};
  if (text.size() < 19 || strptime(text.substr(0, 19).c_str(), "%Y-%m-%dT%H:%M:%S", &tm) == nullptr) return -1;
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

std::string RandomToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return "";
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

bool OwnedBy(const json& object, const std::string& uid) {
  for (const auto& ref : object.value("/metadata/ownerReferences"_json_pointer, json::array())) {
    if (ref.value("uid", "") == uid) return true;
  }
  return false;
}

bool OwnedByStatefulSet(const json& pod, const std::string& sts) {
  for (const auto& ref : pod.value("/metadata/ownerReferences"_json_pointer, json::array())) {
    if (ref.value("kind", "") == "StatefulSet" && ref.value("name", "") == sts) return true;
  }
  return false;
}

bool HasFinalizer(const json& object) {
  for (const auto& f : object.value("/metadata/finalizers"_json_pointer, json::array())) {
    if (f == kFinalizer) return true;
  }
  return false;
}

// The merge patch that puts `desired` back over an existing object: our labels,
// annotations and owner, and the fields we set; fields the server added stay.
json DriftPatch(const json& desired, const json& actual) {
  json patch = desired;
  patch.erase("apiVersion");
  patch.erase("kind");
  json meta = {{"labels", desired["metadata"]["labels"]},
               {"ownerReferences", desired["metadata"]["ownerReferences"]},
               {"resourceVersion", actual.value("/metadata/resourceVersion"_json_pointer, std::string())}};
  if (desired["metadata"].contains("annotations")) meta["annotations"] = desired["metadata"]["annotations"];
  patch["metadata"] = meta;
  return patch;
}

// Immutable parts of a StatefulSet's spec, with the claim's size left out: a larger volume
// is handled by growing the claim, not by recreating.
json ImmutableParts(const json& sts) {
  json spec = sts.value("spec", json::object());
  json parts = {{"selector", spec.value("selector", json())}, {"serviceName", spec.value("serviceName", "")}};
  json templates = spec.value("volumeClaimTemplates", json::array());
  for (auto& t : templates) {
    if (t.contains("spec")) t["spec"].erase("resources");
    if (t.contains("metadata")) t["metadata"] = {{"name", t["metadata"].value("name", "")}};
    if (t.contains("status")) t.erase("status");
    if (t.contains("spec")) t["spec"].erase("volumeMode");
  }
  parts["volumeClaimTemplates"] = templates;
  return parts;
}

// The old status as far as it has the shape we write; a status edited by hand into another
// shape is dropped (and rewritten), never trusted.
json UsableStatus(const json& status) {
  if (!status.is_object()) return json::object();
  json out = status;
  for (const char* key : {"phase", "specHash", "workerPhase", "result", "message", "runID"}) {
    if (out.contains(key) && !out[key].is_string()) out.erase(key);
  }
  if (out.contains("conditions")) {
    bool ok = out["conditions"].is_array();
    for (const auto& c : ok ? out["conditions"] : json::array()) {
      ok = ok && c.is_object();
      for (const char* key : {"type", "status", "reason", "message", "lastTransitionTime"}) {
        ok = ok && (!c.contains(key) || c[key].is_string());
      }
    }
    if (!ok) out.erase("conditions");
  }
  if (out.contains("hibernation")) {
    const json& h = out["hibernation"];
    const bool ok = h.is_object() && (!h.contains("wakeAt") || h["wakeAt"].is_string()) &&
                    (!h.contains("generation") || h["generation"].is_number_integer());
    if (!ok) out.erase("hibernation");
  }
  return out;
}

std::string ClaimSize(const json& sts) {
  return sts.value("/spec/volumeClaimTemplates/0/spec/resources/requests/storage"_json_pointer, std::string());
}

}  // namespace

bool IsSubset(const json& desired, const json& actual) {
  if (desired.is_object()) {
    if (!actual.is_object()) return false;
    for (auto it = desired.begin(); it != desired.end(); ++it) {
      auto found = actual.find(it.key());
      if (found == actual.end() || !IsSubset(*it, *found)) return false;
    }
    return true;
  }
  if (desired.is_array()) {
    if (!actual.is_array() || actual.size() != desired.size()) return false;
    for (size_t i = 0; i < desired.size(); ++i) {
      if (!IsSubset(desired[i], actual[i])) return false;
    }
    return true;
  }
  if (desired.is_number() && actual.is_number()) return desired.get<double>() == actual.get<double>();
  return desired == actual;
}

AgentRunReconciler::AgentRunReconciler(kube::RestClient* client, Caches caches, WorkerStatusReader* workers,
                                       kube::EventRecorder* events, ReconcilerOptions options)
    : client_(client), caches_(caches), workers_(workers), events_(events), options_(std::move(options)) {}

ReconcileOutcome AgentRunReconciler::Reconcile(const std::string& key) {
  telemetry::Span span = telemetry::StartSpan("reconcile AgentRun");
  const size_t slash = key.find('/');
  span.Set("k8s.namespace.name", key.substr(0, slash)).Set("carapace.agentrun.name", key.substr(slash + 1));
  ReconcileOutcome outcome = ReconcileKey(key, span);
  if (!outcome.status.ok()) {
    span.SetError(StatusCodeName(outcome.status.code()), outcome.status.message());
  } else {
    if (!outcome.phase.empty()) span.Set("carapace.agentrun.phase", outcome.phase);
    span.Set("carapace.reconcile.requeue_after_ms", static_cast<int64_t>(outcome.requeue_after.count()));
  }
  return outcome;
}

ReconcileOutcome AgentRunReconciler::ReconcileKey(const std::string& key, telemetry::Span& span) {
  Context c;
  const size_t slash = key.find('/');
  c.ns = key.substr(0, slash);
  c.name = key.substr(slash + 1);
  auto cached = caches_.agentruns->Get(key);
  if (!cached) {
    span.Set("carapace.reconcile.deleted", true);
    return {};  // deleted: its objects go with it (owner references)
  }
  c.ar = *cached;
  if (span.recording()) {
    span.Set("carapace.agentrun.uid", c.ar.value("/metadata/uid"_json_pointer, std::string()))
        .Set("carapace.agentrun.generation", c.ar.value("/metadata/generation"_json_pointer, int64_t{0}))
        .Set("carapace.agentrun.resource_version", c.ar.value("/metadata/resourceVersion"_json_pointer, std::string()));
  }
  if (c.ar.contains("status")) c.ar["status"] = UsableStatus(c.ar["status"]);
  c.owner = {c.name, c.ns, c.ar.value("/metadata/uid"_json_pointer, std::string())};
  c.seen.agentrun = c.ar;
  c.seen.now = Rfc3339(WallNowMillis());

  if (c.ar.contains("metadata") && c.ar["metadata"].contains("deletionTimestamp")) return Finalize(c);
  if (Status s = EnsureFinalizer(c); !s.ok()) return {s};

  auto parsed = ParseAgentRun(c.ar.dump(), "AgentRun " + key);
  std::string invalid = parsed.ok() ? "" : parsed.status().message();
  // Pods of a StatefulSet carry its name plus a revision hash in a 63-character label.
  if (parsed.ok() && c.name.size() > 52) invalid = "metadata.name: at most 52 characters (the pod's labels need the rest)";
  if (!invalid.empty()) {
    c.seen.invalid_spec = invalid;
    // The last valid spec keeps running, but a request to stop it is still honoured.
    const json suspend = c.ar.value("/spec/suspend"_json_pointer, json());
    auto sts = caches_.statefulsets->Get(c.ns + "/" + StatefulSetName(c.name));
    if (suspend == true && sts && OwnedBy(*sts, c.owner.uid) && sts->value("/spec/replicas"_json_pointer, 1) != 0) {
      auto r = client_->Patch(kube::StatefulSets(), c.ns, StatefulSetName(c.name), {{"spec", {{"replicas", 0}}}});
      if (!r.ok()) return {r.status()};
      caches_.statefulsets->Observe(r.value);
    }
    json status = ComputeStatus(c.seen);
    if (c.ar.value("/status/phase"_json_pointer, std::string()) != "Invalid") events_->Warning(c.ar, "InvalidSpec", invalid);
    if (Status s = WriteStatus(c, status); !s.ok()) return {s};
    return {Status::Ok(), milliseconds(0), "Invalid"};
  }
  c.run = std::move(*parsed);
  c.seen.spec_hash = c.run->SpecHash();
  c.seen.suspended = c.run->spec.deployment.suspend;
  c.seen.one_shot = !c.run->spec.schedule;

  Status s = EnsureSecret(c);
  if (s.ok()) s = EnsureObject(c, kube::ConfigMaps(), caches_.configmaps, DesiredConfigMap(*c.run, c.owner));
  if (s.ok()) s = EnsureObject(c, kube::Services(), caches_.services, DesiredService(*c.run, c.owner, options_.settings));
  if (s.ok() && caches_.networkpolicies != nullptr) {
    s = EnsureObject(c, kube::NetworkPolicies(), caches_.networkpolicies,
                     DesiredNetworkPolicy(*c.run, c.owner, options_.settings,
                                          c.ar.value("/metadata/annotations"_json_pointer, json::object())));
  }
  if (s.ok() && caches_.certificates != nullptr) {
    s = EnsureObject(c, kube::Certificates(), caches_.certificates, DesiredCertificate(*c.run, c.owner, options_.settings));
  }
  if (!s.ok() && c.seen.conflict.empty()) return {s};

  milliseconds requeue(0);
  if (c.seen.conflict.empty()) {
    ReadWorker(c);
    DecideHibernation(c, &requeue);
    const int replicas = c.seen.suspended || !c.seen.hibernation.is_null() ? 0 : 1;
    if (Status st = EnsureStatefulSet(c, replicas); !st.ok()) {
      if (c.seen.conflict.empty()) return {st};
    }
    if (Status st = ReplaceStuckPod(c); !st.ok()) return {st};
  }
  if (!c.seen.conflict.empty()) {
    if (c.ar.value("/status/conditions"_json_pointer, json::array()).dump().find("NameConflict") == std::string::npos) {
      events_->Warning(c.ar, "NameConflict", c.seen.conflict);
    }
    requeue = milliseconds(30000);  // a Secret is not watched: look again for the way to clear
  }

  json status = ComputeStatus(c.seen);
  const std::string old_phase = c.ar.value("/status/phase"_json_pointer, std::string());
  const std::string phase = status.value("phase", "");
  if (phase != old_phase && !old_phase.empty()) {
    if (phase == "Succeeded") events_->Normal(c.ar, "Succeeded", status.value("result", "the goal is reached"));
    else if (phase == "Failed") events_->Warning(c.ar, "RunFailed", status.value("message", ""));
    else if (phase == "Degraded") events_->Warning(c.ar, "Degraded", status.value("message", ""));
    else if (phase == "Suspended") events_->Normal(c.ar, "Suspended", "scaled to zero; the volume is kept");
    else if (old_phase == "Suspended") events_->Normal(c.ar, "Resumed", "scaled back to one");
  }
  if (Status st = WriteStatus(c, status); !st.ok()) return {st};

  // Look again while a worker runs, to follow its progress (it may still take messages after
  // its goal) and notice idleness.
  const bool running = c.seen.statefulset && c.seen.pod && !c.seen.suspended && c.seen.hibernation.is_null();
  if (running && (requeue.count() == 0 || requeue > options_.status_interval)) requeue = options_.status_interval;
  return {Status::Ok(), requeue, phase};
}

ReconcileOutcome AgentRunReconciler::Finalize(Context& c) {
  if (!HasFinalizer(c.ar)) return {};
  // Stop the worker first (its pod drains on SIGTERM) and keep the AgentRun until its pod is
  // gone, so `kubectl delete ar` returns once nothing runs; the other objects go by garbage
  // collection, the volume by its retention policy.
  const std::string key = c.ns + "/" + StatefulSetName(c.name);
  if (auto sts = caches_.statefulsets->Get(key); sts && OwnedBy(*sts, c.owner.uid)) {
    if (!sts->value("metadata", json::object()).contains("deletionTimestamp")) {
      auto r = client_->Delete(kube::StatefulSets(), c.ns, StatefulSetName(c.name), kube::Propagation::kBackground);
      if (!r.ok() && r.error.code != 404) return {r.status()};
    }
    return {Status::Ok(), milliseconds(1000)};
  }
  if (auto pod = caches_.pods->Get(c.ns + "/" + PodName(c.name))) {
    workers_->Forget(options_.worker_address(pod->value("/status/podIP"_json_pointer, std::string()),
                                             options_.settings.control_port));
    return {Status::Ok(), milliseconds(1000)};
  }
  json finalizers = json::array();
  for (const auto& f : c.ar["metadata"].value("finalizers", json::array())) {
    if (f != kFinalizer) finalizers.push_back(f);
  }
  json patch = {{"metadata", {{"finalizers", finalizers}, {"resourceVersion", c.ar["metadata"].value("resourceVersion", "")}}}};
  auto r = client_->Patch(kube::AgentRuns(), c.ns, c.name, patch);
  if (!r.ok() && r.error.code != 404) return {r.status()};
  {
    std::lock_guard<std::mutex> lock(tokens_mu_);
    tokens_.erase(c.owner.uid);
  }
  {
    std::lock_guard<std::mutex> lock(claims_mu_);
    settled_claim_sizes_.erase(c.owner.uid);
  }
  log::Info("agentrun deleted", {{"agentrun", c.ns + "/" + c.name}});
  return {};
}

Status AgentRunReconciler::EnsureFinalizer(Context& c) {
  if (HasFinalizer(c.ar)) return Status::Ok();
  json finalizers = c.ar["metadata"].value("finalizers", json::array());
  finalizers.push_back(kFinalizer);
  json patch = {{"metadata", {{"finalizers", finalizers}, {"resourceVersion", c.ar["metadata"].value("resourceVersion", "")}}}};
  auto r = client_->Patch(kube::AgentRuns(), c.ns, c.name, patch);
  if (!r.ok()) return r.status();
  c.ar = r.value;
  caches_.agentruns->Observe(c.ar);
  return Status::Ok();
}

Status AgentRunReconciler::EnsureSecret(Context& c) {
  {
    std::lock_guard<std::mutex> lock(tokens_mu_);
    auto it = tokens_.find(c.owner.uid);
    // A CA not yet written is looked for again at once: the worker starts when it comes.
    const bool ca_known = !options_.settings.control_tls.enabled() || (it != tokens_.end() && !it->second.control_ca.empty());
    if (it != tokens_.end() && it->second.spec_hash == c.seen.spec_hash && ca_known &&
        std::chrono::steady_clock::now() - it->second.read_at < options_.secret_check_interval) {
      c.token = it->second.token;  // read lately
      c.secrets_hash = it->second.secrets_hash;
      c.control_ca = it->second.control_ca;
      return Status::Ok();
    }
  }
  Status s = ReadOrCreateSecret(c);
  if (s.ok()) s = HashReferencedSecrets(c);
  if (s.ok() && options_.settings.control_tls.enabled()) s = ReadControlCa(c);
  if (s.ok()) {
    std::lock_guard<std::mutex> lock(tokens_mu_);
    tokens_[c.owner.uid] = {c.token, c.secrets_hash, c.seen.spec_hash, c.control_ca, std::chrono::steady_clock::now()};
  }
  return s;
}

Status AgentRunReconciler::ReadControlCa(Context& c) {
  // Not in the secrets hash: a renewed certificate is re-read by the worker, not a reason to
  // roll its pod.
  auto got = client_->Get(kube::Secrets(), c.ns, ControlTlsSecretName(c.name));
  if (!got.ok()) {
    if (got.error.code == 404) return Status::Ok();
    return got.status();
  }
  auto ca = kube::DecodeBase64(got.value.value("/data"_json_pointer, json::object()).value(kControlTlsCaKey, ""));
  if (ca.ok()) c.control_ca = *ca;
  return Status::Ok();
}

Status AgentRunReconciler::HashReferencedSecrets(Context& c) {
  // The control token leads the hashed text: the annotation is on the pod template, which
  // more people may read than the Secrets, and without the token (64 random hex digits) no
  // one can test a guess of a weak API key against it.
  std::string text = "control-token=" + c.token + "\n";
  std::map<std::string, json> secrets;  // each read once per pass
  for (const auto& [name, key] : ReferencedSecretKeys(c.run->spec)) {
    if (!secrets.count(name)) {
      auto got = client_->Get(kube::Secrets(), c.ns, name);  // by name: never listed
      if (!got.ok() && got.error.code != 404) return got.status();
      secrets[name] = got.ok() ? got.value.value("data", json::object()) : json(nullptr);
    }
    const json& data = secrets[name];
    const bool present = data.is_object() && data.contains(key) && data[key].is_string();
    text += name + "/" + key + "=" + (present ? data[key].get<std::string>() : std::string("<missing>")) + "\n";
  }
  c.secrets_hash = Sha256Hex(text).substr(0, 16);
  return Status::Ok();
}

Status AgentRunReconciler::ReadOrCreateSecret(Context& c) {
  // Read by name, never listed: the operator is not allowed to see other Secrets.
  const std::string name = SecretName(c.name);
  auto got = client_->Get(kube::Secrets(), c.ns, name);
  if (!got.ok() && got.error.code != 404) return got.status();
  if (got.ok()) {
    if (!OwnedBy(got.value, c.owner.uid)) {
      c.seen.conflict = "Secret " + name + " exists and does not belong to this AgentRun";
      return FailedPrecondition(c.seen.conflict);
    }
    auto token = kube::DecodeBase64(got.value.value("/data/token"_json_pointer, std::string()));
    if (token.ok() && !token->empty()) {
      c.token = *token;
      json desired = DesiredSecret(*c.run, c.owner, c.token);
      if (IsSubset(desired, got.value)) return Status::Ok();
      json fixed = got.value;
      fixed["metadata"]["labels"] = desired["metadata"]["labels"];
      fixed["metadata"]["ownerReferences"] = desired["metadata"]["ownerReferences"];
      fixed["type"] = desired["type"];
      fixed["data"] = desired["data"];
      auto r = client_->Update(kube::Secrets(), c.ns, fixed);
      return r.status();
    }
  }
  c.token = RandomToken();
  if (c.token.empty()) return Internal("no randomness for the control token");
  json desired = DesiredSecret(*c.run, c.owner, c.token);
  if (got.ok()) {  // ours, but its token is gone: a new one (the pod picks it up on restart)
    desired["metadata"]["resourceVersion"] = got.value["metadata"].value("resourceVersion", "");
    return client_->Update(kube::Secrets(), c.ns, desired).status();
  }
  auto r = client_->Create(kube::Secrets(), c.ns, desired);
  if (!r.ok() && r.error.code == 409) return Unavailable("Secret " + name + " appeared meanwhile; looking again");
  return r.status();
}

Status AgentRunReconciler::CreateOrAdopt(Context& c, const kube::Resource& resource, kube::Informer* cache,
                                         const json& desired, json* found, bool* created) {
  const std::string name = desired["metadata"]["name"];
  auto r = client_->Create(resource, c.ns, desired);
  if (r.ok()) {
    cache->Observe(r.value);
    *found = r.value;
    *created = true;
    return Status::Ok();
  }
  if (r.error.code != 409) return r.status();
  // It exists but is not in the cache, which holds only objects labelled as ours: someone
  // else's, or ours with the label taken off.
  auto got = client_->Get(resource, c.ns, name);
  if (!got.ok()) return got.status();
  if (!OwnedBy(got.value, c.owner.uid)) {
    c.seen.conflict = desired.value("kind", "") + " " + name + " exists and does not belong to this AgentRun";
    return FailedPrecondition(c.seen.conflict);
  }
  if (got.value.value("metadata", json::object()).contains("deletionTimestamp")) {
    return Unavailable(desired.value("kind", "") + " " + name + " is being deleted; waiting to create it again");
  }
  // Taken back by its labels alone: the caller then compares the rest as for any object, so
  // fields the server will not change (a grown StatefulSet's claim template) are never sent.
  json patch = {{"metadata",
                 {{"labels", desired["metadata"]["labels"]},
                  {"resourceVersion", got.value.value("/metadata/resourceVersion"_json_pointer, std::string())}}}};
  auto patched = client_->Patch(resource, c.ns, name, patch);
  if (!patched.ok()) return patched.status();
  log::Info("took back an object that had lost its labels",
            {{"agentrun", c.ns + "/" + c.name}, {"object", desired.value("kind", "") + "/" + name}});
  cache->Observe(patched.value);
  *found = patched.value;
  *created = false;
  return Status::Ok();
}

Status AgentRunReconciler::EnsureObject(Context& c, const kube::Resource& resource, kube::Informer* cache,
                                        const json& desired) {
  const std::string name = desired["metadata"]["name"];
  std::optional<json> existing = cache->Get(c.ns + "/" + name);
  if (!existing) {
    json found;
    bool created = false;
    if (Status s = CreateOrAdopt(c, resource, cache, desired, &found, &created); !s.ok() || created) return s;
    existing = found;
  }
  if (!OwnedBy(*existing, c.owner.uid)) {
    c.seen.conflict = desired.value("kind", "") + " " + name + " exists and does not belong to this AgentRun";
    return FailedPrecondition(c.seen.conflict);
  }
  if (IsSubset(desired, *existing)) return Status::Ok();
  auto r = client_->Patch(resource, c.ns, name, DriftPatch(desired, *existing));
  if (!r.ok()) return r.status();
  log::Info("put drifted object back", {{"agentrun", c.ns + "/" + c.name}, {"object", desired.value("kind", "") + "/" + name}});
  cache->Observe(r.value);
  return Status::Ok();
}

Status AgentRunReconciler::EnsureStatefulSet(Context& c, int replicas) {
  json desired = DesiredStatefulSet(*c.run, c.owner, options_.settings, replicas, c.secrets_hash);
  const std::string name = StatefulSetName(c.name);
  std::optional<json> existing = caches_.statefulsets->Get(c.ns + "/" + name);
  if (!existing) {
    json found;
    bool created = false;
    Status s = CreateOrAdopt(c, kube::StatefulSets(), caches_.statefulsets, desired, &found, &created);
    if (!s.ok()) return s;
    c.seen.statefulset = found;
    if (created) return s;
    existing = found;  // taken back: compared below like any other
  }
  if (!OwnedBy(*existing, c.owner.uid)) {
    c.seen.conflict = "StatefulSet " + name + " exists and does not belong to this AgentRun";
    return FailedPrecondition(c.seen.conflict);
  }
  c.seen.statefulset = *existing;
  if (existing->value("metadata", json::object()).contains("deletionTimestamp")) {
    return Unavailable("StatefulSet " + name + " is being deleted; waiting to create it again");
  }
  // The claim template keeps the size it was created with (a real server refuses to change
  // it); a larger spec.storage.size grows the claim itself.
  const std::string want_size = ClaimSize(desired);
  if (QuantityValue(want_size) != QuantityValue(ClaimSize(*existing))) GrowClaim(c, want_size);
  json comparable = desired;
  comparable["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = ClaimSize(*existing);
  // A server with the StatefulSetAutoDeletePVC feature off drops the retention policy; asking
  // for it again would be a write on every pass that changes nothing.
  if (!existing->contains("/spec/persistentVolumeClaimRetentionPolicy"_json_pointer)) {
    comparable["spec"].erase("persistentVolumeClaimRetentionPolicy");
    static std::once_flag warned;
    std::call_once(warned, [] {
      log::Warn("the API server does not keep persistentVolumeClaimRetentionPolicy (StatefulSetAutoDeletePVC off); "
                "volumes are kept when an AgentRun is deleted or suspended, whatever spec.storage says");
    });
  }

  if (!IsSubset(ImmutableParts(comparable), ImmutableParts(*existing))) {
    // Fields a StatefulSet cannot change: delete it but not its pod's volume (orphan), and
    // create it anew on the next pass.
    auto r = client_->Delete(kube::StatefulSets(), c.ns, name, kube::Propagation::kOrphan);
    if (!r.ok() && r.error.code != 404) return r.status();
    caches_.statefulsets->Observe(*existing, /*deleted=*/true);
    events_->Normal(c.ar, "Recreated", "StatefulSet " + name + " recreated to change immutable fields; the volume is kept");
    return Unavailable("StatefulSet " + name + " is being recreated");
  }
  json mutable_desired = comparable;
  for (const char* k : {"selector", "serviceName", "volumeClaimTemplates"}) mutable_desired["spec"].erase(k);
  if (IsSubset(mutable_desired, *existing)) return Status::Ok();
  auto r = client_->Patch(kube::StatefulSets(), c.ns, name, DriftPatch(mutable_desired, *existing));
  if (!r.ok()) return r.status();
  caches_.statefulsets->Observe(r.value);
  c.seen.statefulset = r.value;
  return Status::Ok();
}

void AgentRunReconciler::GrowClaim(Context& c, const std::string& want_size) {
  // Each size asked for is settled once per AgentRun (grown, already that large, refused as
  // a shrink, or refused by the server): the template keeps differing from the spec for the
  // rest of the claim's life, and that must not cost a read or a write on every pass.
  {
    std::lock_guard<std::mutex> lock(claims_mu_);
    auto it = settled_claim_sizes_.find(c.owner.uid);
    if (it != settled_claim_sizes_.end() && it->second == want_size) return;
  }
  auto settle = [&] {
    std::lock_guard<std::mutex> lock(claims_mu_);
    settled_claim_sizes_[c.owner.uid] = want_size;
  };
  // Compared with the claim itself. Failures are reported as events and never stop the
  // reconcile: suspend and status must go on.
  auto pvc = client_->Get(kube::PersistentVolumeClaims(), c.ns, ClaimName(c.name));
  if (!pvc.ok()) return;  // not made yet (the pod has not started): it gets the template's size
  const std::string have_size = pvc.value.value("/spec/resources/requests/storage"_json_pointer, std::string());
  const auto want = QuantityValue(want_size), have = QuantityValue(have_size);
  if (!want || !have) return;
  if (*want <= *have) {
    if (*want < *have) {
      events_->Warning(c.ar, "StorageShrinkRefused", "spec.storage.size " + want_size + " is smaller than the volume's " +
                                                         have_size + "; a volume cannot shrink, it stays " + have_size);
    }
    settle();
    return;
  }
  json patch = {{"spec", {{"resources", {{"requests", {{"storage", want_size}}}}}}}};
  auto r = client_->Patch(kube::PersistentVolumeClaims(), c.ns, ClaimName(c.name), patch);
  if (r.ok()) {
    events_->Normal(c.ar, "StorageResized", "volume claim " + ClaimName(c.name) + " grown from " + have_size + " to " + want_size);
    settle();
    return;
  }
  events_->Warning(c.ar, "StorageResizeFailed", "volume claim " + ClaimName(c.name) + " could not grow to " + want_size +
                                                    " (does its storage class allow expansion?): " + r.error.message);
  // Refused (403 by the resize admission, 422 by validation): asked again only when the
  // size changes or the operator restarts. Anything else (429, 5xx, a timeout) is retried.
  if (r.error.code == 403 || r.error.code == 422) settle();
}

Status AgentRunReconciler::ReplaceStuckPod(Context& c) {
  // A StatefulSet's rolling update waits for the old pod to be Ready before replacing it,
  // so a pod crash-looping on a bad spec would keep the fixed one from ever starting. Such a
  // pod is deleted; the StatefulSet makes it again from the new template.
  if (!c.seen.pod || !c.seen.statefulset || PodReady(*c.seen.pod)) return Status::Ok();
  const json& pod = *c.seen.pod;
  const json& sts = *c.seen.statefulset;
  // Only with a status that has seen the current template: an older one would call the
  // new pod "old".
  if (sts.value("/status/observedGeneration"_json_pointer, int64_t{0}) < sts.value("/metadata/generation"_json_pointer, int64_t{0})) {
    return Status::Ok();
  }
  const std::string update = sts.value("/status/updateRevision"_json_pointer, std::string());
  const std::string revision = pod.value("/metadata/labels"_json_pointer, json::object()).value("controller-revision-hash", "");
  if (update.empty() || revision.empty() || revision == update || pod["metadata"].contains("deletionTimestamp")) {
    return Status::Ok();
  }
  auto r = client_->Delete(kube::Pods(), c.ns, PodName(c.name));
  if (!r.ok() && r.error.code != 404) return r.status();
  events_->Normal(c.ar, "StuckPodReplaced", "pod " + PodName(c.name) + " was not ready on an old revision; deleted so the new spec can start");
  return Status::Ok();
}

void AgentRunReconciler::ReadWorker(Context& c) {
  auto pod = caches_.pods->Get(c.ns + "/" + PodName(c.name));
  if (!pod || !OwnedByStatefulSet(*pod, StatefulSetName(c.name))) return;
  c.seen.pod = *pod;
  const std::string ip = pod->value("/status/podIP"_json_pointer, std::string());
  ControlTls tls;
  if (options_.settings.control_tls.enabled()) {
    if (c.control_ca.empty()) {
      // The pod cannot start before the Secret exists (the kubelet waits for the volume); an
      // issuer that leaves ca.crt out (ACME, say) gives the operator nothing to check with.
      c.seen.control_tls_waiting = "waiting for cert-manager to issue Certificate " + CertificateName(c.name) +
                                   " into Secret " + ControlTlsSecretName(c.name) + " (with a ca.crt)";
      return;
    }
    tls = {c.control_ca, ControlTlsServerName(c.owner)};
  }
  if (ip.empty() || !PodReady(*pod)) return;
  auto status = workers_->Read(options_.worker_address(ip, options_.settings.control_port), c.token, tls);
  if (status.status().code() == StatusCode::kPermissionDenied ||
      (tls.enabled() && !status.ok() && !ControlTlsHint(status.status().message(), tls).empty())) {
    std::lock_guard<std::mutex> lock(tokens_mu_);
    tokens_.erase(c.owner.uid);  // the Secret (or the CA) changed: read it again next time
  }
  if (!status.ok()) {
    log::Debug("worker did not answer", {{"agentrun", c.ns + "/" + c.name}, {"error", status.status().message()}});
    return;
  }
  // A pod still running the previous spec answers for the old run: not this one's progress.
  if (status->spec_hash() != c.seen.spec_hash) return;
  c.seen.worker = *status;
}

void AgentRunReconciler::DecideHibernation(Context& c, milliseconds* requeue) {
  const json old = c.ar.value("/status/hibernation"_json_pointer, json());
  const int64_t now = WallNowMillis();
  if (old.is_object()) {
    const std::string wake_at = old.value("wakeAt", "");
    // Any change to the spec wakes it, the agent's or how it is run (metadata.generation).
    const bool spec_changed = old.value("generation", int64_t{0}) != c.ar.value("/metadata/generation"_json_pointer, int64_t{0});
    const bool timeout_removed = !c.run->spec.deployment.idle_timeout_seconds;
    const int64_t wake_ms = wake_at.empty() ? -1 : ParseRfc3339(wake_at);
    if (spec_changed || timeout_removed || (wake_ms >= 0 && now >= wake_ms)) {
      events_->Normal(c.ar, "Woken", spec_changed ? "the spec changed" : timeout_removed ? "idleTimeoutSeconds was removed" : "a scheduled wake-up is due");
      return;  // hibernation stays null: scale back to one
    }
    c.seen.hibernation = old;
    if (wake_ms >= 0) *requeue = milliseconds(std::max<int64_t>(wake_ms - now, 1000));
    return;
  }
  const auto& timeout = c.run->spec.deployment.idle_timeout_seconds;
  if (!timeout || !c.seen.worker || c.seen.worker->phase() != worker::v1::PHASE_IDLE) return;
  if (c.seen.worker->inbox_depth() > 0 || c.seen.worker->idle_since_ms() <= 0) return;
  // Idle since the worker said so, but never longer than its pod has run: a woken agent
  // gets a whole idle window before it sleeps again.
  int64_t idle_since = c.seen.worker->idle_since_ms();
  if (c.seen.pod) {
    idle_since = std::max(idle_since, ParseRfc3339(c.seen.pod->value("/metadata/creationTimestamp"_json_pointer, std::string())));
  }
  const int64_t idle_ms = now - idle_since;
  if (idle_ms < *timeout * 1000) {
    *requeue = milliseconds(*timeout * 1000 - idle_ms + 500);
    return;
  }
  // Asleep until the next cron prompt (a heartbeat with nothing queued does no work, so it
  // wakes nobody), or until the spec changes.
  int64_t wake = -1;
  if (c.run->spec.schedule) {
    for (const auto& cron : c.run->spec.schedule->cron) {
      auto schedule = CronSchedule::Parse(cron.schedule);
      if (!schedule.ok()) continue;
      if (auto next = schedule->Next(now); next && (wake < 0 || *next < wake)) wake = *next;
    }
  }
  c.seen.hibernation = {{"since", Rfc3339(now)}, {"generation", c.ar.value("/metadata/generation"_json_pointer, int64_t{0})}};
  if (wake >= 0) c.seen.hibernation["wakeAt"] = Rfc3339(wake);
  events_->Normal(c.ar, "Hibernated", "idle for " + std::to_string(idle_ms / 1000) + "s; scaled to zero until " +
                                          (wake >= 0 ? Rfc3339(wake) : std::string("the spec changes")));
  if (wake >= 0) *requeue = milliseconds(std::max<int64_t>(wake - now, 1000));
}

Status AgentRunReconciler::WriteStatus(Context& c, const json& status) {
  if (c.ar.value("status", json()) == status) return Status::Ok();
  json updated = c.ar;
  updated["status"] = status;
  auto r = client_->UpdateStatus(kube::AgentRuns(), c.ns, updated);
  if (!r.ok()) return r.status();
  c.ar = r.value;
  caches_.agentruns->Observe(c.ar);
  return Status::Ok();
}

}  // namespace carapace::controller
