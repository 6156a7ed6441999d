// Strict YAML/JSON manifest reading with positioned, path-named errors.
#include "common/manifest.h"

#include <algorithm>
#include <optional>
#include <regex>
#include <sstream>

#include "common/file.h"
#include "common/json_text.h"

namespace carapace {

void ManifestErrors::Add(const YAML::Node& node, const std::string& path,
                         const std::string& message) {
  std::ostringstream out;
  out << file_;
  if (node.IsDefined() && node.Mark().line >= 0) {
    out << ":" << node.Mark().line + 1 << ":" << node.Mark().column + 1;
  }
  out << ": " << (path.empty() ? "(document)" : path) << ": " << message;
  lines_.push_back(out.str());
}

Status ManifestErrors::ToStatus() const {
  if (lines_.empty()) return Status::Ok();
  std::string msg;
  for (size_t i = 0; i < lines_.size(); ++i) {
    if (i) msg += "\n";
    msg += lines_[i];
  }
  return InvalidArgument(msg);
}

Result<YAML::Node> ParseYaml(const std::string& text, const std::string& name) {
  if (size_t bad = FirstInvalidUtf8(text); bad != std::string::npos) {
    size_t line = 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(bad), '\n'));
    return InvalidArgument(name + ":" + std::to_string(line) + ": not valid UTF-8; save the file as UTF-8");
  }
  try {
    YAML::Node node = YAML::Load(text);
    if (!node.IsDefined() || node.IsNull()) return InvalidArgument(name + ": the document is empty");
    return node;
  } catch (const YAML::Exception& e) {
    return InvalidArgument(name + ":" + std::to_string(e.mark.line + 1) + ":" +
                           std::to_string(e.mark.column + 1) + ": not valid YAML: " + e.msg);
  }
}

Result<YAML::Node> LoadYamlFile(const std::string& path) {
  CARAPACE_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseYaml(text, path);
}

nlohmann::json YamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return nullptr;
    case YAML::NodeType::Sequence: {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& item : node) arr.push_back(YamlToJson(item));
      return arr;
    }
    case YAML::NodeType::Map: {
      nlohmann::json obj = nlohmann::json::object();
      for (const auto& kv : node) {
        // A complex key (`? [a]: 1`) has no JSON form: it is kept as its YAML text.
        std::string key = kv.first.IsScalar() ? kv.first.Scalar() : YAML::Dump(kv.first);
        obj[key] = YamlToJson(kv.second);
      }
      return obj;
    }
    case YAML::NodeType::Scalar:
      break;
  }
  const std::string& s = node.Scalar();
  if (node.Tag() != "?") return s;  // quoted or explicitly tagged: a string
  static const std::regex kNull("^(~|null|Null|NULL)$");
  static const std::regex kTrue("^(true|True|TRUE)$");
  static const std::regex kFalse("^(false|False|FALSE)$");
  static const std::regex kInt("^[-+]?[0-9]+$");
  static const std::regex kFloat(R"(^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$)");
  if (s.empty() || std::regex_match(s, kNull)) return nullptr;
  if (std::regex_match(s, kTrue)) return true;
  if (std::regex_match(s, kFalse)) return false;
  try {
    if (std::regex_match(s, kInt)) return std::stoll(s);
    if (std::regex_match(s, kFloat)) return std::stod(s);
  } catch (const std::exception&) {
    // out of range: keep it as text
  }
  return s;
}

namespace {
const char* TypeName(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar: return "a scalar";
    case YAML::NodeType::Null: return "null";
    default: return "nothing";
  }
}
}  // namespace

ObjectReader::ObjectReader(const YAML::Node& node, std::string path, ManifestErrors* errors)
    : node_(node), path_(std::move(path)), errors_(errors) {
  if (!node.IsDefined() || node.IsNull()) {
    valid_ = false;  // absent: every getter returns its default
  } else if (!node.IsMap()) {
    errors_->Add(node, path_, std::string("must be a mapping, got ") + TypeName(node));
  } else {
    valid_ = true;
  }
}

std::string ObjectReader::PathOf(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

bool ObjectReader::Has(const std::string& key) const {
  return valid_ && node_[key].IsDefined() && !node_[key].IsNull();
}

void ObjectReader::Error(const std::string& key, const std::string& message) {
  YAML::Node at = valid_ && node_[key].IsDefined() ? node_[key] : node_;
  errors_->Add(at, PathOf(key), message);
}

YAML::Node ObjectReader::Child(const std::string& key) {
  known_.insert(key);
  if (!valid_) return YAML::Node(YAML::NodeType::Undefined);
  return node_[key];
}

void ObjectReader::Ignore(const std::string& key) { known_.insert(key); }

std::optional<std::string> ObjectReader::String(const std::string& key, bool required) {
  known_.insert(key);
  if (!Has(key)) {
    if (required) Error(key, "is required");
    return std::nullopt;
  }
  const YAML::Node n = node_[key];
  if (!n.IsScalar()) {
    Error(key, std::string("must be a string, got ") + TypeName(n));
    return std::nullopt;
  }
  if (errors_->strict_strings() && !YamlToJson(n).is_string()) {
    Error(key, "must be a string, got " + n.Scalar() + " (quote it)");
    return std::nullopt;
  }
  return n.Scalar();
}

std::optional<std::string> ObjectReader::Enum(const std::string& key,
                                              const std::vector<std::string>& allowed) {
  auto v = String(key);
  if (!v) return std::nullopt;
  for (const auto& a : allowed) {
    if (*v == a) return v;
  }
  std::string list;
  for (size_t i = 0; i < allowed.size(); ++i) list += (i ? ", " : "") + allowed[i];
  Error(key, "must be one of " + list + ", got \"" + *v + "\"");
  return std::nullopt;
}

std::optional<int64_t> ObjectReader::Int(const std::string& key, int64_t min, int64_t max) {
  known_.insert(key);
  if (!Has(key)) return std::nullopt;
  nlohmann::json j = YamlToJson(node_[key]);
  // kube-openapi's `type: integer` takes a JSON number with an integral value (50.0), and
  // kubectl sends 50.0 as 50 anyway; range checks happen on the double first, so no cast overflows.
  const bool integral_float =
      j.is_number_float() && std::isfinite(j.get<double>()) && j.get<double>() == std::floor(j.get<double>());
  if (!j.is_number_integer() && !integral_float) {
    Error(key, "must be an integer, got " + (node_[key].IsScalar() ? "\"" + node_[key].Scalar() + "\""
                                                                   : std::string(TypeName(node_[key]))));
    return std::nullopt;
  }
  if (integral_float && (j.get<double>() < static_cast<double>(min) || j.get<double>() > static_cast<double>(max))) {
    Error(key, j.get<double>() < static_cast<double>(min) ? "must be >= " + std::to_string(min)
                                                          : "must be <= " + std::to_string(max));
    return std::nullopt;
  }
  int64_t v = integral_float ? static_cast<int64_t>(j.get<double>()) : j.get<int64_t>();
  if (v < min) {
    Error(key, "must be >= " + std::to_string(min));
    return std::nullopt;
  }
  if (v > max) {
    Error(key, "must be <= " + std::to_string(max));
    return std::nullopt;
  }
  return v;
}

std::optional<double> ObjectReader::Number(const std::string& key, double min, double max) {
  known_.insert(key);
  if (!Has(key)) return std::nullopt;
  nlohmann::json j = YamlToJson(node_[key]);
  if (!j.is_number()) {
    Error(key, "must be a number, got " + (node_[key].IsScalar() ? "\"" + node_[key].Scalar() + "\""
                                                                  : std::string(TypeName(node_[key]))));
    return std::nullopt;
  }
  double v = j.get<double>();
  if (!(v >= min && v <= max)) {
    std::ostringstream range;
    range << "must be between " << min << " and " << max;
    Error(key, range.str());
    return std::nullopt;
  }
  return v;
}

std::optional<bool> ObjectReader::Bool(const std::string& key) {
  known_.insert(key);
  if (!Has(key)) return std::nullopt;
  nlohmann::json j = YamlToJson(node_[key]);
  if (!j.is_boolean()) {
    Error(key, "must be true or false");
    return std::nullopt;
  }
  return j.get<bool>();
}

std::optional<std::vector<std::string>> ObjectReader::StringList(const std::string& key) {
  known_.insert(key);
  if (!Has(key)) return std::nullopt;
  const YAML::Node n = node_[key];
  if (!n.IsSequence()) {
    Error(key, std::string("must be a list of strings, got ") + TypeName(n));
    return std::nullopt;
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < n.size(); ++i) {
    if (!n[i].IsScalar() || (errors_->strict_strings() && !YamlToJson(n[i]).is_string())) {
      errors_->Add(n[i], PathOf(key) + "[" + std::to_string(i) + "]", "must be a string");
      continue;
    }
    out.push_back(n[i].Scalar());
  }
  return out;
}

std::optional<nlohmann::json> ObjectReader::Json(const std::string& key) {
  known_.insert(key);
  if (!Has(key)) return std::nullopt;
  return YamlToJson(node_[key]);
}

void ObjectReader::Finish() {
  if (!valid_) return;
  for (const auto& kv : node_) {
    std::string key = kv.first.IsScalar() ? kv.first.Scalar() : YAML::Dump(kv.first);
    if (!known_.count(key)) errors_->Add(kv.first, PathOf(key), "unknown field");
  }
}

}  // namespace carapace
