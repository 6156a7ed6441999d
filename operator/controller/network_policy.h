// The NetworkPolicy an AgentRun's pod gets when the operator runs with --network-policy
// (docs/operations.md, "Isolate an agent"): what may reach the worker, and what it may reach.
//
// Ingress: the control port from the operator's pods (and namespaces the operator is told),
// the metrics port from the monitoring namespaces. Probes come from the kubelet, which
// NetworkPolicies do not govern.
// Egress: DNS; each endpoint the spec names (models and their fallbacks, the embedding and
// summary models, MCP servers, http tool allowedHosts, the OTLP endpoint) where a policy can
// say it: an IP address (that address and port), an in-cluster Service written
// NAME.NAMESPACE.svc[.cluster.local] (that namespace; a Service may map its port to another
// on the pods, so any port), or a bare NAME (this namespace). Other host names cannot be
// written in a NetworkPolicy: they are listed in the policy's annotation
// carapace.dev/unexpressed-egress, and the AgentRun's annotation carapace.dev/egress-cidrs
// ("203.0.113.0/24,2001:db8::/32") opens CIDRs for them (the escape hatch).
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/agentrun/spec.h"

namespace carapace::controller {

struct Owner;
struct OperatorSettings;

struct NetworkPolicySettings {
  bool enabled = false;
  std::string operator_namespace;                         // the operator's pods, for the control port
  std::map<std::string, std::string> operator_pod_labels;  // their labels
  std::vector<std::string> control_namespaces;            // more namespaces allowed to the control port
  std::vector<std::string> metrics_namespaces;            // allowed to the metrics port (Prometheus)
};

inline constexpr char kEgressCidrsAnnotation[] = "carapace.dev/egress-cidrs";
inline constexpr char kUnexpressedEgressAnnotation[] = "carapace.dev/unexpressed-egress";
inline constexpr char kEgressWarningsAnnotation[] = "carapace.dev/egress-warnings";

// The policy, as the API server stores it (defaults filled, so a comparison finds no drift).
// `agentrun_annotations` are the AgentRun's (for kEgressCidrsAnnotation). What could not be
// used (a host no rule can name, a malformed CIDR) is said in the policy's annotations
// kUnexpressedEgressAnnotation and kEgressWarningsAnnotation ("" when none), where
// `kubectl describe networkpolicy` shows it.
nlohmann::json DesiredNetworkPolicy(const AgentRun& run, const Owner& owner, const OperatorSettings& settings,
                                    const nlohmann::json& agentrun_annotations);

std::string NetworkPolicyName(const std::string& agentrun);

}  // namespace carapace::controller
