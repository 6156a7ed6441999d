// Least privilege, checked: the ClusterRole and Role in deploy/rbac/ (the chart renders the
// same files) must grant exactly the verbs the operator uses. Every API double of the e2e
// suite records each authorisation it decided for the operator (verb, group, resource, and
// whether it was allowed; admission checks such as OwnerReferencesPermissionEnforcement
// included) into CARAPACE_RBAC_AUDIT_DIR; this test runs after the suite (a ctest fixture
// cleanup) and reads them.
//
// A used verb that is not granted always fails. A granted verb never used fails when the
// whole suite ran (every e2e test case left its marker); after a partial run (ctest -R) it
// cannot be judged and is only reported.
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <tuple>

#include <catch2/catch_test_macros.hpp>

#include "common/hash.h"

namespace {

using Grant = std::tuple<std::string, std::string, std::string>;  // verb, group ("core" for ""), resource

std::set<Grant> Granted() {
  std::set<Grant> out;
  for (const char* file : {"cluster_role.yaml", "leader_election_role.yaml"}) {
    for (const auto& doc : YAML::LoadAllFromFile(std::string(CARAPACE_SOURCE_DIR) + "/deploy/rbac/" + file)) {
      for (const auto& rule : doc["rules"]) {
        for (const auto& g : rule["apiGroups"]) {
          for (const auto& r : rule["resources"]) {
            for (const auto& v : rule["verbs"]) {
              const std::string group = g.as<std::string>();
              out.insert({v.as<std::string>(), group.empty() ? "core" : group, r.as<std::string>()});
            }
          }
        }
      }
    }
  }
  return out;
}

std::set<std::string> E2eTestNames() {
  std::set<std::string> names;
  FILE* p = popen((std::string(E2E_BIN) + " --list-tests --verbosity quiet").c_str(), "r");
  REQUIRE(p != nullptr);
  char line[4096];
  while (fgets(line, sizeof line, p)) {
    std::string name(line);
    while (!name.empty() && (name.back() == '\n' || name.back() == '\r')) name.pop_back();
    if (!name.empty()) names.insert(name);
  }
  pclose(p);
  return names;
}

}  // namespace

TEST_CASE("the operator's roles grant exactly the verbs it uses across the e2e suite", "[rbac]") {
  const std::string dir = RBAC_AUDIT_DIR;
  REQUIRE(std::filesystem::is_directory(dir));
  std::set<Grant> used, denied;
  std::set<std::string> markers;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string file = entry.path().filename().string();
    if (file.rfind("ran-", 0) == 0) {
      markers.insert(file.substr(4));
      continue;
    }
    std::ifstream in(entry.path());
    std::string verb, group, resource, answer;
    while (in >> verb >> group >> resource >> answer) {
      used.insert({verb, group, resource});
      if (answer == "denied") denied.insert({verb, group, resource});
    }
  }
  REQUIRE_FALSE(used.empty());
  const std::set<Grant> granted = Granted();
  for (const auto& [verb, group, resource] : denied) {
    FAIL_CHECK("the operator asked to " << verb << " " << resource << " (" << group << ") and the roles do not grant it");
  }
  const std::set<std::string> tests = E2eTestNames();
  size_t ran = 0;
  for (const auto& name : tests) ran += markers.count(carapace::Sha256Hex(name).substr(0, 16));
  const bool whole_suite = !tests.empty() && ran == tests.size();
  for (const auto& grant : granted) {
    if (used.count(grant)) continue;
    const auto& [verb, group, resource] = grant;
    if (whole_suite) {
      FAIL_CHECK("deploy/rbac grants " << verb << " on " << resource << " (" << group
                                       << ") and the operator never used it in the e2e suite");
    } else {
      WARN("not used in this partial run (" << ran << " of " << tests.size() << " e2e tests): " << verb << " "
                                              << resource);
    }
  }
}
