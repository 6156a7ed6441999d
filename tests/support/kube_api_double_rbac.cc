// Loads RBAC rules with yaml-cpp and matches requests against them like the real
// authorizer: "*" wildcards, resourceNames, Roles bound to their namespace.
#include "tests/support/kube_api_double_rbac.h"

#include <yaml-cpp/yaml.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>

namespace carapace::testing::kube_double {

namespace {

std::vector<std::string> Strings(const YAML::Node& node) {
  std::vector<std::string> out;
  if (!node || !node.IsSequence()) return out;
  for (const auto& item : node) out.push_back(item.IsNull() ? "" : item.as<std::string>());
  return out;
}

bool Contains(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end() ||
         std::find(list.begin(), list.end(), "*") != list.end();
}

}  // namespace

Status RbacRules::Load(const std::vector<std::string>& files, const std::string& default_namespace) {
  for (const auto& file : files) {
    if (!std::filesystem::exists(file)) return NotFound("RBAC file " + file + " does not exist");
    try {
      for (const auto& doc : YAML::LoadAllFromFile(file)) {
        if (!doc.IsMap()) continue;
        std::string kind = doc["kind"] ? doc["kind"].as<std::string>() : "";
        if (kind != "ClusterRole" && kind != "Role") continue;
        std::string ns;
        if (kind == "Role") {
          ns = doc["metadata"] && doc["metadata"]["namespace"] ? doc["metadata"]["namespace"].as<std::string>()
                                                               : default_namespace;
        }
        if (!doc["rules"] || !doc["rules"].IsSequence()) continue;
        for (const auto& r : doc["rules"]) {
          rules_.push_back(
              {ns, Strings(r["apiGroups"]), Strings(r["resources"]), Strings(r["verbs"]), Strings(r["resourceNames"])});
        }
      }
    } catch (const YAML::Exception& e) {
      return InvalidArgument("RBAC file " + file + ": " + e.what());
    }
  }
  return Status::Ok();
}

bool RbacRules::Allows(const std::string& verb, const std::string& group, const std::string& resource,
                       const std::string& ns, const std::string& name) const {
  bool allowed = false;
  for (const auto& rule : rules_) {
    if (!rule.ns.empty() && rule.ns != ns) continue;
    if (!Contains(rule.verbs, verb) || !Contains(rule.groups, group) || !Contains(rule.resources, resource)) continue;
    // resourceNames restrict by name, so they never allow a list, watch or create.
    if (!rule.names.empty() && (name.empty() || !Contains(rule.names, name))) continue;
    allowed = true;
    break;
  }
  std::lock_guard<std::mutex> lock(asked_mu_);
  asked_.insert({verb, group, resource, allowed});
  return allowed;
}

std::set<RbacRules::Decision> RbacRules::Asked() const {
  std::lock_guard<std::mutex> lock(asked_mu_);
  return asked_;
}

Status RbacRules::WriteAudit(const std::string& dir) const {
  const std::set<Decision> asked = Asked();
  if (asked.empty()) return Status::Ok();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  static std::atomic<int> sequence{0};
  const std::string path = dir + "/" + std::to_string(getpid()) + "-" + std::to_string(++sequence) + ".txt";
  std::ofstream out(path);
  for (const auto& [verb, group, resource, allowed] : asked) {
    out << verb << " " << (group.empty() ? "core" : group) << " " << resource << " " << (allowed ? "allowed" : "denied")
        << "\n";
  }
  out.close();
  return out ? Status::Ok() : Unavailable("cannot write the RBAC audit " + path);
}

}  // namespace carapace::testing::kube_double
