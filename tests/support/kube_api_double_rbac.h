// RBAC for the Kubernetes API double: the rules of ClusterRole and Role YAML files, and the
// question the real authorizer answers: may this verb be done on this resource here?
#pragma once

#include <string>
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
  bool Allows(const std::string& verb, const std::string& group, const std::string& resource, const std::string& ns,
              const std::string& name) const;

 private:
  struct Rule {
    std::string ns;  // "" for a ClusterRole: every namespace and the cluster scope
    std::vector<std::string> groups, resources, verbs, names;
  };
  std::vector<Rule> rules_;
};

}  // namespace carapace::testing::kube_double
