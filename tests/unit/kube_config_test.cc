// Finding and authenticating to the Kubernetes API: kubeconfig contexts, CA and client
// certificates as data or files, tokens, refused credential plugins, in-cluster config and
// token rotation.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "operator/kube/config.h"
#include "tests/support/child_process.h"

using namespace carapace;
using namespace carapace::kube;
using carapace::testing::TempDir;
using Catch::Matchers::ContainsSubstring;

namespace {

// base64 of "CA PEM" and "CERT" / "KEY".
const char* kConfig = R"(apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority-data: Q0EgUEVN
- name: other
  cluster:
    server: https://10.0.0.1:443
    certificate-authority: CA_FILE
contexts:
- name: dev
  context: {cluster: local, user: admin, namespace: agents}
- name: prod
  context: {cluster: other, user: robot}
- name: sso
  context: {cluster: local, user: oidc}
users:
- name: admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
- name: robot
  user:
    tokenFile: TOKEN_FILE
- name: oidc
  user:
    exec: {command: kubelogin, apiVersion: client.authentication.k8s.io/v1}
)";

std::string WriteConfig(const TempDir& dir) {
  std::ofstream(dir.Sub("ca.pem")) << "OTHER CA";
  std::ofstream(dir.Sub("token")) << "robot-token\n";
  std::string text = kConfig;
  text.replace(text.find("CA_FILE"), 7, dir.Sub("ca.pem"));
  text.replace(text.find("TOKEN_FILE"), 10, dir.Sub("token"));
  std::ofstream(dir.Sub("config")) << text;
  return dir.Sub("config");
}

}  // namespace

TEST_CASE("kubeconfig: the current context with data fields, a named one with files", "[operator][kube]") {
  TempDir dir;
  const std::string path = WriteConfig(dir);
  auto dev = LoadKubeconfig(path);
  INFO(dev.status().ToString());
  REQUIRE(dev.ok());
  CHECK(dev->server == "https://127.0.0.1:6443");
  CHECK(dev->ca_pem == "CA PEM");
  CHECK(dev->client_cert_pem == "CERT");
  CHECK(dev->client_key_pem == "KEY");
  CHECK(dev->ns == "agents");
  CHECK(*dev->BearerToken() == "");
  CHECK(dev->source == "kubeconfig " + path + ", context dev");

  auto prod = LoadKubeconfig(path, "prod");
  REQUIRE(prod.ok());
  CHECK(prod->server == "https://10.0.0.1:443");
  CHECK(prod->ca_pem == "OTHER CA");
  CHECK(prod->ns == "default");
  CHECK(*prod->BearerToken() == "robot-token");
}

TEST_CASE("kubeconfig: what cannot be used is a clear error naming the field", "[operator][kube]") {
  TempDir dir;
  const std::string path = WriteConfig(dir);
  auto sso = LoadKubeconfig(path, "sso");
  REQUIRE_FALSE(sso.ok());
  CHECK_THAT(sso.status().message(), ContainsSubstring("users[2].user.exec: credential plugins are not supported"));
  auto missing = LoadKubeconfig(path, "staging");
  CHECK_THAT(missing.status().message(), ContainsSubstring("no context \"staging\" (available: dev, prod, sso)"));
  CHECK(LoadKubeconfig(dir.Sub("nope")).status().code() == StatusCode::kNotFound);
  std::ofstream(dir.Sub("bad")) << "apiVersion: v1\ncurrent-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
                                   "clusters: [{name: c, cluster: {server: 'https://h', certificate-authority-data: '%%%'}}]\n";
  CHECK_THAT(LoadKubeconfig(dir.Sub("bad")).status().message(),
             ContainsSubstring("clusters[0].cluster.certificate-authority-data: not valid base64"));
  // Found by fuzzing: a kubeconfig without contexts (or of another shape) is an error, not
  // an exception out of yaml-cpp that stopped the operator with "unexpected error".
  auto no_contexts = ParseKubeconfig("current-context: c\nclusters: [{name: k, cluster: {server: 'https://h'}}]\n", "kc");
  REQUIRE_FALSE(no_contexts.ok());
  CHECK_THAT(no_contexts.status().message(), ContainsSubstring("no context \"c\" (available: none)"));
  auto odd = ParseKubeconfig("current-context: c\ncontexts: {c: 1}\nclusters: 3\nusers: [[]]\n", "kc");
  CHECK_FALSE(odd.ok());
}

TEST_CASE("base64 as kubeconfig data fields and Secret data use it", "[operator][kube]") {
  CHECK(*DecodeBase64("aGVsbG8gd29ybGQ=") == "hello world");
  CHECK(*DecodeBase64("aGVs\nbG8=") == "hello");
  CHECK(*DecodeBase64("") == "");
  CHECK_FALSE(DecodeBase64("a=b").ok());
  CHECK(EncodeBase64("hello world") == "aGVsbG8gd29ybGQ=");
  CHECK(EncodeBase64("hello") == "aGVsbG8=");
  CHECK(EncodeBase64("") == "");
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (size_t n : {size_t{1}, size_t{2}, size_t{3}, size_t{255}, size_t{256}}) {
    CHECK(*DecodeBase64(EncodeBase64(all.substr(0, n))) == all.substr(0, n));
  }
}

TEST_CASE("in-cluster: the service account's CA, namespace and a token re-read when it rotates", "[operator][kube]") {
  TempDir dir;
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  CHECK(LoadInClusterConfig(dir.path()).status().code() == StatusCode::kFailedPrecondition);
  ::setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  ::setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  CHECK_THAT(LoadInClusterConfig(dir.path()).status().message(), ContainsSubstring("in-cluster CA: cannot read"));
  std::ofstream(dir.Sub("ca.crt")) << "CLUSTER CA";
  std::ofstream(dir.Sub("namespace")) << "carapace-system";
  std::ofstream(dir.Sub("token")) << "first-token";
  auto c = LoadInClusterConfig(dir.path());
  INFO(c.status().ToString());
  REQUIRE(c.ok());
  CHECK(c->server == "https://10.96.0.1:443");
  CHECK(c->ca_pem == "CLUSTER CA");
  CHECK(c->ns == "carapace-system");
  CHECK(*c->BearerToken() == "first-token");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a new mtime
  std::ofstream(dir.Sub("token")) << "rotated-token";
  CHECK(*c->BearerToken() == "rotated-token");
  ::setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
  CHECK(LoadInClusterConfig(dir.path())->server == "https://[fd00::1]:443");
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  ::unsetenv("KUBERNETES_SERVICE_PORT");
}
