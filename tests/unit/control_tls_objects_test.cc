// The operator's objects for TLS on the control API (--worker-tls-issuer): the cert-manager
// Certificate each AgentRun gets, the pod that serves its Secret, and the flag's parsing.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include "common/agentrun/spec.h"
#include "operator/controller/control_tls.h"
#include "operator/controller/desired_objects.h"

using namespace carapace;
using namespace carapace::controller;
using Catch::Matchers::ContainsSubstring;
using nlohmann::json;

namespace {

const Owner kOwner{"researcher", "agents", "6f1c2a9e-0000-4000-8000-000000000001"};

AgentRun Run() {
  auto run = ParseAgentRun(R"({"apiVersion": "carapace.dev/v1alpha1", "kind": "AgentRun",
    "metadata": {"name": "researcher", "namespace": "agents"},
    "spec": {"goal": "g", "model": {"backend": "scripted", "script": [{"text": "done"}]}}})",
                           "test");
  REQUIRE(run.ok());
  return *run;
}

OperatorSettings WithTls() {
  OperatorSettings s;
  auto tls = ParseTlsIssuer("ClusterIssuer/agents-ca");
  REQUIRE(tls.ok());
  s.control_tls = *tls;
  return s;
}

}  // namespace

TEST_CASE("an AgentRun's Certificate names its Service, the issuer given, and a Secret the worker mounts", "[tls]") {
  const json cert = DesiredCertificate(Run(), kOwner, WithTls());
  const json expected = json::parse(R"({
    "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
    "metadata": {"name": "researcher-control-tls", "namespace": "agents",
                 "labels": {"app.kubernetes.io/name": "carapace-worker", "app.kubernetes.io/instance": "researcher",
                            "app.kubernetes.io/managed-by": "carapace-operator", "carapace.dev/agentrun": "researcher"},
                 "ownerReferences": [{"apiVersion": "carapace.dev/v1alpha1", "kind": "AgentRun", "name": "researcher",
                                      "uid": "6f1c2a9e-0000-4000-8000-000000000001", "controller": true,
                                      "blockOwnerDeletion": true}]},
    "spec": {"secretName": "researcher-control-tls",
             "secretTemplate": {"labels": {"app.kubernetes.io/name": "carapace-worker",
                                           "app.kubernetes.io/instance": "researcher",
                                           "app.kubernetes.io/managed-by": "carapace-operator",
                                           "carapace.dev/agentrun": "researcher"}},
             "dnsNames": ["researcher.agents.svc", "researcher.agents.svc.cluster.local"],
             "usages": ["digital signature", "key encipherment", "server auth"],
             "privateKey": {"rotationPolicy": "Always"},
             "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "agents-ca"}}})");
  INFO(cert.dump(2));
  CHECK(cert == expected);
  CHECK(ControlTlsServerName(kOwner) == "researcher.agents.svc");
}

TEST_CASE("with TLS the worker's pod mounts the certificate's Secret read-only and serves from it", "[tls]") {
  const json with = DesiredStatefulSet(Run(), kOwner, WithTls(), 1);
  const json pod = with["spec"]["template"]["spec"];
  const json worker = pod["containers"][0];
  CHECK(pod["volumes"].back() ==
        json({{"name", "control-tls"}, {"secret", {{"secretName", "researcher-control-tls"}, {"defaultMode", 0440}}}}));
  CHECK(worker["volumeMounts"].back() ==
        json({{"name", "control-tls"}, {"mountPath", "/etc/carapace/control-tls"}, {"readOnly", true}}));
  CHECK(worker["args"].back() == "--tls-dir=/etc/carapace/control-tls");

  // Without the flag nothing of it is there.
  const json without = DesiredStatefulSet(Run(), kOwner, OperatorSettings(), 1);
  CHECK(without.dump().find("control-tls") == std::string::npos);
  CHECK(without.dump().find("--tls-dir") == std::string::npos);
}

TEST_CASE("the flag --worker-tls-issuer takes Issuer/NAME or ClusterIssuer/NAME and names what else is wrong", "[tls]") {
  auto issuer = ParseTlsIssuer("Issuer/agents-ca");
  REQUIRE(issuer.ok());
  CHECK(issuer->issuer_kind == "Issuer");
  CHECK(issuer->issuer_name == "agents-ca");
  CHECK(issuer->enabled());
  CHECK_FALSE(ControlTlsSettings().enabled());
  for (auto [text, says] : std::vector<std::pair<std::string, std::string>>{
           {"agents-ca", "takes KIND/NAME"},
           {"Certificate/agents-ca", "the kind must be Issuer or ClusterIssuer, got \"Certificate\""},
           {"Issuer/", "a DNS-1123 subdomain"},
           {"Issuer/Agents_CA", "got \"Agents_CA\""}}) {
    auto r = ParseTlsIssuer(text);
    INFO(text);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kInvalidArgument);
    CHECK_THAT(r.status().message(), ContainsSubstring(says));
  }
}
