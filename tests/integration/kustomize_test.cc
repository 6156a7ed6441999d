// deploy/default: `kubectl kustomize` renders it, `kubectl apply` of the render works
// against the API double, and the operator, as the service account it installs, reconciles
// an AgentRun with the RBAC it installs.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <fstream>

#include "tests/integration/deploy_install.h"

using namespace carapace::testing;

TEST_CASE("kubectl apply -k deploy/default installs what the operator needs to reconcile", "[deploy]") {
  const std::string source = CARAPACE_SOURCE_DIR;
  CommandResult rendered = RunCommand({KUBECTL_BIN, "kustomize", source + "/deploy/default"});
  INFO(rendered.err);
  REQUIRE(rendered.exit_code == 0);
  for (const char* kind : {"kind: Namespace", "kind: CustomResourceDefinition", "kind: ClusterRole", "kind: Deployment",
                           "kind: ServiceAccount", "kind: RoleBinding", "kind: Service"}) {
    CHECK_THAT(rendered.out, Catch::Matchers::ContainsSubstring(kind));
  }

  InstallCluster cluster({source + "/deploy/rbac/cluster_role.yaml", source + "/deploy/rbac/leader_election_role.yaml"},
                         "carapace-system");
  std::ofstream(cluster.dir().Sub("install.yaml")) << rendered.out;
  CommandResult applied = cluster.Kubectl({"apply", "-f", cluster.dir().Sub("install.yaml")});
  INFO(applied.out << applied.err);
  REQUIRE(applied.exit_code == 0);
  auto deployment = cluster.api().Get("apps/v1", "deployments", "carapace-system", "carapace-operator");
  REQUIRE(deployment.ok());
  CHECK((*deployment)["spec"]["template"]["spec"]["serviceAccountName"] == "carapace-operator");

  // The operator as that service account, with the Deployment's flags: its AgentRun gets
  // its objects and Accepted=True.
  CHECK_FALSE(cluster.RunOperatorAsDeployed("carapace-operator").is_null());
}
