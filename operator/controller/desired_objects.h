// The objects an AgentRun should have, built by pure functions from the AgentRun and the
// operator's settings: a ConfigMap with the spec the worker reads, a Secret with the
// control-API token, a headless Service and a one-replica StatefulSet with the state volume.
// The reconciler compares these with what exists; tests compare them with golden JSON.
#pragma once

#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/agentrun/spec.h"
#include "operator/controller/control_tls.h"
#include "operator/controller/network_policy.h"

namespace carapace::controller {

// Settings of the operator that shape every AgentRun's objects.
struct OperatorSettings {
  std::string worker_image = "ghcr.io/carapace-dev/carapace-worker:0.1.0";  // unless spec.image
  int control_port = 7070;
  int http_port = 8080;
  int worker_grace_seconds = 30;  // the worker's drain on SIGTERM; the pod gets 15 s more
  // Set: workers export traces here (OTEL_EXPORTER_OTLP_ENDPOINT in their pods, with the
  // pod's name as a resource attribute). Empty: the pod template has no OTEL_* variables.
  std::string worker_otlp_endpoint;
  // --network-policy: a NetworkPolicy per AgentRun (network_policy.h).
  NetworkPolicySettings network_policy;
  // --worker-tls-issuer: TLS on the control API from a cert-manager Certificate (control_tls.h).
  ControlTlsSettings control_tls;
};

// Who owns the objects: the AgentRun as the API server knows it.
struct Owner {
  std::string name;
  std::string ns;
  std::string uid;
};

// Fixed places inside the worker's pod.
inline constexpr char kSpecMountDir[] = "/etc/carapace/spec";
inline constexpr char kSpecFileName[] = "agentrun.json";
inline constexpr char kTokenMountDir[] = "/etc/carapace/control";
inline constexpr char kTokenKey[] = "token";
inline constexpr char kStateMountDir[] = "/var/lib/carapace";
inline constexpr char kStateVolume[] = "state";
inline constexpr char kWorkerContainer[] = "worker";  // the pod's one container
// spec.storage.restoreFrom: the init container that restores the copy before the worker
// starts, the copy's claim as a volume, and where that is mounted.
inline constexpr char kRestoreContainer[] = "restore";
inline constexpr char kRestoreSourceVolume[] = "restore-source";
inline constexpr char kRestoreMountDir[] = "/restore-source";
inline constexpr char kCliPath[] = "/usr/local/bin/carapace";  // in the worker image (deploy/docker)
inline constexpr char kSpecHashAnnotation[] = "carapace.dev/spec-hash";
// On the pod template: a hash of the Secret data the worker reads (secret rotation rolls it).
inline constexpr char kSecretsHashAnnotation[] = "carapace.dev/secrets-hash";
inline constexpr char kAgentRunLabel[] = "carapace.dev/agentrun";
inline constexpr char kFinalizer[] = "carapace.dev/cleanup";
inline constexpr int kWorkerUid = 65532;  // the images' non-root user

// Object names, derived from the AgentRun's name.
std::string ConfigMapName(const std::string& agentrun);  // NAME-spec
std::string SecretName(const std::string& agentrun);     // NAME-control
std::string ServiceName(const std::string& agentrun);    // NAME
std::string StatefulSetName(const std::string& agentrun);  // NAME
std::string PodName(const std::string& agentrun);        // NAME-0
std::string ClaimName(const std::string& agentrun);      // state-NAME-0

// The labels on every object of an AgentRun; the selector is a subset that never changes.
nlohmann::json Labels(const std::string& agentrun);
nlohmann::json SelectorLabels(const std::string& agentrun);
nlohmann::json OwnerReference(const Owner& owner);

// Every model service the run talks to: spec.model, its fallbacks, the embedding model and
// the summary model.
std::vector<const ModelEndpointSpec*> ModelEndpoints(const AgentRunSpec& spec);

// The worker's state directory: one per AgentRun and restart generation. A changed agent
// spec is a new revision of the run in it (the worker records it); only a raised
// spec.restartGeneration starts a fresh run, in agent-restart-<N>, leaving the old one on the
// volume, readable and forkable.
std::string StateDir(const AgentRun& run);
// Where operators before spec revisions kept one state dir per spec hash.
std::string LegacyRunsDir();

nlohmann::json DesiredConfigMap(const AgentRun& run, const Owner& owner);
// `token` is the control-API token: random when first created, then kept.
nlohmann::json DesiredSecret(const AgentRun& run, const Owner& owner, const std::string& token);
nlohmann::json DesiredService(const AgentRun& run, const Owner& owner, const OperatorSettings& settings);
// `replicas` is 1, or 0 while suspended or hibernating. `secrets_hash` (of the Secret data
// the worker reads: ReferencedSecretKeys and the control token) goes on the pod template,
// so a rotated Secret rolls the pod; empty: no such annotation.
nlohmann::json DesiredStatefulSet(const AgentRun& run, const Owner& owner, const OperatorSettings& settings,
                                  int replicas, const std::string& secrets_hash = "");

// The Secret keys the spec's values come from (model keys, tool headers): (Secret, key).
std::set<std::pair<std::string, std::string>> ReferencedSecretKeys(const AgentRunSpec& spec);

}  // namespace carapace::controller
