// The values a chat template computes with, and their Python meaning: chat templates are
// written against Jinja running in Python (Hugging Face's apply_chat_template, which vLLM
// uses), so printing, truth, equality and JSON follow Python's rules, not C++'s.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace carapace::jinja {

class Value;
struct LoopState;
struct Callable;
struct Context;

using List = std::vector<Value>;

// A mapping that keeps its keys in insertion order, as a Python dict does. Keys are strings:
// chat templates index messages and tool schemas by name and nothing else.
struct Dict {
  std::vector<std::pair<std::string, Value>> items;

  const Value* Find(std::string_view key) const;
  Value* Find(std::string_view key);
  void Set(std::string key, Value v);
};

// A failure while rendering: the template's own raise_exception, an undefined value used as
// a value, a type error. Carries the template position of the node that failed. Thrown only
// inside the jinja module; Template::Render returns it as a Status.
struct RenderError {
  std::string message;
  int line = 0;
  int col = 0;
};

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace, kLoop, kCallable };

  Value() = default;  // undefined
  static Value Undefined(std::string hint);  // hint: why, for the error when it is used
  static Value None();
  Value(bool b);                // NOLINT: implicit by design, like Python literals
  Value(int64_t i);             // NOLINT
  Value(int i) : Value(static_cast<int64_t>(i)) {}  // NOLINT
  Value(double f);              // NOLINT
  Value(std::string s);         // NOLINT
  Value(const char* s) : Value(std::string(s)) {}  // NOLINT
  Value(List l);                // NOLINT
  Value(Dict d);                // NOLINT
  static Value Namespace(Dict d);
  static Value Loop(std::shared_ptr<LoopState> loop);
  static Value Function(std::shared_ptr<const Callable> c);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat; }
  bool is_mapping() const { return kind_ == Kind::kDict || kind_ == Kind::kNamespace; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return i_; }
  double as_double() const { return kind_ == Kind::kInt ? static_cast<double>(i_) : f_; }
  const std::string& str() const { return *s_; }
  const List& list() const { return *l_; }
  const Dict& dict() const { return *d_; }
  Dict& mutable_dict() const { return *d_; }  // a namespace: the one mutable value
  const LoopState& loop() const { return *loop_; }
  const Callable& callable() const { return *fn_; }
  const std::string& undefined_hint() const;
  // How deep lists and dicts nest in this value (0 for a scalar), and whether a namespace is
  // anywhere in it: a namespace may not hold one, so no value can contain itself.
  int depth() const { return depth_; }
  bool holds_namespace() const { return holds_namespace_; }

  // Python's truth: empty strings, lists and dicts, 0, None and undefined are false.
  bool Truthy() const;
  // Python's str(): what {{ value }} prints. None prints "None"; undefined prints nothing.
  std::string ToString() const;
  void AppendTo(std::string* out) const;
  // Python's repr(): how a value looks inside a printed list or dict.
  std::string Repr() const;
  // Python's type name, for error messages: "str", "int", "dict", "NoneType", ...
  std::string TypeName() const;

 private:
  void Contain(const Value& item);  // the depth and namespace of a list's or dict's item

  Kind kind_ = Kind::kUndefined;
  int depth_ = 0;
  bool holds_namespace_ = false;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::shared_ptr<const std::string> s_;  // string, or the hint of an undefined
  std::shared_ptr<const List> l_;
  std::shared_ptr<Dict> d_;
  std::shared_ptr<LoopState> loop_;
  std::shared_ptr<const Callable> fn_;
};

// Lists and dicts nest at most this deep: rendering, comparing and freeing a value recurse.
inline constexpr int kMaxDepth = 256;

// Python's ==: 1 == 1.0, lists and dicts compare deeply, different kinds are unequal;
// namespaces, loops and functions are equal only to themselves.
bool Equal(const Value& a, const Value& b);

// Arguments of a call: positional, then keyword.
struct CallArgs {
  List positional;
  std::vector<std::pair<std::string, Value>> keyword;

  // The argument at `index` or named `name`, or `fallback` when neither was given.
  const Value& Get(size_t index, std::string_view name, const Value& fallback) const;
};

// Something a template can call: a built-in function, a bound method, a macro.
struct Callable {
  std::string name;
  std::function<Value(Context&, const CallArgs&)> call;
};

// The `loop` variable of a for loop: computed from the position, not stored per iteration.
// It owns the items, so a `loop` kept past its loop stays valid.
struct LoopState {
  std::shared_ptr<const List> items;
  size_t index0 = 0;
};

// nlohmann JSON (as the worker stores messages and schemas) to a template value, and back
// for tojson. Object keys keep the order the JSON has.
Value FromJson(const nlohmann::json& j);

// How Python's json.dumps writes: its arguments, with its defaults (", " and ": " on one
// line, "," and ": " when indented). Hugging Face's tojson passes them through.
struct JsonStyle {
  bool ensure_ascii = false;  // true: everything past ASCII as \uXXXX
  int indent = -1;            // -1: one line; n: n spaces (or indent_text) per level
  std::string indent_text;
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};

// Python's json.dumps(value, ...). Undefined, namespaces and callables are not JSON: a
// RenderError names the type.
std::string ToJsonText(const Value& v, const JsonStyle& style = {});

// What one value may grow to: a template that doubles a string or a list each step would
// otherwise exhaust the worker's memory long before its step limit.
inline constexpr size_t kMaxStringBytes = 64u << 20;
inline constexpr size_t kMaxListItems = 1'000'000;
// Throws the RenderError for a string being built past kMaxStringBytes.
void CheckStringSize(size_t bytes);

// Python's repr of a float: the shortest text that reads back the same, "1.0" for whole
// numbers, exponent form past 1e16 and below 1e-4.
std::string FloatText(double f);

}  // namespace carapace::jinja
