// TLS on the workers' control API through the operator (--worker-tls-issuer), end to end: the
// operator asks cert-manager for a Certificate per AgentRun, the test plays cert-manager
// (cert-manager's Certificate CRD in the API double; a Secret with certificates the test makes
// with openssl), the process kubelet starts the worker with that Secret mounted, and the
// operator reads the worker's progress over TLS, checking it against the Secret's ca.crt.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
#include <fstream>
#include <nlohmann/json.hpp>

#include "operator/kube/config.h"
#include "tests/e2e/e2e_cluster.h"
#include "tests/support/child_process.h"
#include "tests/support/test_certs.h"
#include "tests/support/wait.h"

using namespace carapace::testing;
using Catch::Matchers::ContainsSubstring;
using nlohmann::json;

namespace {

constexpr const char* kAgent = R"(apiVersion: carapace.dev/v1alpha1
kind: AgentRun
metadata: {name: sealed, namespace: default}
spec:
  goal: say done
  model:
    backend: scripted
    script:
      - text: sealed and done
)";

// The condition of `type` in the AgentRun's status, or null.
json Condition(const json& ar, const std::string& type) {
  for (const auto& c : ar.value("/status/conditions"_json_pointer, json::array())) {
    if (c.value("type", "") == type) return c;
  }
  return nullptr;
}

}  // namespace

TEST_CASE(
    "with --worker-tls-issuer an agent gets a Certificate, its worker serves TLS, and the operator reads it "
    "over TLS",
    "[e2e][tls]") {
  Cluster cluster(1, nullptr, {"--worker-tls-issuer", "Issuer/agents-ca"});
  CommandResult crd = cluster.Kubectl(
      {"apply", "-f", std::string(CARAPACE_SOURCE_DIR) + "/tests/support/cert_manager_certificates_crd.yaml"});
  INFO(crd.err);
  REQUIRE(crd.exit_code == 0);
  // The CRD holds a Certificate to what cert-manager's does: no Secret named, no issuer, refused.
  CommandResult incomplete = cluster.TryApply(
      "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: incomplete, namespace: default}\n"
      "spec: {dnsNames: [a.default.svc], issuerRef: {kind: Issuer}}\n");
  CHECK(incomplete.exit_code != 0);
  CHECK_THAT(incomplete.err, ContainsSubstring("spec.secretName: Required value"));
  CHECK_THAT(incomplete.err, ContainsSubstring("spec.issuerRef.name: Required value"));
  cluster.Apply(kAgent);

  // The Certificate, owned by the AgentRun, for its Service's names, from the issuer named.
  json cert;
  REQUIRE(WaitFor([&] {
    auto got = cluster.api().Get("cert-manager.io/v1", "certificates", "default", "sealed-control-tls");
    if (got.ok()) cert = *got;
    return got.ok();
  }));
  const json ar = cluster.GetAr("sealed");
  CHECK(cert["metadata"]["ownerReferences"][0]["uid"] == ar["metadata"]["uid"]);
  CHECK(cert["spec"]["secretName"] == "sealed-control-tls");
  CHECK(cert["spec"]["dnsNames"] == json::array({"sealed.default.svc", "sealed.default.svc.cluster.local"}));
  CHECK(cert["spec"]["issuerRef"] == json({{"group", "cert-manager.io"}, {"kind", "Issuer"}, {"name", "agents-ca"}}));
  CHECK(cert["spec"]["usages"] == json::array({"digital signature", "key encipherment", "server auth"}));

  // Until cert-manager writes the Secret, the pod cannot start, and the AgentRun says why.
  CHECK(WaitFor([&] {
    const json ready = Condition(cluster.GetAr("sealed"), "Ready");
    return ready.is_object() && ready.value("reason", "") == "WaitingForCertificate";
  }));
  const json waiting = Condition(cluster.GetAr("sealed"), "Ready");
  CHECK_THAT(waiting.value("message", ""), ContainsSubstring("Secret sealed-control-tls"));
  auto sts = cluster.api().Get("apps/v1", "statefulsets", "default", "sealed");
  REQUIRE(sts.ok());
  CHECK((*sts)["spec"]["template"]["spec"]["containers"][0]["args"].dump().find(
            "--tls-dir=/etc/carapace/control-tls") != std::string::npos);

  // cert-manager issues: a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt.
  TestCa ca(cluster.dir().Sub("agents-ca"), "agents-ca");
  std::vector<std::string> names;
  for (const auto& n : cert["spec"]["dnsNames"]) names.push_back(n);
  CertFiles files = ca.Issue(names, {}, "5005");
  json data;
  for (const auto& [key, pem] : files) data[key] = carapace::kube::EncodeBase64(pem);
  REQUIRE(cluster.api()
              .Create("v1", "secrets", "default",
                      {{"apiVersion", "v1"},
                       {"kind", "Secret"},
                       {"metadata", {{"name", "sealed-control-tls"}, {"namespace", "default"}}},
                       {"type", "kubernetes.io/tls"},
                       {"data", data}})
              .ok());

  // The phase comes from the worker's own status, which the operator can only read over TLS.
  REQUIRE(cluster.WaitForPhase("sealed", "Succeeded"));
  CHECK(cluster.GetAr("sealed")["status"]["result"] == "sealed and done");

  // A person reaches the worker the same way: the CA from the Secret, the Service's name.
  auto pod = cluster.api().Get("v1", "pods", "default", "sealed-0");
  REQUIRE(pod.ok());
  const std::string address = pod->value("/status/podIP"_json_pointer, std::string()) + ":7070";
  auto secret = cluster.api().Get("v1", "secrets", "default", "sealed-control");
  REQUIRE(secret.ok());
  auto token = carapace::kube::DecodeBase64((*secret)["data"]["token"].get<std::string>());
  REQUIRE(token.ok());
  const std::string token_file = cluster.dir().Sub("sealed.token");
  std::ofstream(token_file) << *token;
  CommandResult tls = RunCommand({CARAPACE_BIN, "status", "--worker", address, "--token-file", token_file, "--tls-ca",
                                  ca.cert_path(), "--tls-server-name", "sealed.default.svc"});
  INFO(tls.err);
  CHECK(tls.exit_code == 0);
  CommandResult plain = RunCommand({CARAPACE_BIN, "status", "--worker", address, "--token-file", token_file});
  CHECK(plain.exit_code == 1);

  // The Certificate is the operator's: a changed one is put back.
  CommandResult patched = cluster.Kubectl({"patch", "certificate", "sealed-control-tls", "--type=merge", "-p",
                                           R"({"spec":{"dnsNames":["elsewhere.example"]}})"});
  INFO(patched.err);
  REQUIRE(patched.exit_code == 0);
  CHECK(WaitFor([&] {
    auto got = cluster.api().Get("cert-manager.io/v1", "certificates", "default", "sealed-control-tls");
    return got.ok() &&
           (*got)["spec"]["dnsNames"] == json::array({"sealed.default.svc", "sealed.default.svc.cluster.local"});
  }));
}

TEST_CASE("the operator refuses a --worker-tls-issuer it cannot use, naming what is wrong", "[e2e][tls]") {
  for (auto [value, says] : std::vector<std::pair<std::string, std::string>>{
           {"agents-ca", "takes KIND/NAME"},
           {"Secret/agents-ca", "the kind must be Issuer or ClusterIssuer, got \\\"Secret\\\""},
           {"ClusterIssuer/Agents_CA", "a DNS-1123 subdomain"}}) {
    CommandResult r = RunCommand({OPERATOR_BIN, "--kubeconfig", "/nonexistent", "--worker-tls-issuer", value});
    INFO(value << ": " << r.err);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, ContainsSubstring(says));
  }
}
