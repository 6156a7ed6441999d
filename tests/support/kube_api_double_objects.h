// Pure rules the Kubernetes API double applies to objects: label and field selectors, the
// strategic merge patch (by-name list merging, good enough for kubectl apply), name
// validation, the JSONPath subset of CRD printer columns, and base64 for Secret stringData.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"

namespace carapace::testing::kube_double {

class LabelSelector {
 public:
  // "a=b,c!=d,e in (f,g),h notin (i),j,!k". Errors: kInvalidArgument.
  static Result<LabelSelector> Parse(const std::string& text);
  bool Matches(const nlohmann::json& object) const;  // reads metadata.labels
  bool empty() const { return requirements_.empty(); }

 private:
  enum class Op { kEquals, kNotEquals, kIn, kNotIn, kExists, kNotExists };
  struct Requirement {
    std::string key;
    Op op;
    std::vector<std::string> values;
  };
  std::vector<Requirement> requirements_;
};

class FieldSelector {
 public:
  // "metadata.name=x,metadata.namespace!=y" (any dotted path of string, number or bool).
  static Result<FieldSelector> Parse(const std::string& text);
  bool Matches(const nlohmann::json& object) const;
  // The name a "metadata.name=X" requirement pins, or "".
  std::string PinnedName() const;

 private:
  struct Requirement {
    std::string path;
    bool negate;
    std::string value;
  };
  std::vector<Requirement> requirements_;
};

// Strategic merge: as a JSON merge patch, except that lists whose items are objects with a
// "name" key are merged item by item by name, and the patch directives kubectl sends
// ($patch, $retainKeys, $setElementOrder/..., $deleteFromPrimitiveList/...) are honoured
// or dropped.
nlohmann::json StrategicMergePatch(const nlohmann::json& target, const nlohmann::json& patch);

// RFC 1123 subdomain: lower-case alphanumerics, '-' and '.', at most 253 characters,
// starting and ending with an alphanumeric.
bool IsDns1123Subdomain(const std::string& name);

// The values a printer-column JSONPath (".status.phase", ".a[0].b",
// ".status.conditions[?(@.type==\"Ready\")].status", ".a[*].b") selects.
std::vector<nlohmann::json> JsonPathSelect(const nlohmann::json& object, const std::string& path);

std::string Base64Encode(const std::string& bytes);

}  // namespace carapace::testing::kube_double
