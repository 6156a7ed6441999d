// deploy/default: `kubectl kustomize` renders it, `kubectl apply` of the render works
// against the API double, and the operator, as the service account it installs, reconciles
// an AgentRun with the RBAC it installs; deploy/samples renders and applies.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <fstream>

#include "tests/integration/deploy_install.h"
#include "tests/support/repo_files.h"

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

// deploy/samples: `kubectl apply -k` of the samples that need nothing else. The render
// holds exactly the AgentRuns its kustomization lists, unchanged, and applies to the API
// double once the CRD is there.
TEST_CASE("kubectl apply -k deploy/samples applies the self-contained sample AgentRuns", "[deploy]") {
  const std::string source = CARAPACE_SOURCE_DIR;
  CommandResult rendered = RunCommand({KUBECTL_BIN, "kustomize", source + "/deploy/samples"});
  INFO(rendered.err);
  REQUIRE(rendered.exit_code == 0);
  std::vector<std::string> names;
  for (const auto& doc : ParseYamlDocs(rendered.out)) {
    CHECK(doc["kind"] == "AgentRun");
    names.push_back(doc["metadata"]["name"].get<std::string>());
  }
  CHECK(names == std::vector<std::string>{"notes-keeper", "notes-once"});
  CHECK(ParseYamlDocs(rendered.out)[1]["spec"] == LoadYamlAsJson(source + "/deploy/samples/notes-once.yaml")["spec"]);

  InstallCluster cluster({source + "/deploy/rbac/cluster_role.yaml"}, "carapace-system");
  REQUIRE(cluster.Kubectl({"apply", "-f", source + "/crds/carapace.dev_agentruns.yaml"}).exit_code == 0);
  CommandResult applied = cluster.Kubectl({"apply", "-k", source + "/deploy/samples"});
  INFO(applied.out << applied.err);
  REQUIRE(applied.exit_code == 0);
  for (const auto& name : names) CHECK(cluster.api().Get("carapace.dev/v1alpha1", "agentruns", "default", name).ok());
}
