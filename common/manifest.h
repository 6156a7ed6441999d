// Loading YAML/JSON manifests strictly. Every error names the file, line and column and
// the field path ("hello.yaml:12:5: spec.budget.maxSteps: must be >= 1"), and all errors
// in a document are reported together, not only the first.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "common/status.h"

namespace carapace {

// Collects the errors found while reading one document.
class ManifestErrors {
 public:
  explicit ManifestErrors(std::string file) : file_(std::move(file)) {}

  // Records "file:line:col: path: message"; `node` gives the position (may be invalid).
  void Add(const YAML::Node& node, const std::string& path, const std::string& message);
  bool empty() const { return lines_.empty(); }
  const std::vector<std::string>& lines() const { return lines_; }
  const std::string& file() const { return file_; }
  // Strings must be strings: a plain scalar that YAML reads as a number, boolean or null
  // (`goal: 42`) is refused, as the Kubernetes API server refuses it. Off by default for
  // files that are never Kubernetes objects (chat templates).
  void set_strict_strings(bool strict) { strict_strings_ = strict; }
  bool strict_strings() const { return strict_strings_; }
  // kInvalidArgument with one error per line; ok when there are none.
  Status ToStatus() const;

 private:
  std::string file_;
  std::vector<std::string> lines_;
  bool strict_strings_ = false;
};

// Reads a YAML/JSON file (JSON is read as YAML flow style). Errors: kNotFound or
// kIoError when it cannot be read, kInvalidArgument naming the line of a syntax error.
Result<YAML::Node> LoadYamlFile(const std::string& path);
Result<YAML::Node> ParseYaml(const std::string& text, const std::string& name);

// Converts a YAML node to JSON, typing plain scalars by the YAML 1.2 core schema
// (null, true/false, integers, floats; everything else and quoted scalars are strings).
nlohmann::json YamlToJson(const YAML::Node& node);

// Strict reader of one YAML mapping at `path`. Each getter marks its key as known; Finish()
// reports every key that no getter asked for ("unknown field"). Wrong types and out-of-range
// values are reported to `errors` and the getter returns the default.
class ObjectReader {
 public:
  ObjectReader(const YAML::Node& node, std::string path, ManifestErrors* errors);

  bool valid() const { return valid_; }
  bool Has(const std::string& key) const;
  const YAML::Node& node() const { return node_; }
  std::string PathOf(const std::string& key) const;

  std::optional<std::string> String(const std::string& key, bool required = false);
  // Must be one of `allowed`; the error lists them.
  std::optional<std::string> Enum(const std::string& key, const std::vector<std::string>& allowed);
  // An integer, or a float with an integral value (50.0, 5e1), as the API server accepts it
  // for `type: integer`; min <= v <= max.
  std::optional<int64_t> Int(const std::string& key, int64_t min, int64_t max);
  // Integer or decimal, min <= v <= max.
  std::optional<double> Number(const std::string& key, double min, double max);
  std::optional<bool> Bool(const std::string& key);
  std::optional<std::vector<std::string>> StringList(const std::string& key);
  // Any value, converted to JSON (for free-form fields such as tool arguments).
  std::optional<nlohmann::json> Json(const std::string& key);
  // The raw child node, marked as known; invalid when absent.
  YAML::Node Child(const std::string& key);
  // Marks keys as accepted without reading them.
  void Ignore(const std::string& key);

  void Error(const std::string& key, const std::string& message);
  void Finish();

 private:
  YAML::Node node_;
  std::string path_;
  ManifestErrors* errors_;
  bool valid_ = false;
  std::set<std::string> known_;
};

}  // namespace carapace
