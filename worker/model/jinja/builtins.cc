// The built-in filters, tests, functions and methods: Jinja's own and the ones Hugging Face
// adds for chat templates (raise_exception, strftime_now, its tojson), with the meaning
// Python gives them. The set is what published chat templates use; a name outside it fails
// when the template is loaded (builtins.h).
#include "worker/model/jinja/builtins.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <ctime>

#include "common/text.h"
#include "worker/model/jinja/nodes.h"
#include "worker/model/jinja/operations.h"

namespace carapace::jinja {

namespace {

[[noreturn]] void Fail(const std::string& message) { throw RenderError{message}; }

const Value kNoArg = Value::Undefined("missing argument");

std::string ArgString(const CallArgs& args, size_t i, std::string_view name, const std::string& fallback,
                      const char* what) {
  const Value& v = args.Get(i, name, kNoArg);
  if (v.is_undefined()) return fallback;
  if (!v.is_string()) Fail(std::string(what) + ": " + std::string(name) + " must be a string, not " + v.TypeName());
  return v.str();
}


// The length of the whitespace character Python's str.isspace() sees at s[i] (ASCII and
// Unicode's: U+0085, U+00A0, U+1680, U+2000-200A, U+2028/9, U+202F, U+205F, U+3000), or 0.
size_t SpaceAt(const std::string& s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
  auto byte = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0; };
  if (c == 0xC2 && (byte(1) == 0x85 || byte(1) == 0xA0)) return 2;
  if (c == 0xE1 && byte(1) == 0x9A && byte(2) == 0x80) return 3;
  if (c == 0xE2 && byte(1) == 0x80 && (byte(2) <= 0x8A || byte(2) == 0xA8 || byte(2) == 0xA9 || byte(2) == 0xAF)) return 3;
  if (c == 0xE2 && byte(1) == 0x81 && byte(2) == 0x9F) return 3;
  if (c == 0xE3 && byte(1) == 0x80 && byte(2) == 0x80) return 3;
  return 0;
}

// The length of the whitespace character that ends s[0, end), or 0.
size_t SpaceBefore(const std::string& s, size_t end) {
  for (size_t n = 1; n <= 3 && n <= end; ++n) {
    if (SpaceAt(s, end - n) == n) return n;
  }
  return 0;
}

// Python's strip: `chars` as a set of characters (code points), or whitespace when null.
std::string StripChars(const std::string& s, const std::string* chars, bool left, bool right) {
  size_t a = 0, b = s.size();
  if (chars == nullptr) {
    while (left && a < b && SpaceAt(s, a)) a += SpaceAt(s, a);
    while (right && b > a && SpaceBefore(s, b)) b -= SpaceBefore(s, b);
    return s.substr(a, b - a);
  }
  // Each of `chars`' code points, so a multi-byte character is never cut in half.
  std::vector<std::string> set;
  for (size_t i = 0; i < chars->size();) {
    size_t n = 1;
    while (i + n < chars->size() && (static_cast<unsigned char>((*chars)[i + n]) & 0xC0) == 0x80) ++n;
    set.push_back(chars->substr(i, n));
    i += n;
  }
  auto starts = [&](size_t at) -> size_t {
    for (const auto& c : set) {
      if (s.compare(at, c.size(), c) == 0) return c.size();
    }
    return 0;
  };
  auto ends = [&](size_t end) -> size_t {
    for (const auto& c : set) {
      if (c.size() <= end && s.compare(end - c.size(), c.size(), c) == 0) return c.size();
    }
    return 0;
  };
  while (left && a < b && starts(a)) a += starts(a);
  while (right && b > a && ends(b)) b -= ends(b);
  return s.substr(a, b - a);
}

std::string StripSpace(const std::string& s) { return StripChars(s, nullptr, true, true); }

std::string Upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string Capitalize(const std::string& s) {
  std::string out = AsciiLower(s);
  if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}

// Python's str.title(): a letter after a non-letter starts a word ("they're" -> "They'Re").
std::string TitleMethod(const std::string& s) {
  std::string out = s;
  bool after_letter = false;
  for (auto& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalpha(u)) {
      c = static_cast<char>(after_letter ? std::tolower(u) : std::toupper(u));
      after_letter = true;
    } else {
      after_letter = u >= 0x80 && after_letter;  // a non-ASCII letter continues the word
    }
  }
  return out;
}

// Jinja's title filter: words split at runs of -, whitespace, (, {, [ and <, each written
// first letter upper, the rest lower ("get_weather" -> "Get_weather").
std::string TitleFilter(const std::string& s) {
  std::string out = s;
  bool word_start = true;
  for (auto& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || std::isspace(u)) {
      word_start = true;
      continue;
    }
    c = static_cast<char>(word_start ? std::toupper(u) : std::tolower(u));
    word_start = false;
  }
  return out;
}

std::string Replace(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  std::string out;
  if (from.empty()) {
    // Python inserts `to` between every character (and at both ends).
    out = to;
    for (char c : s) {
      out += std::string(1, c) + to;
      CheckStringSize(out.size());
    }
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t at = s.find(from, pos);
    if (at == std::string::npos) break;
    out.append(s, pos, at - pos);
    out += to;
    CheckStringSize(out.size());
    pos = at + from.size();
    ++done;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

List Split(const std::string& s, const Value& sep, int64_t maxsplit) {
  List out;
  if (sep.is_undefined() || sep.is_none()) {
    // Runs of whitespace, none at the ends; past maxsplit the rest stays as it is.
    size_t i = 0;
    while (true) {
      while (i < s.size() && SpaceAt(s, i)) i += SpaceAt(s, i);
      if (i >= s.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        out.emplace_back(s.substr(i));
        break;
      }
      size_t j = i;
      while (j < s.size() && !SpaceAt(s, j)) ++j;
      out.emplace_back(s.substr(i, j - i));
      if (out.size() > kMaxListItems) Fail("a list of more than 1000000 items");
      i = j;
    }
    return out;
  }
  if (!sep.is_string()) Fail("split: the separator must be a string, not " + sep.TypeName());
  if (sep.str().empty()) Fail("split: empty separator");
  size_t pos = 0;
  while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
    const size_t at = s.find(sep.str(), pos);
    if (at == std::string::npos) break;
    out.emplace_back(s.substr(pos, at - pos));
    if (out.size() > kMaxListItems) Fail("a list of more than 1000000 items");
    pos = at + sep.str().size();
  }
  out.emplace_back(s.substr(pos));
  return out;
}

bool StartsOrEnds(const std::string& s, const Value& affix, bool start) {
  auto one = [&](const Value& a) {
    if (!a.is_string()) Fail(std::string(start ? "startswith" : "endswith") + ": the argument must be a string, not " + a.TypeName());
    const std::string& x = a.str();
    if (x.size() > s.size()) return false;
    return start ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0;
  };
  if (affix.kind() == Value::Kind::kList) {
    return std::any_of(affix.list().begin(), affix.list().end(), one);
  }
  return one(affix);
}

// Whether a double converts to int64 without undefined behaviour.
bool InInt64(double f) { return std::isfinite(f) && f > -9.2e18 && f < 9.2e18; }

int64_t ToInt(const Value& v, int64_t fallback) {
  switch (v.kind()) {
    case Value::Kind::kInt: return v.as_int();
    case Value::Kind::kBool: return v.as_bool();
    case Value::Kind::kFloat: return InInt64(v.as_double()) ? static_cast<int64_t>(v.as_double()) : fallback;
    case Value::Kind::kString: {
      const std::string t = StripSpace(v.str());
      char* end = nullptr;
      const long long n = std::strtoll(t.c_str(), &end, 10);
      if (!t.empty() && *end == '\0') return n;
      const double f = std::strtod(t.c_str(), &end);
      if (!t.empty() && *end == '\0' && InInt64(f)) return static_cast<int64_t>(f);
      return fallback;
    }
    default: return fallback;
  }
}

double ToFloat(const Value& v, double fallback) {
  switch (v.kind()) {
    case Value::Kind::kInt:
    case Value::Kind::kFloat: return v.as_double();
    case Value::Kind::kBool: return v.as_bool() ? 1 : 0;
    case Value::Kind::kString: {
      const std::string t = StripSpace(v.str());
      char* end = nullptr;
      const double f = std::strtod(t.c_str(), &end);
      return !t.empty() && *end == '\0' ? f : fallback;
    }
    default: return fallback;
  }
}

// The value's attribute by a dotted path ("function.name"), as map/selectattr/sort take it.
Value Attribute(const Value& v, const std::string& path) {
  Value cur = v;
  size_t pos = 0;
  while (true) {
    const size_t dot = path.find('.', pos);
    const std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (cur.is_undefined()) return cur;
    const bool digits = !part.empty() && part.size() <= 18 &&
                        std::all_of(part.begin(), part.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
    cur = digits && cur.kind() == Value::Kind::kList ? GetItem(cur, Value(static_cast<int64_t>(std::stoll(part))))
                                                     : GetItem(cur, Value(part));
    if (dot == std::string::npos) return cur;
    pos = dot + 1;
  }
}

CallArgs Rest(const CallArgs& args, size_t from) {
  CallArgs rest;
  if (from < args.positional.size()) rest.positional.assign(args.positional.begin() + static_cast<std::ptrdiff_t>(from), args.positional.end());
  rest.keyword = args.keyword;
  return rest;
}

// select / reject / selectattr / rejectattr: args are [attribute,] [test name, test args...].
Value SelectImpl(Context& ctx, const Value& input, const CallArgs& args, bool by_attribute, bool keep) {
  size_t next = 0;
  std::string attribute;
  if (by_attribute) {
    const Value& a = args.Get(0, "attribute", kNoArg);
    if (!a.is_string()) Fail("selectattr: the attribute must be a string");
    attribute = a.str();
    next = 1;
  }
  const Test* test = nullptr;
  if (next < args.positional.size()) {
    const Value& name = args.positional[next];
    if (!name.is_string() || (test = FindTest(name.str())) == nullptr) Fail("no test named " + name.Repr());
  }
  const CallArgs test_args = Rest(args, next + 1);
  List out;
  for (const Value& item : Items(input)) {
    const Value subject = by_attribute ? Attribute(item, attribute) : item;
    const bool pass = test ? test->apply(ctx, subject, test_args) : subject.Truthy();
    if (pass == keep) out.push_back(item);
  }
  return Value(std::move(out));
}

// Hugging Face's tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
// Python's json.dumps with those arguments.
// Jinja's format filter: Python's printf-style `value % args` for %s %r %d %i %f %F %e %E
// %g %G %x %X %o %c and %%, with flags, width and precision.
Value FilterFormat(Context&, const Value& v, const CallArgs& args) {
  if (!args.keyword.empty()) Fail("format: only positional arguments are supported");
  const std::string f = v.ToString();
  std::string out;
  size_t next = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    if (f[i] != '%') {
      out += f[i];
      continue;
    }
    if (++i < f.size() && f[i] == '%') {
      out += '%';
      continue;
    }
    std::string flags, width, precision;
    while (i < f.size() && std::string("-+ 0#").find(f[i]) != std::string::npos) flags += f[i++];
    while (i < f.size() && std::isdigit(static_cast<unsigned char>(f[i]))) width += f[i++];
    if (i < f.size() && f[i] == '.') {
      ++i;
      precision = "0";
      while (i < f.size() && std::isdigit(static_cast<unsigned char>(f[i]))) precision += f[i++];
    }
    if (i >= f.size()) Fail("format: incomplete format");
    if (width.size() > 3 || precision.size() > 4) Fail("format: width and precision must be below 1000");
    if (next >= args.positional.size()) Fail("format: not enough arguments for format string");
    const Value& a = args.positional[next++];
    const char conv = f[i];
    if (conv == 's' || conv == 'r') {
      std::string text = conv == 's' ? a.ToString() : a.Repr();
      if (!precision.empty()) text = text.substr(0, static_cast<size_t>(std::stoi(precision)));
      const size_t w = width.empty() ? 0 : static_cast<size_t>(std::stoi(width));
      const std::string pad(w > text.size() ? w - text.size() : 0, ' ');
      out += flags.find('-') != std::string::npos ? text + pad : pad + text;
      continue;
    }
    // precision holds a leading "0" so that "%.f" reads as precision 0, as in Python.
    const std::string spec = "%" + flags + width + (precision.empty() ? "" : "." + std::to_string(std::stoi(precision)));
    char buf[2048];
    if (std::string("diouxXc").find(conv) != std::string::npos) {
      if (!a.is_number() && a.kind() != Value::Kind::kBool) Fail(std::string("format: %") + conv + " needs a number, not " + a.TypeName());
      const long long n = a.kind() == Value::Kind::kBool ? a.as_bool() : static_cast<long long>(ToInt(a, 0));
      const char c = conv == 'i' || conv == 'u' ? 'd' : conv;
      if (c == 'c') std::snprintf(buf, sizeof buf, (spec + "c").c_str(), static_cast<int>(n));
      else std::snprintf(buf, sizeof buf, (spec + "ll" + c).c_str(), n);
    } else if (std::string("fFeEgG").find(conv) != std::string::npos) {
      if (!a.is_number() && a.kind() != Value::Kind::kBool) Fail(std::string("format: %") + conv + " needs a number, not " + a.TypeName());
      std::snprintf(buf, sizeof buf, (spec + conv).c_str(), ToFloat(a, 0));
    } else {
      Fail(std::string("format: unsupported format character '") + conv + "'");
    }
    out += buf;
    CheckStringSize(out.size());
  }
  if (next < args.positional.size()) Fail("format: not all arguments converted during string formatting");
  return Value(std::move(out));
}

Value FilterTojson(Context&, const Value& v, const CallArgs& args) {
  JsonStyle style;
  style.ensure_ascii = args.Get(0, "ensure_ascii", kNoArg).Truthy();
  const Value& indent = args.Get(1, "indent", kNoArg);
  if (indent.kind() == Value::Kind::kInt) {
    if (indent.as_int() < 0 || indent.as_int() > 64) Fail("tojson: indent must be between 0 and 64");
    style.indent = static_cast<int>(indent.as_int());
  } else if (indent.is_string()) {
    style.indent_text = indent.str();
    style.indent = 1;
  }
  const Value& separators = args.Get(2, "separators", kNoArg);
  if (separators.kind() == Value::Kind::kList) {
    if (separators.list().size() != 2 || !separators.list()[0].is_string() || !separators.list()[1].is_string()) {
      Fail("tojson: separators must be two strings, (item separator, key separator)");
    }
    style.item_separator = separators.list()[0].str();
    style.key_separator = separators.list()[1].str();
  } else {
    style.item_separator = style.indent < 0 ? ", " : ",";
    style.key_separator = ": ";
  }
  style.sort_keys = args.Get(3, "sort_keys", kNoArg).Truthy();
  return Value(ToJsonText(v, style));
}

Value FilterDefault(Context&, const Value& v, const CallArgs& args) {
  static const Value kEmpty("");
  const bool boolean = args.Get(1, "boolean", kNoArg).Truthy();
  if (v.is_undefined() || (boolean && !v.Truthy())) return args.Get(0, "default_value", kEmpty);
  return v;
}

Value FilterJoin(Context&, const Value& v, const CallArgs& args) {
  const std::string sep = ArgString(args, 0, "d", "", "join");
  const Value& attribute = args.Get(1, "attribute", kNoArg);
  std::string out;
  bool first = true;
  for (const Value& item : Items(v)) {
    if (!first) out += sep;
    first = false;
    (attribute.is_string() ? Attribute(item, attribute.str()) : item).AppendTo(&out);
    CheckStringSize(out.size());
  }
  return Value(std::move(out));
}

Value FilterMap(Context& ctx, const Value& v, const CallArgs& args) {
  const Value& attribute = args.Get(99, "attribute", kNoArg);
  List out;
  if (attribute.is_string()) {
    const Value& fallback = args.Get(99, "default", kNoArg);
    for (const Value& item : Items(v)) {
      Value a = Attribute(item, attribute.str());
      out.push_back(a.is_undefined() && !fallback.is_undefined() ? fallback : a);
    }
    return Value(std::move(out));
  }
  const Value& name = args.Get(0, "", kNoArg);
  const Filter* f = name.is_string() ? FindFilter(name.str()) : nullptr;
  if (f == nullptr) Fail("map: no filter named " + name.Repr());
  const CallArgs rest = Rest(args, 1);
  for (const Value& item : Items(v)) out.push_back(f->apply(ctx, item, rest));
  return Value(std::move(out));
}

Value FilterSort(Context&, const Value& v, const CallArgs& args) {
  const bool reverse = args.Get(0, "reverse", kNoArg).Truthy();
  const bool case_sensitive = args.Get(1, "case_sensitive", kNoArg).Truthy();
  const Value& attribute = args.Get(2, "attribute", kNoArg);
  List items = Items(v);
  auto key = [&](const Value& x) {
    Value k = attribute.is_string() ? Attribute(x, attribute.str()) : x;
    return k.is_string() && !case_sensitive ? Value(AsciiLower(k.str())) : k;
  };
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    const int c = Compare(key(a), key(b), "<");
    return reverse ? c > 0 : c < 0;
  });
  return Value(std::move(items));
}

Value FilterDictsort(Context&, const Value& v, const CallArgs& args) {
  if (!v.is_mapping()) Fail("dictsort: expected a dict, not " + v.TypeName());
  const bool by_value = ArgString(args, 1, "by", "key", "dictsort") == "value";
  const bool reverse = args.Get(2, "reverse", kNoArg).Truthy();
  std::vector<std::pair<std::string, Value>> items = v.dict().items;
  std::stable_sort(items.begin(), items.end(), [&](const auto& a, const auto& b) {
    const int c = by_value ? Compare(a.second, b.second, "<") : Compare(Value(AsciiLower(a.first)), Value(AsciiLower(b.first)), "<");
    return reverse ? c > 0 : c < 0;
  });
  List out;
  for (auto& [k, val] : items) out.emplace_back(List{Value(k), val});
  return Value(std::move(out));
}

Value FilterItems(Context&, const Value& v, const CallArgs&) {
  if (v.is_undefined()) return Value(List{});
  if (!v.is_mapping()) Fail("items: expected a dict, not " + v.TypeName());
  List out;
  for (const auto& [k, val] : v.dict().items) out.emplace_back(List{Value(k), val});
  return Value(std::move(out));
}

// Jinja's indent: every line but the first gets the indentation (the first too with
// first=true); empty lines only with blank=true.
Value FilterIndent(Context&, const Value& v, const CallArgs& args) {
  const Value& width = args.Get(0, "width", Value(static_cast<int64_t>(4)));
  if (!width.is_string() && (ToInt(width, 4) < 0 || ToInt(width, 4) > 1000)) Fail("indent: width must be between 0 and 1000");
  const std::string pad = width.is_string() ? width.str() : std::string(static_cast<size_t>(ToInt(width, 4)), ' ');
  const bool first = args.Get(1, "first", kNoArg).Truthy();
  const bool blank = args.Get(2, "blank", kNoArg).Truthy();
  const std::string s = v.ToString() + "\n";  // Jinja's own quirk, for Python's splitlines
  std::vector<std::string> lines;
  for (size_t pos = 0; pos < s.size();) {
    size_t nl = s.find('\n', pos);
    lines.push_back(s.substr(pos, nl - pos));
    pos = nl + 1;
  }
  std::string out = lines[0];
  for (size_t i = 1; i < lines.size(); ++i) {
    out += "\n";
    if (blank || !lines[i].empty()) out += pad;
    out += lines[i];
    CheckStringSize(out.size());
  }
  if (first) out = pad + out;
  return Value(std::move(out));
}

Value MinMax(const Value& v, bool max) {
  List items = Items(v);
  if (items.empty()) return Value::Undefined("no " + std::string(max ? "max" : "min") + " of an empty sequence");
  Value best = items[0];
  for (const Value& x : items) {
    const int c = Compare(x, best, "<");
    if (max ? c > 0 : c < 0) best = x;
  }
  return best;
}

// Jinja's round: Python's round() for "common" (halves to even: 2.5 -> 2.0), math.floor
// and math.ceil otherwise, all giving a float for a float; an integer stays as it is.
Value FilterRound(Context&, const Value& v, const CallArgs& args) {
  const int64_t precision = std::clamp<int64_t>(ToInt(args.Get(0, "precision", kNoArg), 0), -308, 308);
  const std::string method = ArgString(args, 1, "method", "common", "round");
  if (method != "common" && method != "floor" && method != "ceil") Fail("round: method must be common, floor or ceil");
  if (v.kind() == Value::Kind::kInt && method == "common" && precision >= 0) return v;
  if (!v.is_number()) Fail("round: expected a number, not " + v.TypeName());
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double x = v.as_double() * scale;
  const double r = method == "floor" ? std::floor(x) : method == "ceil" ? std::ceil(x) : std::nearbyint(x);
  return r / scale;
}

Value FilterUnique(Context&, const Value& v, const CallArgs&) {
  List out;
  for (const Value& x : Items(v)) {
    if (std::none_of(out.begin(), out.end(), [&](const Value& y) { return Equal(x, y); })) out.push_back(x);
  }
  return Value(std::move(out));
}

Value FilterSum(Context&, const Value& v, const CallArgs& args) {
  const Value& attribute = args.Get(0, "attribute", kNoArg);
  Value total = args.Get(1, "start", Value(static_cast<int64_t>(0)));
  for (const Value& x : Items(v)) total = BinaryOp("+", total, attribute.is_string() ? Attribute(x, attribute.str()) : x);
  return total;
}

Value FilterEscape(Context&, const Value& v, const CallArgs&) {
  std::string out;
  for (char c : v.ToString()) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return Value(std::move(out));
}

Value FilterReverse(Context&, const Value& v, const CallArgs&) {
  if (v.is_string()) return Slice(v, std::nullopt, std::nullopt, -1);
  List items = Items(v);
  std::reverse(items.begin(), items.end());
  return Value(std::move(items));
}

Value FilterFirstLast(const Value& v, bool last) {
  if (v.is_string()) return Length(v) == 0 ? Value::Undefined("the string is empty") : GetItem(v, Value(static_cast<int64_t>(last ? -1 : 0)));
  List items = Items(v);
  if (items.empty()) return Value::Undefined(std::string("no ") + (last ? "last" : "first") + " item of an empty sequence");
  return last ? items.back() : items.front();
}

Value ToList(const Value& v) { return v.kind() == Value::Kind::kList ? v : Value(Items(v)); }

const Filter kFilters[] = {
    {"abs", [](Context&, const Value& v, const CallArgs&) -> Value {
       if (v.kind() == Value::Kind::kInt) {
         if (v.as_int() == INT64_MIN) Fail("integer overflow in abs");
         return std::abs(v.as_int());
       }
       if (v.is_number()) return std::fabs(v.as_double());
       Fail("bad operand type for abs(): '" + v.TypeName() + "'");
     }},
    {"capitalize", [](Context&, const Value& v, const CallArgs&) { return Value(Capitalize(v.ToString())); }},
    {"count", [](Context&, const Value& v, const CallArgs&) { return Value(Length(v)); }},
    {"d", FilterDefault},
    {"default", FilterDefault},
    {"dictsort", FilterDictsort},
    {"e", FilterEscape},
    {"escape", FilterEscape},
    {"first", [](Context&, const Value& v, const CallArgs&) { return FilterFirstLast(v, false); }},
    {"float", [](Context&, const Value& v, const CallArgs& a) {
       if (v.is_undefined()) UseOfUndefined(v);
       return Value(ToFloat(v, ToFloat(a.Get(0, "default", kNoArg), 0.0)));
     }},
    {"format", FilterFormat},
    {"indent", FilterIndent},
    {"int", [](Context&, const Value& v, const CallArgs& a) {
       if (v.is_undefined()) UseOfUndefined(v);
       return Value(ToInt(v, ToInt(a.Get(0, "default", kNoArg), 0)));
     }},
    {"items", FilterItems},
    {"join", FilterJoin},
    {"last", [](Context&, const Value& v, const CallArgs&) { return FilterFirstLast(v, true); }},
    {"length", [](Context&, const Value& v, const CallArgs&) { return Value(Length(v)); }},
    {"list", [](Context&, const Value& v, const CallArgs&) { return ToList(v); }},
    {"lower", [](Context&, const Value& v, const CallArgs&) { return Value(AsciiLower(v.ToString())); }},
    {"map", FilterMap},
    {"max", [](Context&, const Value& v, const CallArgs&) { return MinMax(v, true); }},
    {"min", [](Context&, const Value& v, const CallArgs&) { return MinMax(v, false); }},
    {"reject", [](Context& c, const Value& v, const CallArgs& a) { return SelectImpl(c, v, a, false, false); }},
    {"rejectattr", [](Context& c, const Value& v, const CallArgs& a) { return SelectImpl(c, v, a, true, false); }},
    {"replace", [](Context&, const Value& v, const CallArgs& a) {
       return Value(Replace(v.ToString(), ArgString(a, 0, "old", "", "replace"), ArgString(a, 1, "new", "", "replace"),
                            ToInt(a.Get(2, "count", kNoArg), -1)));
     }},
    {"reverse", FilterReverse},
    {"round", FilterRound},
    {"safe", [](Context&, const Value& v, const CallArgs&) { return v; }},
    {"select", [](Context& c, const Value& v, const CallArgs& a) { return SelectImpl(c, v, a, false, true); }},
    {"selectattr", [](Context& c, const Value& v, const CallArgs& a) { return SelectImpl(c, v, a, true, true); }},
    {"sort", FilterSort},
    {"string", [](Context&, const Value& v, const CallArgs&) { return Value(v.ToString()); }},
    {"sum", FilterSum},
    {"title", [](Context&, const Value& v, const CallArgs&) { return Value(TitleFilter(v.ToString())); }},
    {"tojson", FilterTojson},
    {"trim", [](Context&, const Value& v, const CallArgs& a) {
       const Value& chars = a.Get(0, "chars", kNoArg);
       if (!chars.is_undefined() && !chars.is_none() && !chars.is_string()) Fail("trim: chars must be a string");
       return Value(StripChars(v.ToString(), chars.is_string() ? &chars.str() : nullptr, true, true));
     }},
    {"unique", FilterUnique},
    {"upper", [](Context&, const Value& v, const CallArgs&) { return Value(Upper(v.ToString())); }},
    {"wordcount", [](Context&, const Value& v, const CallArgs&) {
       return Value(static_cast<int64_t>(Split(v.ToString(), Value::None(), -1).size()));
     }},
};

bool CompareTest(const Value& v, const CallArgs& a, const char* op) {
  return BinaryOp(op, v, a.Get(0, "other", kNoArg)).as_bool();
}

const Test kTests[] = {
    {"boolean", [](Context&, const Value& v, const CallArgs&) { return v.kind() == Value::Kind::kBool; }},
    {"callable", [](Context&, const Value& v, const CallArgs&) { return v.kind() == Value::Kind::kCallable; }},
    {"defined", [](Context&, const Value& v, const CallArgs&) { return !v.is_undefined(); }},
    {"divisibleby", [](Context&, const Value& v, const CallArgs& a) {
       const int64_t n = ToInt(a.Get(0, "num", kNoArg), 0);
       if (n == 0) Fail("divisibleby: division by zero");
       return n == -1 || ToInt(v, 1) % n == 0;
     }},
    {"eq", [](Context&, const Value& v, const CallArgs& a) { return CompareTest(v, a, "=="); }},
    {"equalto", [](Context&, const Value& v, const CallArgs& a) { return CompareTest(v, a, "=="); }},
    {"==", [](Context&, const Value& v, const CallArgs& a) { return CompareTest(v, a, "=="); }},
    {"even", [](Context&, const Value& v, const CallArgs&) { return v.kind() == Value::Kind::kInt && v.as_int() % 2 == 0; }},
    {"false", [](Context&, const Value& v, const CallArgs&) { return v.kind() == Value::Kind::kBool && !v.as_bool(); }},
    {"float", [](Context&, const Value& v, const CallArgs&) { return v.kind() == Value::Kind::kFloat; }},
    {"ge", [](Context&, const Value& v, const CallArgs& a) { return CompareTest(v, a, ">="); }},
    {">=", [](Context&, const Value& v, const CallArgs& a) { return CompareTest(v, a, ">="); }},
    {"gt", [](Context&, const Value& v, const CallArgs& a) { return CompareTest(v, a, ">"); }},
    {"greaterthan", [](Context&, const Value& v, const CallArgs& a) { return CompareTest(v, a, ">"); }},
    {">", [](Context&, const Value& v, const CallArgs& a) { return CompareTest(v, a, ">"); }},
    {"in", [](Context&, const Value& v, const CallArgs& a) { return Contains(a.Get(0, "seq", kNoArg), v); }},
    {"integer", [](Context&, const Value& v, const CallArgs&) { return v.kind() == Value::Kind::kInt; }},
    // Jinja's Undefined iterates as empty: it is iterable, and a sequence.
    {"iterable", [](Context&, const Value& v, const CallArgs&) {
       return v.is_string() || v.kind() == Value::Kind::kList || v.is_mapping() || v.is_undefined();
     }},
    {"le", [](Context&, const Value& v, const CallArgs& a) { return CompareTest(v, a, "<="); }},
    {"<=", [](Context&, const Value& v, const CallArgs& a) { return CompareTest(v, a, "<="); }},
    {"lower", [](Context&, const Value& v, const CallArgs&) { return v.is_string() && AsciiLower(v.str()) == v.str(); }},
    {"lt", [](Context&, const Value& v, const CallArgs& a) { return CompareTest(v, a, "<"); }},
    {"lessthan", [](Context&, const Value& v, const CallArgs& a) { return CompareTest(v, a, "<"); }},
    {"<", [](Context&, const Value& v, const CallArgs& a) { return CompareTest(v, a, "<"); }},
    {"mapping", [](Context&, const Value& v, const CallArgs&) { return v.is_mapping(); }},
    {"ne", [](Context&, const Value& v, const CallArgs& a) { return CompareTest(v, a, "!="); }},
    {"!=", [](Context&, const Value& v, const CallArgs& a) { return CompareTest(v, a, "!="); }},
    {"none", [](Context&, const Value& v, const CallArgs&) { return v.is_none(); }},
    {"number", [](Context&, const Value& v, const CallArgs&) { return v.is_number() || v.kind() == Value::Kind::kBool; }},
    {"odd", [](Context&, const Value& v, const CallArgs&) { return v.kind() == Value::Kind::kInt && v.as_int() % 2 != 0; }},
    {"sameas", [](Context&, const Value& v, const CallArgs& a) {
       const Value& o = a.Get(0, "other", kNoArg);
       return v.kind() == o.kind() && (v.is_none() || v.is_undefined() || (v.kind() == Value::Kind::kBool && v.as_bool() == o.as_bool()));
     }},
    {"sequence", [](Context&, const Value& v, const CallArgs&) {
       return v.is_string() || v.kind() == Value::Kind::kList || v.is_mapping() || v.is_undefined();
     }},
    {"string", [](Context&, const Value& v, const CallArgs&) { return v.is_string(); }},
    {"true", [](Context&, const Value& v, const CallArgs&) { return v.kind() == Value::Kind::kBool && v.as_bool(); }},
    {"undefined", [](Context&, const Value& v, const CallArgs&) { return v.is_undefined(); }},
    {"upper", [](Context&, const Value& v, const CallArgs&) { return v.is_string() && Upper(v.str()) == v.str(); }},
};

Value FnRange(Context&, const CallArgs& a) {
  int64_t start = 0, stop = 0, step = 1;
  auto arg = [&](size_t i) {
    const Value& v = a.Get(i, "", kNoArg);
    if (v.kind() != Value::Kind::kInt) Fail("range: arguments must be integers, not " + v.TypeName());
    return v.as_int();
  };
  if (a.positional.size() == 1) stop = arg(0);
  else if (a.positional.size() >= 2) start = arg(0), stop = arg(1);
  if (a.positional.size() >= 3) step = arg(2);
  if (step == 0) Fail("range: step must not be zero");
  List out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
    if (out.size() >= 100000) Fail("range: more than 100000 items");
    out.emplace_back(i);
    if (__builtin_add_overflow(i, step, &i)) break;
  }
  return Value(std::move(out));
}

Value FnNamespace(Context&, const CallArgs& a) {
  Dict d;
  for (const Value& p : a.positional) {
    if (p.is_mapping()) d.items.insert(d.items.end(), p.dict().items.begin(), p.dict().items.end());
  }
  for (const auto& [k, v] : a.keyword) d.Set(k, v);
  return Value::Namespace(std::move(d));
}

Value FnDict(Context&, const CallArgs& a) {
  Dict d;
  for (const Value& p : a.positional) {
    if (p.is_mapping()) d.items.insert(d.items.end(), p.dict().items.begin(), p.dict().items.end());
  }
  for (const auto& [k, v] : a.keyword) d.Set(k, v);
  return Value(std::move(d));
}

Value FnRaise(Context&, const CallArgs& a) {
  throw RenderError{"the chat template raised an error: " + a.Get(0, "message", Value("")).ToString()};
}

Value FnStrftimeNow(Context&, const CallArgs& a) {
  const Value& format = a.Get(0, "format", kNoArg);
  if (!format.is_string()) Fail("strftime_now: the format must be a string");
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[256];
  const size_t n = std::strftime(buf, sizeof buf, format.str().c_str(), &tm);
  return Value(std::string(buf, n));
}

const Function kFunctions[] = {
    {"dict", FnDict},
    {"namespace", FnNamespace},
    {"raise_exception", FnRaise},
    {"range", FnRange},
    {"strftime_now", FnStrftimeNow},
};

constexpr std::string_view kStringMethods[] = {"capitalize", "count",      "endswith",     "find",    "isalnum",
                                               "isalpha",    "isdigit",    "islower",      "isspace", "isupper",
                                               "join",       "lower",      "lstrip",       "removeprefix",
                                               "removesuffix", "replace",  "rfind",        "rstrip",  "split",
                                               "splitlines", "startswith", "strip",        "title",   "upper"};
constexpr std::string_view kDictMethods[] = {"get", "items", "keys", "values"};

template <size_t N>
bool In(const std::string_view (&names)[N], std::string_view name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

Value StringMethod(const std::string& s, const std::string& name, const CallArgs& a) {
  const Value& chars_arg = a.Get(0, "chars", kNoArg);
  const std::string* chars = chars_arg.is_string() ? &chars_arg.str() : nullptr;  // none: whitespace
  if (name == "strip") return Value(StripChars(s, chars, true, true));
  if (name == "lstrip") return Value(StripChars(s, chars, true, false));
  if (name == "rstrip") return Value(StripChars(s, chars, false, true));
  if (name == "removeprefix" || name == "removesuffix") {
    const std::string affix = ArgString(a, 0, "prefix", "", name.c_str());
    if (name == "removeprefix") return Value(s.compare(0, affix.size(), affix) == 0 ? s.substr(affix.size()) : s);
    const bool ends = affix.size() <= s.size() && s.compare(s.size() - affix.size(), affix.size(), affix) == 0;
    return Value(ends ? s.substr(0, s.size() - affix.size()) : s);
  }
  if (name == "isspace") {
    if (s.empty()) return false;
    for (size_t i = 0; i < s.size();) {
      const size_t n = SpaceAt(s, i);
      if (n == 0) return false;
      i += n;
    }
    return true;
  }
  auto all_ascii = [&](int (*pred)(int)) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [&](char c) { return pred(static_cast<unsigned char>(c)) != 0; });
  };
  if (name == "isalpha") return all_ascii(std::isalpha);
  if (name == "isalnum") return all_ascii(std::isalnum);
  if (name == "islower") return s != Upper(s) && s == AsciiLower(s);
  if (name == "isupper") return s != AsciiLower(s) && s == Upper(s);
  if (name == "startswith") return StartsOrEnds(s, a.Get(0, "prefix", kNoArg), true);
  if (name == "endswith") return StartsOrEnds(s, a.Get(0, "suffix", kNoArg), false);
  if (name == "split") return Value(Split(s, a.Get(0, "sep", kNoArg), ToInt(a.Get(1, "maxsplit", kNoArg), -1)));
  if (name == "splitlines") {
    List out;
    size_t pos = 0;
    while (pos < s.size()) {
      const size_t nl = s.find('\n', pos);
      std::string line = s.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      out.emplace_back(std::move(line));
      if (out.size() > kMaxListItems) Fail("a list of more than 1000000 items");
      if (nl == std::string::npos) break;
      pos = nl + 1;
    }
    return Value(std::move(out));
  }
  if (name == "upper") return Value(Upper(s));
  if (name == "lower") return Value(AsciiLower(s));
  if (name == "title") return Value(TitleMethod(s));
  if (name == "capitalize") return Value(Capitalize(s));
  if (name == "replace") {
    return Value(Replace(s, ArgString(a, 0, "old", "", "replace"), ArgString(a, 1, "new", "", "replace"),
                         ToInt(a.Get(2, "count", kNoArg), -1)));
  }
  if (name == "find" || name == "rfind") {
    const std::string sub = ArgString(a, 0, "sub", "", name.c_str());
    const size_t at = name == "find" ? s.find(sub) : s.rfind(sub);
    if (at == std::string::npos) return static_cast<int64_t>(-1);
    // Python counts characters, as slicing does, not bytes.
    return Length(Value(s.substr(0, at)));
  }
  if (name == "count") {
    const std::string sub = ArgString(a, 0, "sub", "", "count");
    if (sub.empty()) return Length(Value(s)) + 1;
    int64_t n = 0;
    for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
    return n;
  }
  if (name == "isdigit") return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
  if (name == "join") {
    std::string out;
    bool first = true;
    for (const Value& item : Items(a.Get(0, "iterable", kNoArg))) {
      if (!item.is_string()) Fail("join: sequence item must be str, not " + item.TypeName());
      if (!first) out += s;
      first = false;
      out += item.str();
      CheckStringSize(out.size());
    }
    return Value(std::move(out));
  }
  Fail("'str' object has no attribute '" + name + "'");
}

}  // namespace

const Filter* FindFilter(std::string_view name) {
  for (const auto& f : kFilters) {
    if (name == f.name) return &f;
  }
  return nullptr;
}

const Test* FindTest(std::string_view name) {
  for (const auto& t : kTests) {
    if (name == t.name) return &t;
  }
  return nullptr;
}

const Function* FindFunction(std::string_view name) {
  for (const auto& f : kFunctions) {
    if (name == f.name) return &f;
  }
  return nullptr;
}

Value BuiltinValue(const Function& f) {
  // One callable per built-in, made once: looking one up must not allocate each time.
  static const std::vector<Value> kValues = [] {
    std::vector<Value> values;
    for (const auto& fn : kFunctions) {
      auto c = std::make_shared<Callable>();
      c->name = fn.name;
      c->call = fn.call;
      values.push_back(Value::Function(std::move(c)));
    }
    return values;
  }();
  return kValues[static_cast<size_t>(&f - kFunctions)];
}

bool IsKnownMethod(std::string_view name) {
  return In(kStringMethods, name) || In(kDictMethods, name) || name == "cycle";
}

bool HasMethod(const Value& self, std::string_view name) {
  switch (self.kind()) {
    case Value::Kind::kString: return In(kStringMethods, name);
    case Value::Kind::kDict: return In(kDictMethods, name);
    case Value::Kind::kLoop: return name == "cycle";
    default: return false;
  }
}

Value CallMethod(Context&, const Value& self, const std::string& name, const CallArgs& a) {
  if (self.is_undefined()) UseOfUndefined(self);
  if (!HasMethod(self, name)) Fail("'" + self.TypeName() + " object' has no method '" + name + "'");
  if (self.is_string()) return StringMethod(self.str(), name, a);
  if (self.kind() == Value::Kind::kLoop) {
    if (a.positional.empty()) Fail("loop.cycle: no items");
    return a.positional[self.loop().index0 % a.positional.size()];
  }
  const Dict& d = self.dict();
  if (name == "get") {
    const Value& key = a.Get(0, "key", kNoArg);
    const Value* found = key.is_string() ? d.Find(key.str()) : nullptr;
    static const Value kNoneValue = Value::None();
    return found ? *found : a.Get(1, "default", kNoneValue);
  }
  List out;
  for (const auto& [k, v] : d.items) {
    if (name == "items") out.emplace_back(List{Value(k), v});
    else if (name == "keys") out.emplace_back(k);
    else out.push_back(v);
  }
  return Value(std::move(out));
}

}  // namespace carapace::jinja
