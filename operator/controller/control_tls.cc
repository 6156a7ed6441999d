// The Certificate and pod settings of TLS on the control API (see control_tls.h).
#include "operator/controller/control_tls.h"

#include "operator/controller/desired_objects.h"

namespace carapace::controller {

using json = nlohmann::json;

Result<ControlTlsSettings> ParseTlsIssuer(const std::string& text) {
  const size_t slash = text.find('/');
  if (slash == std::string::npos) {
    return InvalidArgument("--worker-tls-issuer takes KIND/NAME (Issuer/NAME or ClusterIssuer/NAME), got \"" + text +
                           "\"");
  }
  ControlTlsSettings s{text.substr(0, slash), text.substr(slash + 1)};
  if (s.issuer_kind != "Issuer" && s.issuer_kind != "ClusterIssuer") {
    return InvalidArgument("--worker-tls-issuer: the kind must be Issuer or ClusterIssuer, got \"" + s.issuer_kind +
                           "\"");
  }
  // A cert-manager issuer is named like any object: a DNS-1123 subdomain.
  bool ok = !s.issuer_name.empty() && s.issuer_name.size() <= 253;
  for (char ch : s.issuer_name)
    ok = ok && ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.');
  if (!ok) {
    return InvalidArgument(
        "--worker-tls-issuer: the name must be a DNS-1123 subdomain (lower-case letters, digits, "
        "'-' and '.'), got \"" +
        s.issuer_name + "\"");
  }
  return s;
}

std::string CertificateName(const std::string& agentrun) { return agentrun + "-control-tls"; }
std::string ControlTlsSecretName(const std::string& agentrun) { return agentrun + "-control-tls"; }
std::string ControlTlsServerName(const Owner& owner) { return ServiceName(owner.name) + "." + owner.ns + ".svc"; }

json DesiredCertificate(const AgentRun& /*run*/, const Owner& owner, const OperatorSettings& settings) {
  const std::string svc = ControlTlsServerName(owner);
  json metadata = {{"name", CertificateName(owner.name)},
                   {"namespace", owner.ns},
                   {"labels", Labels(owner.name)},
                   {"ownerReferences", json::array({OwnerReference(owner)})}};
  return {{"apiVersion", "cert-manager.io/v1"},
          {"kind", "Certificate"},
          {"metadata", metadata},
          {"spec",
           {{"secretName", ControlTlsSecretName(owner.name)},
            // Labelled as the AgentRun's other objects, so people (and kubectl -l) find it.
            {"secretTemplate", {{"labels", Labels(owner.name)}}},
            {"dnsNames", json::array({svc, svc + ".cluster.local"})},
            {"usages", json::array({"digital signature", "key encipherment", "server auth"})},
            // A new key with every renewal: the worker re-reads both files.
            {"privateKey", {{"rotationPolicy", "Always"}}},
            {"issuerRef",
             {{"group", "cert-manager.io"},
              {"kind", settings.control_tls.issuer_kind},
              {"name", settings.control_tls.issuer_name}}}}}};
}

void AddControlTls(const Owner& owner, json* pod_spec) {
  // No items list: cert-manager's three keys, of which the worker reads tls.crt and tls.key.
  // 0440 with the pod's fsGroup: readable by the non-root worker, by no one else.
  (*pod_spec)["volumes"].push_back(
      {{"name", kControlTlsVolume},
       {"secret", {{"secretName", ControlTlsSecretName(owner.name)}, {"defaultMode", 0440}}}});
  json& worker = (*pod_spec)["containers"][0];
  worker["volumeMounts"].push_back(
      {{"name", kControlTlsVolume}, {"mountPath", kControlTlsMountDir}, {"readOnly", true}});
  worker["args"].push_back(std::string("--tls-dir=") + kControlTlsMountDir);
}

}  // namespace carapace::controller
