// YAML 1.1 as kubectl and Helm read it, next to the YAML 1.2 the manifest reader uses: see
// yaml11.h. Models go-yaml v2's resolve() (sigs.k8s.io/yaml uses it) for plain scalars.
#include "common/yaml11.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iomanip>
#include <limits>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include "common/manifest.h"

namespace carapace {

namespace {

// What a plain scalar means to one YAML reader, in JSON terms: numbers compare by value
// (the API server gets JSON, where 8 and 8.0 are the same number).
struct Reading {
  enum Kind { kNull, kBool, kNumber, kString } kind = kString;
  bool boolean = false;
  long double number = 0;  // exact for every int64, uint64 and double
  bool operator==(const Reading& o) const {
    if (kind != o.kind) return false;
    if (kind == kBool) return boolean == o.boolean;
    if (kind == kNumber) return number == o.number;  // NaN equals nothing
    return true;
  }
};

Reading NumberReading(long double v) {
  Reading r;
  r.kind = Reading::kNumber;
  r.number = v;
  return r;
}

// YamlToJson's reading (YAML 1.2 core schema; out-of-range numbers stay text).
Reading Yaml12Reading(const YAML::Node& node) {
  nlohmann::json j = YamlToJson(node);
  Reading r;
  if (j.is_null()) r.kind = Reading::kNull;
  else if (j.is_boolean()) r.kind = Reading::kBool, r.boolean = j.get<bool>();
  else if (j.is_number_integer()) r = NumberReading(static_cast<long double>(j.get<int64_t>()));
  else if (j.is_number_float()) r = NumberReading(static_cast<long double>(j.get<double>()));
  return r;
}

// Go's strconv.ParseUint(s, 0, 64): 0b/0o/0x prefixes, a leading 0 means octal.
std::optional<uint64_t> GoParseUint(std::string_view s) {
  if (s.empty()) return std::nullopt;
  unsigned base = 10;
  if (s[0] == '0') {
    const char p = s.size() >= 3 ? static_cast<char>(std::tolower(static_cast<unsigned char>(s[1]))) : '\0';
    if (p == 'b' || p == 'o' || p == 'x') {
      base = p == 'b' ? 2 : p == 'o' ? 8 : 16;
      s.remove_prefix(2);
    } else {
      base = 8;
      s.remove_prefix(1);
    }
  }
  uint64_t v = 0;
  for (char c : s) {
    unsigned d;
    if (c >= '0' && c <= '9') d = static_cast<unsigned>(c - '0');
    else if (c >= 'a' && c <= 'f') d = static_cast<unsigned>(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') d = static_cast<unsigned>(c - 'A' + 10);
    else return std::nullopt;
    if (d >= base || v > (UINT64_MAX - d) / base) return std::nullopt;
    v = v * base + d;
  }
  return v;
}

// Go's strconv.ParseInt(s, 0, 64): an optional sign, then GoParseUint within int64.
std::optional<long double> GoParseInt(std::string_view s, unsigned base_override = 0) {
  bool neg = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  std::optional<uint64_t> u;
  if (base_override == 2) {  // ParseInt(s, 2, 64): binary digits only
    if (s.empty() || s.find_first_not_of("01") != std::string_view::npos || s.size() > 64) return std::nullopt;
    u = std::stoull(std::string(s), nullptr, 2);
  } else {
    if (s.empty() || s[0] == '+' || s[0] == '-') return std::nullopt;
    u = GoParseUint(s);
  }
  if (!u) return std::nullopt;
  if (!neg && *u > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
  if (neg && *u > static_cast<uint64_t>(INT64_MAX) + 1) return std::nullopt;
  return neg ? -static_cast<long double>(*u) : static_cast<long double>(*u);
}

// Go's strconv.ParseFloat(s, 64) for the decimal forms go-yaml lets through; an overflow
// is an error there, so text.
std::optional<long double> GoParseFloat(const std::string& s) {
  errno = 0;
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || (errno == ERANGE && std::isinf(d))) return std::nullopt;
  return static_cast<long double>(d);
}

// How go-yaml v2's resolve() (what sigs.k8s.io/yaml, and so kubectl and Helm, use) types a
// plain scalar. Timestamps are not modelled: decoded into interface{} they stay strings, and
// go-yaml has no sexagesimal numbers (1:30 is text), unlike the YAML 1.1 spec.
Reading Yaml11Reading(const std::string& in) {
  static const std::set<std::string> kTrue = {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"};
  static const std::set<std::string> kFalse = {"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"};
  static const std::set<std::string> kNull = {"", "~", "null", "Null", "NULL"};
  static const std::set<std::string> kNan = {".nan", ".NaN", ".NAN"};
  static const std::set<std::string> kInf = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"};
  static const std::set<std::string> kNegInf = {"-.inf", "-.Inf", "-.INF"};
  static const std::regex kGoFloat(R"(^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$)");
  static const std::regex kDotFloat(R"(^\.[0-9]+(_[0-9]+)*([eE][-+]?[0-9]+(_[0-9]+)*)?$)");
  Reading r;
  const char c = in.empty() ? 'N' : in[0];
  const bool sign_or_digit = c == '+' || c == '-' || (c >= '0' && c <= '9');
  if (!sign_or_digit && c != '.' && std::string("yYnNtTfFoO~").find(c) == std::string::npos) return r;
  if (kTrue.count(in) || kFalse.count(in)) {
    r.kind = Reading::kBool;
    r.boolean = kTrue.count(in) > 0;
    return r;
  }
  if (kNull.count(in)) {
    r.kind = Reading::kNull;
    return r;
  }
  if (kNan.count(in)) return NumberReading(std::numeric_limits<long double>::quiet_NaN());
  if (kInf.count(in)) return NumberReading(std::numeric_limits<long double>::infinity());
  if (kNegInf.count(in)) return NumberReading(-std::numeric_limits<long double>::infinity());
  if (c == '.') {
    // strconv.ParseFloat(in): underscores only between digits.
    if (std::regex_match(in, kDotFloat)) {
      std::string plain = in;
      plain.erase(std::remove(plain.begin(), plain.end(), '_'), plain.end());
      if (auto f = GoParseFloat(plain)) return NumberReading(*f);
    }
    return r;
  }
  if (!sign_or_digit) return r;
  // go-yaml drops every underscore first, then tries int, uint, float and 0b binary.
  std::string plain = in;
  plain.erase(std::remove(plain.begin(), plain.end(), '_'), plain.end());
  if (auto i = GoParseInt(plain)) return NumberReading(*i);
  if (plain[0] != '+' && plain[0] != '-') {
    if (auto u = GoParseUint(plain)) return NumberReading(static_cast<long double>(*u));
  }
  if (std::regex_match(plain, kGoFloat)) {
    if (auto f = GoParseFloat(plain)) return NumberReading(*f);
  }
  if (plain.rfind("0b", 0) == 0) {
    if (auto i = GoParseInt(std::string_view(plain).substr(2), 2)) return NumberReading(*i);
  } else if (plain.rfind("-0b", 0) == 0) {
    if (auto i = GoParseInt("-" + plain.substr(3), 2)) return NumberReading(*i);
  }
  return r;
}

std::string Describe(const Reading& r) {
  switch (r.kind) {
    case Reading::kNull: return "null";
    case Reading::kBool: return std::string("the boolean ") + (r.boolean ? "true" : "false");
    case Reading::kString: return "a string";
    case Reading::kNumber: break;
  }
  if (std::isnan(r.number)) return "NaN";
  if (std::isinf(r.number)) return r.number > 0 ? "infinity" : "-infinity";
  std::ostringstream out;
  out << "the number ";
  if (r.number == std::floor(r.number) && std::fabs(r.number) < 1e18L) out << static_cast<int64_t>(r.number);
  else out << std::setprecision(17) << static_cast<double>(r.number);
  return out.str();
}

// Whether the JSON key sigs.k8s.io/yaml makes of a key go-yaml typed is the key's own text:
// not for True (-> "true"), y (-> "true") or 010 (-> "8"); floats and null are not
// predicted and count as changed.
bool KeyKeepsItsText(const std::string& text, const Reading& r) {
  switch (r.kind) {
    case Reading::kString: return true;
    case Reading::kBool: return text == (r.boolean ? "true" : "false");
    case Reading::kNumber: {
      if (r.number != std::floor(r.number) || std::isinf(r.number)) return false;
      std::ostringstream out;
      out << std::setprecision(20) << r.number;
      return out.str() == text;
    }
    case Reading::kNull: return false;
  }
  return false;
}

bool IsPlain(const YAML::Node& n) { return n.IsDefined() && (n.IsScalar() || n.IsNull()) && n.Tag() == "?"; }

}  // namespace

void CheckYaml11Scalars(const YAML::Node& node, const std::string& path, ManifestErrors* errors) {
  if (node.IsMap()) {
    for (const auto& kv : node) {
      if (!kv.first.IsScalar() && !kv.first.IsNull()) continue;  // complex keys: reported elsewhere
      const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "";
      const std::string child = path.empty() ? key : path + "." + key;
      if (IsPlain(kv.first)) {
        Reading r11 = Yaml11Reading(key);
        if (!KeyKeepsItsText(key, r11)) {
          errors->Add(kv.first, child, "the key \"" + key + "\" is read as " + Describe(r11) +
                                           " by kubectl (YAML 1.1), not as the text \"" + key + "\"; quote it");
        }
      }
      CheckYaml11Scalars(kv.second, child, errors);
    }
  } else if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i) CheckYaml11Scalars(node[i], path + "[" + std::to_string(i) + "]", errors);
  } else if (IsPlain(node) && node.IsScalar()) {
    Reading r11 = Yaml11Reading(node.Scalar());
    Reading r12 = Yaml12Reading(node);
    if (!(r11 == r12)) {
      std::string msg = "\"" + node.Scalar() + "\" is read as " + Describe(r11) + " by kubectl (YAML 1.1) but as " +
                        Describe(r12) + " here; quote it";
      if (r11.kind == Reading::kNumber && r12.kind != Reading::kString) msg += ", or write the number in plain decimal";
      errors->Add(node, path, msg);
    }
  }
}

}  // namespace carapace
