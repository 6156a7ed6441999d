// deploy/default: `kubectl kustomize` renders it, `kubectl apply` of the render works
// against the API double, and the operator, as the service account it installs, reconciles
// an AgentRun with the RBAC it installs.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <signal.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "tests/support/child_process.h"
#include "tests/support/kube_api_double.h"
#include "tests/support/worker_process.h"

using namespace carapace::testing;
using nlohmann::json;

TEST_CASE("kubectl apply -k deploy/default installs what the operator needs to reconcile", "[deploy]") {
  const std::string source = CARAPACE_SOURCE_DIR;
  TempDir dir;
  CommandResult rendered = RunCommand({KUBECTL_BIN, "kustomize", source + "/deploy/default"});
  INFO(rendered.err);
  REQUIRE(rendered.exit_code == 0);
  for (const char* kind : {"kind: Namespace", "kind: CustomResourceDefinition", "kind: ClusterRole", "kind: Deployment",
                           "kind: ServiceAccount", "kind: RoleBinding", "kind: Service"}) {
    CHECK_THAT(rendered.out, Catch::Matchers::ContainsSubstring(kind));
  }
  std::ofstream(dir.Sub("install.yaml")) << rendered.out;

  KubeApiDoubleOptions options;
  options.rbac_files = {source + "/deploy/rbac/cluster_role.yaml", source + "/deploy/rbac/leader_election_role.yaml"};
  KubeApiDouble api(options);
  REQUIRE(api.Start().ok());
  REQUIRE(api.WriteKubeconfig(dir.Sub("admin"), "admin-token").ok());
  REQUIRE(api.WriteKubeconfig(dir.Sub("operator"), options.operator_token).ok());
  auto kubectl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {KUBECTL_BIN, "--kubeconfig", dir.Sub("admin"), "--cache-dir", dir.Sub("cache")});
    return RunCommand(args);
  };
  CommandResult applied = kubectl({"apply", "-f", dir.Sub("install.yaml")});
  INFO(applied.out << applied.err);
  REQUIRE(applied.exit_code == 0);
  auto deployment = api.Get("apps/v1", "deployments", "carapace-system", "carapace-operator");
  REQUIRE(deployment.ok());
  CHECK((*deployment)["spec"]["template"]["spec"]["serviceAccountName"] == "carapace-operator");
  CHECK(api.Get("v1", "serviceaccounts", "carapace-system", "carapace-operator").ok());

  // The operator as that service account: its AgentRun gets its objects and Accepted=True.
  const int port = FreePort();
  ChildProcess op({OPERATOR_BIN, "--kubeconfig", dir.Sub("operator"), "--leader-elect", "--lease-namespace",
                   "carapace-system", "--http-listen", "127.0.0.1:" + std::to_string(port)});
  CommandResult ar = kubectl({"apply", "-f", source + "/examples/hello.yaml"});
  INFO(ar.err);
  REQUIRE(ar.exit_code == 0);
  bool accepted = false;
  for (int i = 0; i < 150 && !accepted; ++i) {
    auto got = api.Get("carapace.dev/v1alpha1", "agentruns", "default", "hello");
    accepted = got.ok() && got->dump().find("\"SpecValid\"") != std::string::npos &&
               api.Get("apps/v1", "statefulsets", "default", "hello").ok();
    if (!accepted) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::ifstream log(op.err_path());
  INFO(std::string(std::istreambuf_iterator<char>(log), {}));
  CHECK(accepted);
  op.Kill(SIGTERM);
  CHECK(op.Wait(20000).exit_code == 0);
}
