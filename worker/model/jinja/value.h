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
  Kind kind_ = Kind::kUndefined;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::shared_ptr<const std::string> s_;  // string, or the hint of an undefined
  std::shared_ptr<const List> l_;
  std::shared_ptr<Dict> d_;
  std::shared_ptr<LoopState> loop_;
  std::shared_ptr<const Callable> fn_;
};

// Python's ==: 1 == 1.0, lists and dicts compare deeply, different kinds are unequal.
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
struct LoopState {
  const List* items = nullptr;
  size_t index0 = 0;
};

// nlohmann JSON (as the worker stores messages and schemas) to a template value, and back
// for tojson. Object keys keep the order the JSON has.
Value FromJson(const nlohmann::json& j);

// Python's json.dumps(value, ensure_ascii=False, indent=indent, sort_keys=sort_keys) with
// its default separators: ", " and ": " on one line, "," and ": " when indented. This is
// the tojson of Hugging Face's chat template environment. Undefined and callables are
// not JSON: a RenderError names the type.
std::string ToJsonText(const Value& v, int indent = -1, bool sort_keys = false);

// Python's repr of a float: the shortest text that reads back the same, "1.0" for whole
// numbers, exponent form past 1e16 and below 1e-4.
std::string FloatText(double f);

}  // namespace carapace::jinja
