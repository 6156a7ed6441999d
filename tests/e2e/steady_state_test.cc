// Writes at steady state, counted: an operator that compares what it wants with what the API
// server stores must write nothing once every object is as it should be, whatever way the
// user wrote quantities, after a relist, and after a restart (an upgrade, a failover). The
// double stores what a real server stores (canonical quantities, no empty maps, defaults,
// list items without apiVersion/kind); the Lease's renewals are counted apart.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <signal.h>

#include <chrono>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/e2e/e2e_cluster.h"
#include "tests/support/wait.h"

using namespace carapace::testing;
using nlohmann::json;

namespace {

std::string LongLived(const std::string& name, const std::string& extra = "") {
  return "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: " + name + "}\nspec:\n"
         "  goal: say hello\n  model:\n    backend: scripted\n    script:\n      - text: hello\n"
         "  schedule: {heartbeatSeconds: 3600}\n" + extra;
}

int64_t Writes(Cluster& cluster) {
  KubeApiDouble& api = cluster.api();
  return api.Requests("POST") + api.Requests("PUT") + api.Requests("PATCH") + api.Requests("DELETE");
}

// The writes the operator made in `seconds` of quiet.
int64_t WritesIn(Cluster& cluster, int seconds) {
  cluster.api().ResetCounters();
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  return Writes(cluster);
}

}  // namespace

TEST_CASE("AgentRuns with running workers cost no writes at steady state, after a relist, and after an operator restart",
          "[e2e][writes]") {
  Cluster cluster;
  // Quantities as users write them: the server stores them otherwise ("0.5" as "500m",
  // 1024Mi as 1Gi, 1 as "1"), and drops an empty map.
  const std::pair<const char*, const char*> agents[] = {
      {"plain", ""},
      {"fractions", "  resources: {requests: {cpu: \"0.5\", memory: 1024Mi}, limits: {memory: 1.5Gi}}\n"},
      {"integers", "  resources: {requests: {cpu: 1, memory: 268435456}}\n"},
      {"empty-limits", "  resources: {requests: {cpu: 100m}, limits: {}}\n"},
      {"storage-in-mi", "  storage: {size: 1024Mi}\n"},
  };
  for (const auto& [name, extra] : agents) cluster.Apply(LongLived(name, extra));
  for (const auto& [name, extra] : agents) REQUIRE(cluster.WaitForPhase(name, "Idle"));
  auto sts = cluster.api().Get("apps/v1", "statefulsets", "default", "fractions");
  REQUIRE(sts.ok());
  CHECK((*sts)["spec"]["template"]["spec"]["containers"][0]["resources"] ==
        json{{"requests", {{"cpu", "500m"}, {"memory", "1Gi"}}}, {"limits", {{"memory", "1536Mi"}}}});

  std::this_thread::sleep_for(std::chrono::seconds(2));  // the last status writes land
  CHECK(WritesIn(cluster, 4) == 0);

  // A relist: every watch dropped and the history gone (410 Gone), as after an API server
  // restart. The objects come back from a list, whose items carry no apiVersion and kind.
  cluster.api().DropWatches();
  cluster.api().ExpireHistory();
  CHECK(WritesIn(cluster, 5) == 0);

  // The operator restarted: it starts from a list too.
  cluster.operator_process(0).Kill(SIGTERM);
  cluster.operator_process(0).Wait(15000);
  cluster.StartOperator();
  REQUIRE(WaitFor([&] { return cluster.Leader(1) == 1; }, 20000));
  INFO("operator log: " << cluster.OperatorLog(1).substr(0, 4000));
  CHECK(WritesIn(cluster, 5) == 0);
  CHECK(cluster.api().Requests("LEASE_PUT") > 0);  // the Lease is renewed meanwhile, and only it
  for (const auto& [name, extra] : agents) CHECK(cluster.Phase(name) == "Idle");
}

TEST_CASE("a grown volume, a refused resize and a StatefulSet that lost its labels settle to no writes", "[e2e][writes]") {
  Cluster cluster;
  cluster.Apply("apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: expandable}\n"
                "provisioner: example.com/disk\nallowVolumeExpansion: true\n");
  cluster.Apply("apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: fixed}\nprovisioner: example.com/disk\n");
  cluster.Apply(LongLived("grows", "  storage: {size: 1Gi, storageClassName: expandable}\n"));
  cluster.Apply(LongLived("stuck", "  storage: {size: 1Gi, storageClassName: fixed}\n"));
  REQUIRE(cluster.WaitForPhase("grows", "Idle"));
  REQUIRE(cluster.WaitForPhase("stuck", "Idle"));

  cluster.Apply(LongLived("grows", "  storage: {size: 2Gi, storageClassName: expandable}\n"));
  cluster.Apply(LongLived("stuck", "  storage: {size: 2Gi, storageClassName: fixed}\n"));
  REQUIRE(WaitFor([&] {
    auto pvc = cluster.api().Get("v1", "persistentvolumeclaims", "default", "state-grows-0");
    return pvc.ok() && (*pvc)["spec"]["resources"]["requests"]["storage"] == "2Gi";
  }));
  REQUIRE(WaitFor([&] {
    return cluster.Kubectl({"get", "events", "-o", "json"}).out.find("StorageResizeFailed") != std::string::npos;
  }));
  auto stuck_pvc = cluster.api().Get("v1", "persistentvolumeclaims", "default", "state-stuck-0");
  REQUIRE(stuck_pvc.ok());
  CHECK((*stuck_pvc)["spec"]["resources"]["requests"]["storage"] == "1Gi");
  REQUIRE(cluster.WaitForPhase("grows", "Idle"));
  REQUIRE(cluster.WaitForPhase("stuck", "Idle"));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  // Neither the grown claim nor the refused one is asked again on every pass.
  CHECK(WritesIn(cluster, 5) == 0);

  // The grown agent's StatefulSet loses the label the operator's cache selects on: it is
  // taken back by its labels alone (its claim template, which a real server refuses to
  // change, is not sent), and then left alone.
  const std::string uid = cluster.api().Get("apps/v1", "statefulsets", "default", "grows")->value(
      "/metadata/uid"_json_pointer, std::string());
  REQUIRE(cluster.Kubectl({"label", "statefulset", "grows", "app.kubernetes.io/managed-by-"}).exit_code == 0);
  REQUIRE(WaitFor([&] {
    auto s = cluster.api().Get("apps/v1", "statefulsets", "default", "grows");
    return s.ok() && s->value("/metadata/labels"_json_pointer, json::object()).value("app.kubernetes.io/managed-by", "") ==
                         "carapace-operator";
  }));
  auto taken = cluster.api().Get("apps/v1", "statefulsets", "default", "grows");
  REQUIRE(taken.ok());
  CHECK((*taken)["metadata"]["uid"] == uid);  // taken back, not recreated
  CHECK((*taken)["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi");
  const std::string log = cluster.OperatorLog(0);
  INFO(log.substr(0, 6000));
  CHECK(log.find("updates to statefulset spec") == std::string::npos);  // never a refused write
  std::this_thread::sleep_for(std::chrono::seconds(1));
  CHECK(WritesIn(cluster, 4) == 0);
}

TEST_CASE("a server that drops the volume retention policy (StatefulSetAutoDeletePVC off) starts no write loop",
          "[e2e][writes]") {
  Cluster cluster(1, [](KubeApiDoubleOptions& o) { o.statefulset_auto_delete_pvc = false; });
  cluster.Apply(LongLived("kept", "  storage: {retention: {whenDeleted: Delete}}\n"));
  REQUIRE(cluster.WaitForPhase("kept", "Idle"));
  auto sts = cluster.api().Get("apps/v1", "statefulsets", "default", "kept");
  REQUIRE(sts.ok());
  REQUIRE_FALSE(sts->contains("/spec/persistentVolumeClaimRetentionPolicy"_json_pointer));  // dropped, as asked
  std::this_thread::sleep_for(std::chrono::seconds(2));
  CHECK(WritesIn(cluster, 5) == 0);
  const std::string log = cluster.OperatorLog(0);
  size_t warnings = 0;
  for (size_t at = log.find("does not keep persistentVolumeClaimRetentionPolicy"); at != std::string::npos;
       at = log.find("does not keep persistentVolumeClaimRetentionPolicy", at + 1)) {
    ++warnings;
  }
  CHECK(warnings == 1);
}
