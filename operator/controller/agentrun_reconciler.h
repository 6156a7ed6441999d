// The AgentRun reconciler: level-triggered and idempotent. It reads what is (from the
// informers' caches, and the worker's report), computes what should be (desired_objects),
// makes the difference (create, patch drift back, recreate a StatefulSet whose immutable
// fields changed with orphan propagation so the volume stays, grow the volume claim), and
// writes status only when it changed. It never assumes it saw every event.
//
// Thread-safety: Reconcile may run on several workers at once, for different keys (the
// work queue never hands one key to two workers).
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <string>

#include "common/status.h"
#include "common/telemetry/tracing.h"
#include "operator/controller/desired_objects.h"
#include "operator/controller/worker_status_client.h"
#include "operator/kube/event_recorder.h"
#include "operator/kube/informer.h"
#include "operator/kube/rest_client.h"

namespace carapace::controller {

// The caches the reconciler reads instead of the API server.
struct Caches {
  kube::Informer* agentruns = nullptr;
  kube::Informer* statefulsets = nullptr;
  kube::Informer* configmaps = nullptr;
  kube::Informer* services = nullptr;
  kube::Informer* pods = nullptr;
  kube::Informer* networkpolicies = nullptr;  // with --network-policy only
  kube::Informer* certificates = nullptr;     // with --worker-tls-issuer only
};

struct ReconcilerOptions {
  OperatorSettings settings;
  // How often a running agent's worker is asked for its progress.
  std::chrono::milliseconds status_interval{10000};
  // How often the Secrets an AgentRun refers to (and its control token) are read again by
  // name, to notice a rotation (docs/operations.md): the operator may not list or watch
  // Secrets, so it looks. A changed spec looks at once.
  std::chrono::milliseconds secret_check_interval{60000};
  // The worker's control address for a pod IP; tests run workers on loopback addresses.
  std::function<std::string(const std::string& pod_ip, int port)> worker_address = [](const std::string& ip, int port) {
    return (ip.find(':') != std::string::npos ? "[" + ip + "]" : ip) + ":" + std::to_string(port);  // IPv6 in []
  };
};

struct ReconcileOutcome {
  Status status = Status::Ok();                // not Ok: re-queued with backoff
  std::chrono::milliseconds requeue_after{0};  // > 0: look again after this long
  std::string phase = {};                      // the phase written (for the phase gauge)
};

class AgentRunReconciler {
 public:
  AgentRunReconciler(kube::RestClient* client, Caches caches, WorkerStatusReader* workers,
                     kube::EventRecorder* events, ReconcilerOptions options);

  // `key` is "namespace/name". With tracing on, each call is a span ("reconcile AgentRun")
  // naming the AgentRun (namespace, name, uid, generation) and what came of it.
  ReconcileOutcome Reconcile(const std::string& key);

 private:
  ReconcileOutcome ReconcileKey(const std::string& key, telemetry::Span& span);
  struct Context;
  ReconcileOutcome Finalize(Context& c);
  Status EnsureFinalizer(Context& c);
  Status EnsureSecret(Context& c);
  Status ReadOrCreateSecret(Context& c);
  // c.secrets_hash from the referenced Secrets, read by name (a missing one counts as missing:
  // the pod waits for it, and its arrival rolls the pod).
  Status HashReferencedSecrets(Context& c);
  // c.control_ca from the ca.crt of the control API's certificate Secret (control_tls.h),
  // read by name; "" while cert-manager has not written it.
  Status ReadControlCa(Context& c);
  Status EnsureObject(Context& c, const kube::Resource& resource, kube::Informer* cache, const nlohmann::json& desired);
  // Creates `desired` (*created = true); when it exists already but is not cached (not
  // labelled as ours), takes it back by its labels if it is ours (*created = false), else
  // records a name conflict. *found is the object as the server now has it.
  Status CreateOrAdopt(Context& c, const kube::Resource& resource, kube::Informer* cache, const nlohmann::json& desired,
                       nlohmann::json* found, bool* created);
  Status EnsureStatefulSet(Context& c, int replicas);
  void GrowClaim(Context& c, const std::string& want_size);
  Status ReplaceStuckPod(Context& c);
  void ReadWorker(Context& c);
  void DecideHibernation(Context& c, std::chrono::milliseconds* requeue);
  Status WriteStatus(Context& c, const nlohmann::json& status);

  kube::RestClient* client_;
  Caches caches_;
  WorkerStatusReader* workers_;
  kube::EventRecorder* events_;
  ReconcilerOptions options_;
  // Control tokens and the hash of the Secret data the worker reads, by AgentRun uid, so a
  // running agent's status poll does not read its Secrets every time: read again after
  // secret_check_interval, for another spec, or when the worker refuses the token.
  struct CachedToken {
    std::string token;
    std::string secrets_hash;
    std::string spec_hash;
    std::string control_ca;  // with --worker-tls-issuer: the CA the worker's certificate chains to
    std::chrono::steady_clock::time_point read_at;
  };
  std::mutex tokens_mu_;
  std::map<std::string, CachedToken> tokens_;
  // By AgentRun uid, the claim size last settled (see GrowClaim).
  std::mutex claims_mu_;
  std::map<std::string, std::string> settled_claim_sizes_;
};

// Helpers the reconciler is built from, exposed for tests.
// Every field of `desired` is in `actual` with the same value (the server may add more).
bool IsSubset(const nlohmann::json& desired, const nlohmann::json& actual);

}  // namespace carapace::controller
