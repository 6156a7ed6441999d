// Look-ups, iteration and operators with Python's meaning.
#include "worker/model/jinja/operations.h"

#include <cmath>

#include "common/text.h"
#include "worker/model/jinja/builtins.h"

namespace carapace::jinja {

namespace {

[[noreturn]] void TypeError(const std::string& message) { throw RenderError{message}; }

// Positions of the UTF-8 code points of `s`: Python indexes strings by code point.
std::vector<size_t> CodePoints(const std::string& s) {
  std::vector<size_t> starts;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) starts.push_back(i);
  }
  return starts;
}

bool IsAscii(const std::string& s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return false;
  }
  return true;
}

}  // namespace

void UseOfUndefined(const Value& v) { throw RenderError{v.undefined_hint()}; }

Value GetAttr(const Value& object, const std::string& name) {
  switch (object.kind()) {
    case Value::Kind::kUndefined: UseOfUndefined(object);
    case Value::Kind::kDict:
      if (HasMethod(object, name)) break;
      [[fallthrough]];
    case Value::Kind::kNamespace:
      if (const Value* v = object.dict().Find(name)) return *v;
      return Value::Undefined("'" + object.TypeName() + " object' has no attribute '" + name + "'");
    case Value::Kind::kLoop: {
      const LoopState& l = object.loop();
      const auto n = static_cast<int64_t>(l.items->size());
      const auto i = static_cast<int64_t>(l.index0);
      if (name == "index") return i + 1;
      if (name == "index0") return i;
      if (name == "revindex") return n - i;
      if (name == "revindex0") return n - i - 1;
      if (name == "first") return i == 0;
      if (name == "last") return i == n - 1;
      if (name == "length") return n;
      if (name == "depth") return 1;
      if (name == "depth0") return 0;
      if (name == "previtem") return i > 0 ? (*l.items)[l.index0 - 1] : Value::Undefined("there is no previous item");
      if (name == "nextitem") return i + 1 < n ? (*l.items)[l.index0 + 1] : Value::Undefined("there is no next item");
      break;
    }
    default: break;
  }
  if (HasMethod(object, name)) {
    auto self = std::make_shared<Value>(object);
    auto bound = std::make_shared<Callable>();
    bound->name = name;
    bound->call = [self, name](Context& ctx, const CallArgs& args) { return CallMethod(ctx, *self, name, args); };
    return Value::Function(std::move(bound));
  }
  return Value::Undefined("'" + object.TypeName() + " object' has no attribute '" + name + "'");
}

Value GetItem(const Value& object, const Value& key) {
  switch (object.kind()) {
    case Value::Kind::kUndefined: UseOfUndefined(object);
    case Value::Kind::kDict:
    case Value::Kind::kNamespace:
      if (key.is_string()) {
        if (const Value* v = object.dict().Find(key.str())) return *v;
        if (HasMethod(object, key.str())) return GetAttr(object, key.str());
        return Value::Undefined("'" + object.TypeName() + " object' has no attribute '" + key.str() + "'");
      }
      return Value::Undefined("'" + object.TypeName() + " object' has no key " + key.Repr());
    case Value::Kind::kList:
    case Value::Kind::kString: {
      if (key.kind() != Value::Kind::kInt) {
        if (object.is_string() && key.is_string()) return GetAttr(object, key.str());
        // Jinja's getitem turns Python's TypeError into an undefined value.
        return Value::Undefined(object.TypeName() + " indices must be integers, not " + key.TypeName());
      }
      const int64_t n = Length(object);
      int64_t i = key.as_int();
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::Undefined(object.TypeName() + " index out of range");
      if (object.kind() == Value::Kind::kList) return object.list()[static_cast<size_t>(i)];
      return Slice(object, i, i + 1, std::nullopt);
    }
    case Value::Kind::kLoop:
      if (key.is_string()) return GetAttr(object, key.str());
      break;
    default: break;
  }
  return Value::Undefined("'" + object.TypeName() + " object' has no item " + key.Repr());
}

Value Slice(const Value& object, const std::optional<int64_t>& start, const std::optional<int64_t>& stop,
            const std::optional<int64_t>& step_arg) {
  if (object.is_undefined()) UseOfUndefined(object);
  if (object.kind() != Value::Kind::kList && !object.is_string()) {
    TypeError("'" + object.TypeName() + "' object is not subscriptable");
  }
  const int64_t step = step_arg.value_or(1);
  if (step == 0) TypeError("slice step cannot be zero");
  const int64_t n = Length(object);
  // Python's slice.indices(): clamp to the sequence, counting negatives from the end.
  auto clamp = [&](const std::optional<int64_t>& v, int64_t fallback) {
    if (!v) return fallback;
    int64_t x = *v < 0 ? *v + n : *v;
    if (step > 0) return std::clamp<int64_t>(x, 0, n);
    return std::clamp<int64_t>(x, -1, n - 1);
  };
  const int64_t from = clamp(start, step > 0 ? 0 : n - 1);
  const int64_t to = clamp(stop, step > 0 ? n : -1);
  std::vector<int64_t> picks;
  for (int64_t i = from; step > 0 ? i < to : i > to;) {
    picks.push_back(i);
    if (__builtin_add_overflow(i, step, &i)) break;  // a step past the end ends the slice
  }
  if (object.kind() == Value::Kind::kList) {
    List out;
    out.reserve(picks.size());
    for (int64_t i : picks) out.push_back(object.list()[static_cast<size_t>(i)]);
    return Value(std::move(out));
  }
  const std::string& s = object.str();
  if (IsAscii(s)) {
    if (step == 1) return Value(s.substr(static_cast<size_t>(from), static_cast<size_t>(std::max<int64_t>(to - from, 0))));
    std::string out;
    for (int64_t i : picks) out += s[static_cast<size_t>(i)];
    return Value(std::move(out));
  }
  const std::vector<size_t> cps = CodePoints(s);
  std::string out;
  for (int64_t i : picks) {
    const size_t a = cps[static_cast<size_t>(i)];
    const size_t b = static_cast<size_t>(i) + 1 < cps.size() ? cps[static_cast<size_t>(i) + 1] : s.size();
    out.append(s, a, b - a);
  }
  return Value(std::move(out));
}

List Items(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return {};
    case Value::Kind::kList: return v.list();
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: {
      List keys;
      for (const auto& item : v.dict().items) keys.emplace_back(item.first);
      return keys;
    }
    case Value::Kind::kString: {
      const std::string& s = v.str();
      const std::vector<size_t> cps = CodePoints(s);
      if (cps.size() > kMaxListItems) TypeError("a list of more than 1000000 items");
      List chars;
      for (size_t i = 0; i < cps.size(); ++i) chars.emplace_back(s.substr(cps[i], (i + 1 < cps.size() ? cps[i + 1] : s.size()) - cps[i]));
      return chars;
    }
    default: TypeError("'" + v.TypeName() + "' object is not iterable");
  }
}

int64_t Length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return 0;
    case Value::Kind::kString: return static_cast<int64_t>(Utf8Length(v.str()));
    case Value::Kind::kList: return static_cast<int64_t>(v.list().size());
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: return static_cast<int64_t>(v.dict().items.size());
    default: TypeError("object of type '" + v.TypeName() + "' has no len()");
  }
}

bool Contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined: return false;
    case Value::Kind::kString:
      if (!item.is_string()) TypeError("'in <string>' requires string as left operand, not " + item.TypeName());
      return container.str().find(item.str()) != std::string::npos;
    case Value::Kind::kList:
      for (const auto& e : container.list()) {
        if (Equal(e, item)) return true;
      }
      return false;
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: return item.is_string() && container.dict().Find(item.str()) != nullptr;
    default: TypeError("argument of type '" + container.TypeName() + "' is not iterable");
  }
}

int Compare(const Value& a, const Value& b, const std::string& op) {
  auto number = [](const Value& v) { return v.is_number() || v.kind() == Value::Kind::kBool; };
  auto as_double = [](const Value& v) { return v.kind() == Value::Kind::kBool ? (v.as_bool() ? 1.0 : 0.0) : v.as_double(); };
  if (number(a) && number(b)) {
    if (a.kind() == Value::Kind::kInt && b.kind() == Value::Kind::kInt) return a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int();
    const double x = as_double(a), y = as_double(b);
    return x < y ? -1 : x > y;
  }
  if (a.is_string() && b.is_string()) return a.str().compare(b.str()) < 0 ? -1 : a.str() != b.str();
  if (a.is_undefined()) UseOfUndefined(a);
  if (b.is_undefined()) UseOfUndefined(b);
  TypeError("'" + op + "' not supported between instances of '" + a.TypeName() + "' and '" + b.TypeName() + "'");
}

namespace {

double FloorMod(double a, double b) {
  double m = std::fmod(a, b);
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

}  // namespace

Value BinaryOp(const std::string& op, const Value& a, const Value& b) {
  using K = Value::Kind;
  if (op == "~") {
    std::string out = a.ToString();
    b.AppendTo(&out);
    return Value(std::move(out));
  }
  if (op == "==") return Equal(a, b);
  if (op == "!=") return !Equal(a, b);
  if (op == "<") return Compare(a, b, op) < 0;
  if (op == "<=") return Compare(a, b, op) <= 0;
  if (op == ">") return Compare(a, b, op) > 0;
  if (op == ">=") return Compare(a, b, op) >= 0;
  if (op == "in") return Contains(b, a);
  if (op == "not in") return !Contains(b, a);
  if (a.is_undefined()) UseOfUndefined(a);
  if (b.is_undefined()) UseOfUndefined(b);
  auto unsupported = [&]() -> Value {
    TypeError("unsupported operand type(s) for " + op + ": '" + a.TypeName() + "' and '" + b.TypeName() + "'");
  };
  const bool ints = (a.kind() == K::kInt || a.kind() == K::kBool) && (b.kind() == K::kInt || b.kind() == K::kBool);
  auto i = [](const Value& v) { return v.kind() == K::kBool ? static_cast<int64_t>(v.as_bool()) : v.as_int(); };
  auto d = [](const Value& v) { return v.kind() == K::kBool ? (v.as_bool() ? 1.0 : 0.0) : v.as_double(); };
  const bool numbers = (a.is_number() || a.kind() == K::kBool) && (b.is_number() || b.kind() == K::kBool);
  // Python's integers do not overflow; these do, so a result past int64 is an error.
  int64_t r = 0;
  auto checked = [&](bool overflow) -> Value {  // r holds the result
    if (overflow) TypeError("integer overflow in " + op);
    return r;
  };
  if (op == "+") {
    if (ints) return checked(__builtin_add_overflow(i(a), i(b), &r));
    if (numbers) return d(a) + d(b);
    if (a.is_string() && b.is_string()) return Value(a.str() + b.str());
    if (a.kind() == K::kList && b.kind() == K::kList) {
      List out = a.list();
      out.insert(out.end(), b.list().begin(), b.list().end());
      return Value(std::move(out));
    }
    return unsupported();
  }
  if (op == "-") {
    if (ints) return checked(__builtin_sub_overflow(i(a), i(b), &r));
    if (numbers) return d(a) - d(b);
    return unsupported();
  }
  if (op == "*") {
    if (ints) return checked(__builtin_mul_overflow(i(a), i(b), &r));
    if (numbers) return d(a) * d(b);
    const Value* seq = a.is_string() || a.kind() == K::kList ? &a : &b;
    const Value* count = seq == &a ? &b : &a;
    if ((seq->is_string() || seq->kind() == K::kList) && count->kind() == K::kInt) {
      const int64_t n = std::max<int64_t>(count->as_int(), 0);
      if (seq->is_string() && n > 0) CheckStringSize(static_cast<size_t>(n) > kMaxStringBytes ? kMaxStringBytes + 1 : static_cast<size_t>(n) * seq->str().size());
      const auto max_items = static_cast<int64_t>(kMaxListItems);
      if (!seq->is_string() && (n > max_items || n * Length(*seq) > max_items)) {
        TypeError("a list of more than 1000000 items");
      }
      if (seq->is_string()) {
        std::string out;
        for (int64_t k = 0; k < n; ++k) out += seq->str();
        return Value(std::move(out));
      }
      List out;
      for (int64_t k = 0; k < n; ++k) out.insert(out.end(), seq->list().begin(), seq->list().end());
      return Value(std::move(out));
    }
    return unsupported();
  }
  if (!numbers) return unsupported();
  if (op == "/") {
    if (d(b) == 0) TypeError("division by zero");
    return d(a) / d(b);
  }
  if (op == "//") {
    if (d(b) == 0) TypeError("integer division or modulo by zero");
    if (ints) {
      if (i(b) == -1) return checked(__builtin_sub_overflow(int64_t{0}, i(a), &r));
      const int64_t q = i(a) / i(b);
      return (i(a) % i(b) != 0 && ((i(a) < 0) != (i(b) < 0))) ? q - 1 : q;
    }
    return std::floor(d(a) / d(b));
  }
  if (op == "%") {
    if (d(b) == 0) TypeError("integer division or modulo by zero");
    if (ints) {
      if (i(b) == -1) return static_cast<int64_t>(0);
      const int64_t m = i(a) % i(b);
      return (m != 0 && ((m < 0) != (i(b) < 0))) ? m + i(b) : m;
    }
    return FloorMod(d(a), d(b));
  }
  if (op == "**") {
    if (ints && i(b) >= 0) {
      // 0, 1 and -1 never overflow, whatever the exponent; any other base does within 63.
      if (i(a) == 0) return static_cast<int64_t>(i(b) == 0);
      if (i(a) == 1) return static_cast<int64_t>(1);
      if (i(a) == -1) return static_cast<int64_t>(i(b) % 2 == 0 ? 1 : -1);
      int64_t power = 1;
      for (int64_t k = 0; k < i(b); ++k) {
        if (__builtin_mul_overflow(power, i(a), &power)) TypeError("integer overflow in **");
      }
      return power;
    }
    return std::pow(d(a), d(b));
  }
  return unsupported();
}

}  // namespace carapace::jinja
