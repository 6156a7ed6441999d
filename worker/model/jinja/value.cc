// Template values with Python's printing, truth, equality and JSON.
#include "worker/model/jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace carapace::jinja {

const Value* Dict::Find(std::string_view key) const {
  for (const auto& [k, v] : items) {
    if (k == key) return &v;
  }
  return nullptr;
}

Value* Dict::Find(std::string_view key) {
  for (auto& [k, v] : items) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Dict::Set(std::string key, Value v) {
  if (Value* existing = Find(key)) {
    *existing = std::move(v);
  } else {
    items.emplace_back(std::move(key), std::move(v));
  }
}

Value Value::Undefined(std::string hint) {
  Value v;
  v.s_ = std::make_shared<const std::string>(std::move(hint));
  return v;
}

Value Value::None() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}

Value::Value(bool b) : kind_(Kind::kBool), b_(b) {}
Value::Value(int64_t i) : kind_(Kind::kInt), i_(i) {}
Value::Value(double f) : kind_(Kind::kFloat), f_(f) {}
Value::Value(std::string s) : kind_(Kind::kString) {
  CheckStringSize(s.size());
  s_ = std::make_shared<const std::string>(std::move(s));
}

Value::Value(List l) : kind_(Kind::kList) {
  if (l.size() > kMaxListItems) throw RenderError{"a list of more than 1000000 items"};
  for (const Value& item : l) Contain(item);
  l_ = std::make_shared<const List>(std::move(l));
}

Value::Value(Dict d) : kind_(Kind::kDict) {
  for (const auto& item : d.items) Contain(item.second);
  d_ = std::make_shared<Dict>(std::move(d));
}

void Value::Contain(const Value& item) {
  depth_ = std::max(depth_, item.depth_ + 1);
  if (depth_ > kMaxDepth) throw RenderError{"lists and dicts nested more than 256 deep"};
  holds_namespace_ = holds_namespace_ || item.holds_namespace_;
}

Value Value::Namespace(Dict d) {
  for (const auto& item : d.items) {
    if (item.second.holds_namespace_) throw RenderError{"a namespace cannot hold a namespace"};
  }
  Value v(std::move(d));
  v.kind_ = Kind::kNamespace;
  v.holds_namespace_ = true;
  return v;
}

Value Value::Loop(std::shared_ptr<LoopState> loop) {
  Value v;
  v.kind_ = Kind::kLoop;
  v.loop_ = std::move(loop);
  return v;
}

Value Value::Function(std::shared_ptr<const Callable> c) {
  Value v;
  v.kind_ = Kind::kCallable;
  v.fn_ = std::move(c);
  return v;
}

void CheckStringSize(size_t bytes) {
  if (bytes > kMaxStringBytes) throw RenderError{"a string of more than 64 MiB"};
}

const std::string& Value::undefined_hint() const {
  static const std::string kNone = "a value is undefined";
  return s_ ? *s_ : kNone;
}

bool Value::Truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone: return false;
    case Kind::kBool: return b_;
    case Kind::kInt: return i_ != 0;
    case Kind::kFloat: return f_ != 0;
    case Kind::kString: return !s_->empty();
    case Kind::kList: return !l_->empty();
    case Kind::kDict:
    case Kind::kNamespace: return !d_->items.empty();
    case Kind::kLoop:
    case Kind::kCallable: return true;
  }
  return false;
}

std::string FloatText(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  // The shortest round-trip digits, then Python's choice of layout (float_repr_style 'short').
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific);
  std::string sci(buf, r.ptr);
  const size_t e = sci.find('e');
  std::string mantissa = sci.substr(0, e);
  const int exp = std::stoi(sci.substr(e + 1));
  const bool negative = mantissa[0] == '-';
  if (negative) mantissa.erase(0, 1);
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits += c;
  }
  std::string out;
  if (exp < -4 || exp >= 16) {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char ebuf[16];
    std::snprintf(ebuf, sizeof ebuf, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += ebuf;
  } else if (exp < 0) {
    out = "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
  } else {
    const size_t point = static_cast<size_t>(exp) + 1;
    if (digits.size() <= point) {
      out = digits + std::string(point - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, point) + "." + digits.substr(point);
    }
  }
  return negative ? "-" + out : out;
}

namespace {

std::string StringRepr(const std::string& s) {
  // Python quotes with ' unless the text has ' and no ".
  const char q = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == static_cast<unsigned char>(q)) out += std::string("\\") + q;
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + q;
}

}  // namespace

void Value::AppendTo(std::string* out) const {
  switch (kind_) {
    case Kind::kUndefined: return;
    case Kind::kNone: *out += "None"; return;
    case Kind::kBool: *out += b_ ? "True" : "False"; return;
    case Kind::kInt: *out += std::to_string(i_); return;
    case Kind::kFloat: *out += FloatText(f_); return;
    case Kind::kString: *out += *s_; return;
    default: *out += Repr(); return;
  }
}

std::string Value::ToString() const {
  if (kind_ == Kind::kString) return *s_;
  std::string out;
  AppendTo(&out);
  return out;
}

std::string Value::Repr() const {
  switch (kind_) {
    case Kind::kString: return StringRepr(*s_);
    case Kind::kList: {
      std::string out = "[";
      for (size_t i = 0; i < l_->size(); ++i) {
        out += (i ? ", " : "") + (*l_)[i].Repr();
        CheckStringSize(out.size());
      }
      return out + "]";
    }
    case Kind::kDict: {
      std::string out = "{";
      for (size_t i = 0; i < d_->items.size(); ++i) {
        out += (i ? ", " : "") + StringRepr(d_->items[i].first) + ": " + d_->items[i].second.Repr();
        CheckStringSize(out.size());
      }
      return out + "}";
    }
    case Kind::kNamespace: return "<Namespace>";
    case Kind::kLoop: return "<LoopContext>";
    case Kind::kCallable: return "<function " + fn_->name + ">";
    case Kind::kUndefined: return "";
    default: return ToString();
  }
}

std::string Value::TypeName() const {
  switch (kind_) {
    case Kind::kUndefined: return "Undefined";
    case Kind::kNone: return "NoneType";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kList: return "list";
    case Kind::kDict: return "dict";
    case Kind::kNamespace: return "Namespace";
    case Kind::kLoop: return "LoopContext";
    case Kind::kCallable: return "function";
  }
  return "object";
}

bool Equal(const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.is_number() && b.is_number()) {
    if (a.kind() == K::kInt && b.kind() == K::kInt) return a.as_int() == b.as_int();
    return a.as_double() == b.as_double();
  }
  // Python's bool is an int: True == 1.
  if (a.kind() == K::kBool && b.kind() == K::kBool) return a.as_bool() == b.as_bool();
  if (a.kind() == K::kBool && b.is_number()) return Equal(Value(static_cast<int64_t>(a.as_bool())), b);
  if (b.kind() == K::kBool && a.is_number()) return Equal(a, Value(static_cast<int64_t>(b.as_bool())));
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case K::kUndefined:
    case K::kNone: return true;
    case K::kString: return a.str() == b.str();
    case K::kList:
      return a.list().size() == b.list().size() &&
             std::equal(a.list().begin(), a.list().end(), b.list().begin(), Equal);
    case K::kNamespace: return &a.dict() == &b.dict();
    case K::kLoop: return &a.loop() == &b.loop();
    case K::kDict: {
      if (a.dict().items.size() != b.dict().items.size()) return false;
      for (const auto& [k, v] : a.dict().items) {
        const Value* other = b.dict().Find(k);
        if (other == nullptr || !Equal(v, *other)) return false;
      }
      return true;
    }
    default: return &a.callable() == &b.callable();
  }
}

const Value& CallArgs::Get(size_t index, std::string_view name, const Value& fallback) const {
  if (index < positional.size()) return positional[index];
  for (const auto& [k, v] : keyword) {
    if (k == name) return v;
  }
  return fallback;
}

Value FromJson(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return Value::None();
    case nlohmann::json::value_t::boolean: return Value(j.get<bool>());
    case nlohmann::json::value_t::number_integer: return Value(j.get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const uint64_t u = j.get<uint64_t>();
      return u > static_cast<uint64_t>(INT64_MAX) ? Value(static_cast<double>(u)) : Value(static_cast<int64_t>(u));
    }
    case nlohmann::json::value_t::number_float: return Value(j.get<double>());
    case nlohmann::json::value_t::string: return Value(j.get<std::string>());
    case nlohmann::json::value_t::array: {
      List l;
      l.reserve(j.size());
      for (const auto& e : j) l.push_back(FromJson(e));
      return Value(std::move(l));
    }
    case nlohmann::json::value_t::object: {
      Dict d;
      d.items.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) d.items.emplace_back(it.key(), FromJson(it.value()));
      return Value(std::move(d));
    }
    default: return Value::None();
  }
}

namespace {

// Decodes the UTF-8 code point at s[*i], moving *i past it; a bad byte reads as itself.
uint32_t NextCodePoint(const std::string& s, size_t* i) {
  const auto c = static_cast<unsigned char>(s[*i]);
  const int n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
  if (n <= 0 || *i + static_cast<size_t>(n) >= s.size()) {
    ++*i;
    return c;
  }
  uint32_t cp = c & (0x3F >> n);
  for (int k = 1; k <= n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[*i + static_cast<size_t>(k)]) & 0x3F);
  *i += static_cast<size_t>(n) + 1;
  return cp;
}

void JsonString(const std::string& s, bool ensure_ascii, std::string* out) {
  // ensure_ascii=False (Hugging Face's default): text stays as it is; only what JSON
  // requires is escaped. True: everything past ASCII as \uXXXX (surrogate pairs past BMP).
  *out += '"';
  char buf[16];
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80 && ensure_ascii) {
      const uint32_t cp = NextCodePoint(s, &i);
      if (cp >= 0x10000) {
        std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF));
      } else {
        std::snprintf(buf, sizeof buf, "\\u%04x", cp);
      }
      *out += buf;
      continue;
    }
    ++i;
    switch (c) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      case '\b': *out += "\\b"; break;
      case '\f': *out += "\\f"; break;
      default:
        if (c < 0x20 || (c == 0x7f && ensure_ascii)) {
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          *out += buf;
        } else {
          *out += static_cast<char>(c);
        }
    }
  }
  *out += '"';
}

void Dump(const Value& v, const JsonStyle& style, int depth, std::string* out) {
  using K = Value::Kind;
  auto newline = [&](int d) {
    if (style.indent < 0) return;
    *out += '\n';
    for (int k = 0; k < d; ++k) {
      if (style.indent_text.empty()) out->append(static_cast<size_t>(style.indent), ' ');
      else *out += style.indent_text;
    }
  };
  switch (v.kind()) {
    case K::kNone: *out += "null"; return;
    case K::kBool: *out += v.as_bool() ? "true" : "false"; return;
    case K::kInt: *out += std::to_string(v.as_int()); return;
    case K::kFloat: {
      const double f = v.as_double();
      // Python writes the non-finite floats as JavaScript names.
      *out += std::isnan(f) ? "NaN" : std::isinf(f) ? (f > 0 ? "Infinity" : "-Infinity") : FloatText(f);
      return;
    }
    case K::kString: JsonString(v.str(), style.ensure_ascii, out); return;
    case K::kList: {
      if (v.list().empty()) {
        *out += "[]";
        return;
      }
      *out += '[';
      for (size_t i = 0; i < v.list().size(); ++i) {
        if (i) *out += style.item_separator;
        newline(depth + 1);
        Dump(v.list()[i], style, depth + 1, out);
        CheckStringSize(out->size());
      }
      newline(depth);
      *out += ']';
      return;
    }
    case K::kDict: {
      if (v.dict().items.empty()) {
        *out += "{}";
        return;
      }
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& item : v.dict().items) items.push_back(&item);
      if (style.sort_keys) std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
      *out += '{';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) *out += style.item_separator;
        newline(depth + 1);
        JsonString(items[i]->first, style.ensure_ascii, out);
        *out += style.key_separator;
        Dump(items[i]->second, style, depth + 1, out);
        CheckStringSize(out->size());
      }
      newline(depth);
      *out += '}';
      return;
    }
    default: throw RenderError{"Object of type " + v.TypeName() + " is not JSON serializable"};
  }
}

}  // namespace

std::string ToJsonText(const Value& v, const JsonStyle& style) {
  std::string out;
  Dump(v, style, 0, &out);
  return out;
}

}  // namespace carapace::jinja
