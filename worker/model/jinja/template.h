// A Jinja template, as chat templates are written: the subset of Jinja that published chat
// templates use (tags if/for/set/macro/break/continue/raw, expressions with Python's
// meaning, the filters and tests in builtins.h), rendered with Hugging Face's settings
// (trim_blocks, lstrip_blocks, its tojson). There is no Jinja library for C++ in Debian 12;
// docs/models.md lists what is in the subset.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "worker/model/jinja/value.h"

namespace carapace::jinja {

struct Frame;
struct Node;

class Template {
 public:
  // Parses `source`. Errors: kInvalidArgument "<name>:<line>:<col>: <why>" for a syntax
  // error or a tag, filter, test, function or method outside the subset, so a template the
  // engine cannot render fails when it is loaded, never at the first model call.
  static Result<std::shared_ptr<const Template>> Parse(std::string_view source, std::string name);

  // Renders with `variables` as the template's globals. Thread-safe: a template is
  // immutable once parsed. Errors: kInvalidArgument "<name>:<line>:<col>: <why>" when the
  // template raises (raise_exception), uses an undefined value, or mixes types; or does
  // more work than a chat template ever needs (a runaway loop).
  Result<std::string> Render(const Dict& variables) const;

  const std::string& name() const { return name_; }
  // Names the engine does not have inside {% if %} branches ("<name>:<line>:<col>: unknown
  // filter 'x' ..."): as in Jinja, an error only if such a branch runs.
  const std::vector<std::string>& deferred() const { return deferred_; }
  ~Template();

 private:
  Template() = default;
  std::string name_;
  std::vector<std::unique_ptr<Node>> body_;
  std::vector<std::string> deferred_;
};

}  // namespace carapace::jinja
