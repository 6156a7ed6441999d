// TLS on the workers' control API when the operator runs with --worker-tls-issuer
// (docs/operations.md, "TLS on the control API"): a cert-manager Certificate per AgentRun for
// its Service's DNS names, whose Secret the worker serves from (--tls-dir) and whose ca.crt
// the operator checks the worker against. The bearer token stays required.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/agentrun/spec.h"
#include "common/status.h"

namespace carapace::controller {

struct Owner;
struct OperatorSettings;

struct ControlTlsSettings {
  std::string issuer_kind;  // Issuer (in the AgentRun's namespace) or ClusterIssuer; "" when off
  std::string issuer_name;
  bool enabled() const { return !issuer_name.empty(); }
};

// Parses --worker-tls-issuer KIND/NAME. InvalidArgument naming what is wrong otherwise.
Result<ControlTlsSettings> ParseTlsIssuer(const std::string& text);

// Where the worker finds the Secret's files, and the key of the CA in it.
inline constexpr char kControlTlsMountDir[] = "/etc/carapace/control-tls";
inline constexpr char kControlTlsVolume[] = "control-tls";
inline constexpr char kControlTlsCaKey[] = "ca.crt";

std::string CertificateName(const std::string& agentrun);       // NAME-control-tls
std::string ControlTlsSecretName(const std::string& agentrun);  // NAME-control-tls, written by cert-manager
// The name the worker's certificate carries and the operator checks: NAME.NAMESPACE.svc.
std::string ControlTlsServerName(const Owner& owner);

// The Certificate (cert-manager.io/v1), owned by the AgentRun.
nlohmann::json DesiredCertificate(const AgentRun& run, const Owner& owner, const OperatorSettings& settings);

// Mounts the Secret into the worker (read-only) and serves the control API from it.
// `pod_spec` is the StatefulSet's pod template spec, its worker the first container.
void AddControlTls(const Owner& owner, nlohmann::json* pod_spec);

}  // namespace carapace::controller
