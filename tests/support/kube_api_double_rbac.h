// RBAC for the Kubernetes API double: the rules of ClusterRole and Role YAML files, and the
// question the real authorizer answers: may this verb be done on this resource here?
#pragma once

#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "common/status.h"

namespace carapace::testing::kube_double {

class RbacRules {
 public:
  // Reads every ClusterRole and Role document of the files (other kinds are skipped). A
  // Role without a namespace applies in `default_namespace`. Errors: kInvalidArgument,
  // kNotFound for a missing file.
  Status Load(const std::vector<std::string>& files, const std::string& default_namespace);
  // `resource` is "agentruns" or "agentruns/status"; `ns` "" for cluster scope.
  // Every question is remembered with its answer, for the least-privilege audit.
  bool Allows(const std::string& verb, const std::string& group, const std::string& resource, const std::string& ns,
              const std::string& name) const;

  // (verb, group, resource, allowed) of every question asked since Load.
  using Decision = std::tuple<std::string, std::string, std::string, bool>;
  std::set<Decision> Asked() const;
  // Appends the questions asked, one "verb group resource allowed|denied" line each ("" for
  // the core group written as "core"), to a new file in `dir` (the e2e suite's audit:
  // tests/e2e/rbac_audit_test.cc). Nothing when no question was asked.
  Status WriteAudit(const std::string& dir) const;

 private:
  struct Rule {
    std::string ns;  // "" for a ClusterRole: every namespace and the cluster scope
    std::vector<std::string> groups, resources, verbs, names;
  };
  std::vector<Rule> rules_;
  mutable std::mutex asked_mu_;
  mutable std::set<Decision> asked_;
};

}  // namespace carapace::testing::kube_double
