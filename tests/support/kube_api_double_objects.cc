// Selectors, the strategic merge patch, name validation and the printer-column JSONPath
// subset of the Kubernetes API double: the parts that need no store and no socket.
#include "tests/support/kube_api_double_objects.h"

#include <algorithm>
#include <cctype>

namespace carapace::testing::kube_double {

using nlohmann::json;

namespace {

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

// Splits on commas outside parentheses: "a in (x,y),b" -> "a in (x,y)", "b".
Result<std::vector<std::string>> SplitTopLevel(const std::string& text) {
  std::vector<std::string> parts;
  std::string current;
  int depth = 0;
  for (char c : text) {
    if (c == '(') ++depth;
    if (c == ')' && --depth < 0) return InvalidArgument("unbalanced ')' in selector \"" + text + "\"");
    if (c == ',' && depth == 0) {
      parts.push_back(Trim(current));
      current.clear();
      continue;
    }
    current.push_back(c);
  }
  if (depth != 0) return InvalidArgument("unbalanced '(' in selector \"" + text + "\"");
  parts.push_back(Trim(current));
  return parts;
}

bool IsLabelKey(const std::string& key) {
  if (key.empty() || key.size() > 317) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '/';
  });
}

bool IsLabelValue(const std::string& value) {
  if (value.size() > 63) return false;
  return std::all_of(value.begin(), value.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

bool StartsWithWord(const std::string& text, const std::string& word) {
  return text.rfind(word, 0) == 0 &&
         (text.size() == word.size() || text[word.size()] == ' ' || text[word.size()] == '(');
}

const json* LabelsOf(const json& object) {
  auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) return nullptr;
  auto labels = meta->find("labels");
  if (labels == meta->end() || !labels->is_object()) return nullptr;
  return &*labels;
}

// The value at a dotted path as text ("" when absent), as field selectors compare it.
std::string FieldText(const json& object, const std::string& path) {
  const json* at = &object;
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    std::string key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!at->is_object()) return "";
    auto it = at->find(key);
    if (it == at->end()) return "";
    at = &*it;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (at->is_string()) return at->get<std::string>();
  if (at->is_null()) return "";
  return at->dump();
}

bool IsDirective(const std::string& key) { return !key.empty() && key[0] == '$'; }

// A patch value with its directives removed, for content that has no counterpart to merge into.
json StripDirectives(const json& value) {
  if (value.is_array()) {
    json out = json::array();
    for (const auto& item : value) out.push_back(StripDirectives(item));
    return out;
  }
  if (!value.is_object()) return value;
  json out = json::object();
  for (auto it = value.begin(); it != value.end(); ++it) {
    if (!IsDirective(it.key())) out[it.key()] = StripDirectives(it.value());
  }
  return out;
}

// Lists of objects that all carry this key merge item by item.
std::string MergeKeyOf(const json& list) {
  if (!list.is_array() || list.empty()) return "";
  for (const char* key : {"name", "type", "containerPort", "mountPath"}) {
    bool all = std::all_of(list.begin(), list.end(), [&](const json& item) {
      return item.is_object() && (item.contains(key) || item.value("$patch", "") == "delete");
    });
    if (all) return key;
  }
  return "";
}

json MergeListByKey(const json& target, const json& patch, const std::string& key) {
  json result = target;
  for (const auto& item : patch) {
    auto same = std::find_if(result.begin(), result.end(), [&](const json& existing) {
      return existing.is_object() && existing.value(key, json()) == item.value(key, json());
    });
    if (item.value("$patch", "") == "delete") {
      if (same != result.end()) result.erase(same);
    } else if (same != result.end()) {
      *same = StrategicMergePatch(*same, item);
    } else {
      result.push_back(StripDirectives(item));
    }
  }
  return result;
}

void DeleteFromPrimitiveList(json* result, const std::string& field, const json& values) {
  auto it = result->find(field);
  if (it == result->end() || !it->is_array() || !values.is_array()) return;
  json kept = json::array();
  for (const auto& v : *it) {
    if (std::find(values.begin(), values.end(), v) == values.end()) kept.push_back(v);
  }
  *it = kept;
}

// One step of a JSONPath: a field, an index, a wildcard or a filter on a field's value.
struct PathStep {
  enum Kind { kField, kIndex, kAll, kFilter } kind = kField;
  std::string field;  // kField; the filter's @.path for kFilter
  long index = 0;
  bool filter_negate = false;
  std::string filter_value;  // compared as text
};

PathStep FieldStep(const std::string& field) {
  PathStep step;
  step.field = field;
  return step;
}

std::vector<PathStep> ParsePath(std::string path) {
  std::vector<PathStep> steps;
  if (!path.empty() && path.front() == '{' && path.back() == '}') path = path.substr(1, path.size() - 2);
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '.') {
      size_t end = path.find_first_of(".[", i + 1);
      std::string field = path.substr(i + 1, end == std::string::npos ? std::string::npos : end - i - 1);
      if (!field.empty()) steps.push_back(FieldStep(field));
      i = end == std::string::npos ? path.size() : end;
      continue;
    }
    if (path[i] != '[') {  // a path without its leading dot
      size_t end = path.find_first_of(".[", i);
      steps.push_back(FieldStep(path.substr(i, end == std::string::npos ? std::string::npos : end - i)));
      i = end == std::string::npos ? path.size() : end;
      continue;
    }
    size_t close = path.find(']', i);
    if (path.compare(i, 3, "[?(") == 0)
      close = path.find(")]", i) == std::string::npos ? close : path.find(")]", i) + 1;
    if (close == std::string::npos) break;
    std::string inner = path.substr(i + 1, close - i - 1);
    i = close + 1;
    PathStep step;
    if (inner == "*") {
      step.kind = PathStep::kAll;
    } else if (inner.rfind("?(", 0) == 0 && inner.back() == ')') {
      std::string expr = inner.substr(2, inner.size() - 3);
      size_t op = expr.find("==");
      step.filter_negate = op == std::string::npos;
      if (op == std::string::npos) op = expr.find("!=");
      if (op == std::string::npos) break;
      std::string lhs = Trim(expr.substr(0, op)), rhs = Trim(expr.substr(op + 2));
      if (lhs.rfind("@.", 0) != 0) break;
      if (rhs.size() >= 2 && (rhs.front() == '"' || rhs.front() == '\'')) rhs = rhs.substr(1, rhs.size() - 2);
      step.kind = PathStep::kFilter;
      step.field = lhs.substr(2);
      step.filter_value = rhs;
    } else if (!inner.empty() && (inner.front() == '\'' || inner.front() == '"')) {
      step.kind = PathStep::kField;
      step.field = inner.substr(1, inner.size() - 2);
    } else {
      step.kind = PathStep::kIndex;
      step.index = std::strtol(inner.c_str(), nullptr, 10);
    }
    steps.push_back(step);
  }
  return steps;
}

}  // namespace

Result<LabelSelector> LabelSelector::Parse(const std::string& text) {
  LabelSelector selector;
  if (Trim(text).empty()) return selector;
  CARAPACE_ASSIGN_OR_RETURN(auto parts, SplitTopLevel(text));
  for (const auto& part : parts) {
    auto invalid = [&] { return InvalidArgument("unable to parse requirement: \"" + part + "\""); };
    if (part.empty()) return invalid();
    Requirement req;
    if (part[0] == '!') {
      req.key = Trim(part.substr(1));
      req.op = Op::kNotExists;
      if (!IsLabelKey(req.key)) return invalid();
      selector.requirements_.push_back(req);
      continue;
    }
    size_t op_at = part.find_first_of("=! ");
    req.key = part.substr(0, op_at);
    if (!IsLabelKey(req.key)) return invalid();
    if (op_at == std::string::npos) {
      req.op = Op::kExists;
      selector.requirements_.push_back(req);
      continue;
    }
    std::string rest = Trim(part.substr(op_at));
    std::string value_text;
    if (rest.rfind("==", 0) == 0 || rest.rfind("!=", 0) == 0) {
      req.op = rest[0] == '!' ? Op::kNotEquals : Op::kEquals;
      value_text = Trim(rest.substr(2));
    } else if (rest.rfind("=", 0) == 0) {
      req.op = Op::kEquals;
      value_text = Trim(rest.substr(1));
    } else if (StartsWithWord(rest, "in") || StartsWithWord(rest, "notin")) {
      req.op = rest[0] == 'n' ? Op::kNotIn : Op::kIn;
      std::string set = Trim(rest.substr(req.op == Op::kIn ? 2 : 5));
      if (set.size() < 2 || set.front() != '(' || set.back() != ')') return invalid();
      std::string inner = set.substr(1, set.size() - 2);
      size_t at = 0;
      while (at <= inner.size()) {
        size_t comma = inner.find(',', at);
        std::string v = Trim(inner.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
        if (!IsLabelValue(v)) return invalid();
        req.values.push_back(v);
        if (comma == std::string::npos) break;
        at = comma + 1;
      }
      selector.requirements_.push_back(req);
      continue;
    } else {
      return invalid();
    }
    if (!IsLabelValue(value_text)) return invalid();
    req.values.push_back(value_text);
    selector.requirements_.push_back(req);
  }
  return selector;
}

bool LabelSelector::Matches(const json& object) const {
  const json* labels = LabelsOf(object);
  for (const auto& req : requirements_) {
    bool has = labels && labels->contains(req.key) && (*labels)[req.key].is_string();
    std::string value = has ? (*labels)[req.key].get<std::string>() : "";
    bool in_set = has && std::find(req.values.begin(), req.values.end(), value) != req.values.end();
    switch (req.op) {
      case Op::kExists:
        if (!has) return false;
        break;
      case Op::kNotExists:
        if (has) return false;
        break;
      case Op::kEquals:
      case Op::kIn:
        if (!in_set) return false;
        break;
      case Op::kNotEquals:
      case Op::kNotIn:
        if (in_set) return false;
        break;
    }
  }
  return true;
}

Result<FieldSelector> FieldSelector::Parse(const std::string& text) {
  FieldSelector selector;
  if (Trim(text).empty()) return selector;
  size_t at = 0;
  while (at <= text.size()) {
    size_t comma = text.find(',', at);
    std::string part = Trim(text.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
    Requirement req;
    size_t op = part.find("!=");
    size_t op_len = 2;
    req.negate = op != std::string::npos;
    if (op == std::string::npos) op = part.find("==");
    if (op == std::string::npos) {
      op = part.find('=');
      op_len = 1;
    }
    if (op == std::string::npos || op == 0)
      return InvalidArgument("invalid selector: '" + part + "'; can't understand '" + part + "'");
    req.path = Trim(part.substr(0, op));
    req.value = Trim(part.substr(op + op_len));
    selector.requirements_.push_back(req);
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return selector;
}

bool FieldSelector::Matches(const json& object) const {
  for (const auto& req : requirements_) {
    bool equal = FieldText(object, req.path) == req.value;
    if (equal == req.negate) return false;
  }
  return true;
}

std::string FieldSelector::PinnedName() const {
  for (const auto& req : requirements_) {
    if (req.path == "metadata.name" && !req.negate) return req.value;
  }
  return "";
}

json StrategicMergePatch(const json& target, const json& patch) {
  if (!patch.is_object()) return patch;
  std::string directive = patch.value("$patch", "");
  if (directive == "replace") return StripDirectives(patch);
  if (directive == "delete") return nullptr;
  json result = target.is_object() ? target : json::object();
  for (auto it = patch.begin(); it != patch.end(); ++it) {
    const std::string& key = it.key();
    const json& value = it.value();
    const std::string delete_prefix = "$deleteFromPrimitiveList/";
    if (key.rfind(delete_prefix, 0) == 0) {
      DeleteFromPrimitiveList(&result, key.substr(delete_prefix.size()), value);
      continue;
    }
    if (IsDirective(key)) continue;  // $setElementOrder/..., $retainKeys: ordering hints we need not follow
    if (value.is_null()) {
      result.erase(key);
    } else if (value.is_object()) {
      json merged = StrategicMergePatch(result.contains(key) ? result[key] : json(), value);
      if (merged.is_null()) {
        result.erase(key);
      } else {
        result[key] = merged;
      }
    } else if (value.is_array() && result.contains(key) && result[key].is_array()) {
      std::string merge_key = MergeKeyOf(value);
      bool target_keyed = result[key].empty() || MergeKeyOf(result[key]) == merge_key;
      result[key] =
          !merge_key.empty() && target_keyed ? MergeListByKey(result[key], value, merge_key) : StripDirectives(value);
    } else {
      result[key] = StripDirectives(value);
    }
  }
  return result;
}

bool IsDns1123Subdomain(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(name.front()) || !alnum(name.back())) return false;
  return std::all_of(name.begin(), name.end(), [&](char c) { return alnum(c) || c == '-' || c == '.'; });
}

std::vector<json> JsonPathSelect(const json& object, const std::string& path) {
  std::vector<const json*> current = {&object};
  for (const auto& step : ParsePath(path)) {
    std::vector<const json*> next;
    for (const json* node : current) {
      switch (step.kind) {
        case PathStep::kField:
          if (node->is_object() && node->contains(step.field)) next.push_back(&(*node)[step.field]);
          break;
        case PathStep::kIndex: {
          if (!node->is_array()) break;
          long size = static_cast<long>(node->size());
          long i = step.index < 0 ? size + step.index : step.index;
          if (i >= 0 && i < size) next.push_back(&(*node)[static_cast<size_t>(i)]);
          break;
        }
        case PathStep::kAll:
          if (node->is_array() || node->is_object()) {
            for (const auto& item : *node) next.push_back(&item);
          }
          break;
        case PathStep::kFilter:
          if (!node->is_array()) break;
          for (const auto& item : *node) {
            bool equal = FieldText(item, step.field) == step.filter_value;
            if (equal != step.filter_negate) next.push_back(&item);
          }
          break;
      }
    }
    current.swap(next);
  }
  std::vector<json> values;
  for (const json* node : current) values.push_back(*node);
  return values;
}

std::string Base64Encode(const std::string& bytes) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t n = (static_cast<uint8_t>(bytes[i]) << 16) | (static_cast<uint8_t>(bytes[i + 1]) << 8) |
                 static_cast<uint8_t>(bytes[i + 2]);
    out += {kAlphabet[n >> 18], kAlphabet[(n >> 12) & 63], kAlphabet[(n >> 6) & 63], kAlphabet[n & 63]};
  }
  if (i + 1 == bytes.size()) {
    uint32_t n = static_cast<uint8_t>(bytes[i]) << 16;
    out += {kAlphabet[n >> 18], kAlphabet[(n >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    uint32_t n = (static_cast<uint8_t>(bytes[i]) << 16) | (static_cast<uint8_t>(bytes[i + 1]) << 8);
    out += {kAlphabet[n >> 18], kAlphabet[(n >> 12) & 63], kAlphabet[(n >> 6) & 63], '='};
  }
  return out;
}

}  // namespace carapace::testing::kube_double
