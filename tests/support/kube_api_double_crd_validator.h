// The API double's validation of custom resources: one long-lived `crd_validate.py --serve`
// process (structural pruning, defaults, the OpenAPI schema and CEL rules, as the
// apiextensions-apiserver applies them), asked one object at a time. Test code only.
//
// Thread-safety: none; the double calls it under its store lock.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"

namespace carapace::testing::kube_double {

struct CrdVerdict {
  std::vector<std::string> errors;   // field errors as the server words them
  std::vector<std::string> unknown;  // paths of undeclared fields that were pruned
  nlohmann::json object;             // pruned and defaulted (status left out)
};

class CrdValidator {
 public:
  // `script`: tests/support/crd_validate.py; started on the first Validate.
  explicit CrdValidator(std::string script);
  ~CrdValidator();  // closes its stdin and reaps it
  CrdValidator(const CrdValidator&) = delete;
  CrdValidator& operator=(const CrdValidator&) = delete;

  // Validates `object` (and `old`, for transition rules, when not null) against `schema`,
  // known by `schema_id` (sent to the process once per id). Errors: kInternal when the
  // validator cannot run or cannot judge the schema.
  Result<CrdVerdict> Validate(const std::string& schema_id, const nlohmann::json& schema, const nlohmann::json& object,
                              const nlohmann::json& old);

 private:
  Status StartProcess();
  void StopProcess();
  Result<nlohmann::json> Ask(const nlohmann::json& request);

  std::string script_;
  pid_t pid_ = -1;
  int to_child_ = -1;
  FILE* from_child_ = nullptr;
  std::set<std::string> sent_;  // schema ids the running process holds
};

}  // namespace carapace::testing::kube_double
