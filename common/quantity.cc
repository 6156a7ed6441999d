#include "common/quantity.h"

#include <cctype>

namespace carapace {
namespace {

using Int = __int128;
constexpr Int kMax = (Int(1) << 120);  // well inside __int128: room for one more x1024

enum class Format { kDecimalSI, kBinarySI, kDecimalExponent };

// value = (negative ? -1 : 1) * mantissa * 10^exponent
struct Parsed {
  bool negative = false;
  Int mantissa = 0;
  int exponent = 0;
  Format format = Format::kDecimalSI;
};

bool MultiplyChecked(Int* v, Int by) {
  if (*v != 0 && by > kMax / *v) return false;
  *v *= by;
  return *v <= kMax;
}

// resource.ParseQuantity (quantity.go, parseQuantityString and quantitySuffixer.interpret).
std::optional<Parsed> Parse(const std::string& s) {
  Parsed p;
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) p.negative = s[i++] == '-';
  bool any_digit = false;
  auto take_digit = [&](char c) {
    if (p.mantissa == 0 && c == '0') return true;  // leading zeros
    return MultiplyChecked(&p.mantissa, 10) && ((p.mantissa += c - '0'), p.mantissa <= kMax);
  };
  for (; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); ++i) {
    any_digit = true;
    if (!take_digit(s[i])) return std::nullopt;
  }
  if (i < s.size() && s[i] == '.') {
    for (++i; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); ++i) {
      any_digit = true;
      if (!take_digit(s[i])) return std::nullopt;
      --p.exponent;
    }
  }
  if (!any_digit) return std::nullopt;
  const std::string suffix = s.substr(i);
  static const std::pair<const char*, int> kDecimal[] = {{"", 0},  {"n", -9}, {"u", -6}, {"m", -3}, {"k", 3},
                                                         {"M", 6}, {"G", 9},  {"T", 12}, {"P", 15}, {"E", 18}};
  static const std::pair<const char*, int> kBinary[] = {{"Ki", 10}, {"Mi", 20}, {"Gi", 30},
                                                        {"Ti", 40}, {"Pi", 50}, {"Ei", 60}};
  for (const auto& [name, power] : kDecimal) {
    if (suffix == name) {
      p.exponent += power;
      return p;
    }
  }
  for (const auto& [name, power] : kBinary) {
    if (suffix == name) {
      if (!MultiplyChecked(&p.mantissa, Int(1) << power)) return std::nullopt;
      p.format = Format::kBinarySI;
      return p;
    }
  }
  if (suffix.size() >= 2 && (suffix[0] == 'e' || suffix[0] == 'E')) {
    size_t j = 1;
    bool minus = false;
    if (suffix[j] == '+' || suffix[j] == '-') minus = suffix[j++] == '-';
    if (j == suffix.size() || suffix.size() - j > 3) return std::nullopt;  // |exponent| < 1000
    int e = 0;
    for (; j < suffix.size(); ++j) {
      if (!std::isdigit(static_cast<unsigned char>(suffix[j]))) return std::nullopt;
      e = e * 10 + (suffix[j] - '0');
    }
    p.exponent += minus ? -e : e;
    p.format = Format::kDecimalExponent;
    return p;
  }
  return std::nullopt;
}

Int Pow10(int n) {
  Int v = 1;
  while (n-- > 0) v *= 10;
  return v;
}

// Strips factors of ten into the exponent, rounds up to 10^-9 (ParseQuantity keeps nothing
// finer), and refuses what cannot be held exactly.
bool Normalise(Parsed* p) {
  if (p->mantissa == 0) {
    p->exponent = 0;
    return true;
  }
  while (p->mantissa % 10 == 0) {
    p->mantissa /= 10;
    ++p->exponent;
  }
  if (p->exponent < -9) {
    const int drop = -9 - p->exponent;
    if (drop > 36) {
      p->mantissa = 1;
    } else {
      const Int unit = Pow10(drop);
      p->mantissa = (p->mantissa + unit - 1) / unit;  // away from zero, as inf.RoundUp
    }
    p->exponent = -9;
    while (p->mantissa % 10 == 0) {
      p->mantissa /= 10;
      ++p->exponent;
    }
  }
  return p->exponent <= 36;  // beyond that no int128 can write the number out
}

std::string ToText(Int v) {
  if (v == 0) return "0";
  std::string out;
  while (v > 0) {
    out.insert(out.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  }
  return out;
}

}  // namespace

std::optional<std::string> CanonicalQuantity(const std::string& text) {
  auto parsed = Parse(text);
  if (!parsed || !Normalise(&*parsed)) return std::nullopt;
  Parsed p = *parsed;
  if (p.mantissa == 0) return "0";
  const std::string sign = p.negative ? "-" : "";
  Format format = p.format;
  if (format == Format::kBinarySI) {
    // CanonicalizeBytes: below 1024, or not a whole number, a binary quantity is written
    // in decimal SI so that nothing is rounded.
    const bool small = p.exponent <= 0 ? p.mantissa < 1024 * Pow10(-p.exponent)
                                       : p.exponent < 4 && p.mantissa * Pow10(p.exponent) < 1024;
    if (small || p.exponent < 0) format = Format::kDecimalSI;
  }
  if (format == Format::kBinarySI) {
    Int whole = p.mantissa;
    if (!MultiplyChecked(&whole, Pow10(p.exponent))) return std::nullopt;
    int power = 0;
    while (whole % 1024 == 0 && power < 60) {
      whole /= 1024;
      power += 10;
    }
    static const char* kSuffix[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
    return sign + ToText(whole) + kSuffix[power / 10];
  }
  // AsCanonicalBytes: an exponent that is a multiple of three.
  Int mantissa = p.mantissa;
  int exponent = p.exponent;
  while (exponent % 3 != 0) {
    if (!MultiplyChecked(&mantissa, 10)) return std::nullopt;
    --exponent;
  }
  std::string suffix;
  if (format == Format::kDecimalExponent) {
    suffix = exponent == 0 ? "" : "e" + std::to_string(exponent);
  } else {
    static const std::pair<int, const char*> kSuffix[] = {{-9, "n"}, {-6, "u"}, {-3, "m"}, {0, ""},  {3, "k"},
                                                          {6, "M"},  {9, "G"},  {12, "T"}, {15, "P"}, {18, "E"}};
    suffix = "e" + std::to_string(exponent);
    for (const auto& [power, name] : kSuffix) {
      if (power == exponent) suffix = name;
    }
  }
  return sign + ToText(mantissa) + suffix;
}

std::optional<std::string> CanonicalQuantity(const nlohmann::json& value) {
  if (value.is_string()) return CanonicalQuantity(value.get<std::string>());
  if (value.is_number_integer() || value.is_number_unsigned()) return CanonicalQuantity(value.dump());
  if (value.is_number_float()) return CanonicalQuantity(value.dump());  // "0.5", "1.0"
  return std::nullopt;
}

std::optional<int64_t> QuantityValue(const std::string& text) {
  auto parsed = Parse(text);
  if (!parsed || !Normalise(&*parsed) || parsed->negative) return std::nullopt;
  Int v = parsed->mantissa;
  if (parsed->exponent >= 0) {
    if (!MultiplyChecked(&v, Pow10(parsed->exponent))) return std::nullopt;
  } else {
    const Int unit = Pow10(-parsed->exponent);
    v = (v + unit - 1) / unit;
  }
  if (v > INT64_MAX) return std::nullopt;
  return static_cast<int64_t>(v);
}

nlohmann::json CanonicalResources(const nlohmann::json& resources) {
  if (!resources.is_object()) return resources;
  nlohmann::json out = nlohmann::json::object();
  for (auto part = resources.begin(); part != resources.end(); ++part) {
    if (!part->is_object()) {
      out[part.key()] = *part;
      continue;
    }
    if (part->empty()) continue;  // map fields are omitempty: the server keeps no empty map
    nlohmann::json quantities = nlohmann::json::object();
    for (auto q = part->begin(); q != part->end(); ++q) {
      auto canonical = CanonicalQuantity(*q);
      quantities[q.key()] = canonical ? nlohmann::json(*canonical) : *q;
    }
    out[part.key()] = std::move(quantities);
  }
  return out;
}

}  // namespace carapace
