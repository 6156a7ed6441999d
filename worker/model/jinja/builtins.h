// The filters, tests, functions and methods a chat template may use. They are looked up
// when the template is loaded, so a name the engine does not know fails there, with its
// line and column, and never at the first model call.
#pragma once

#include <string>
#include <string_view>

#include "worker/model/jinja/value.h"

namespace carapace::jinja {

struct Filter {
  const char* name;
  Value (*apply)(Context& ctx, const Value& input, const CallArgs& args);
};

struct Test {
  const char* name;
  bool (*apply)(Context& ctx, const Value& input, const CallArgs& args);
};

struct Function {
  const char* name;
  Value (*call)(Context& ctx, const CallArgs& args);
};

// Null when the name is unknown.
const Filter* FindFilter(std::string_view name);
const Test* FindTest(std::string_view name);
const Function* FindFunction(std::string_view name);
// A built-in function as a value a template can test, pass or call.
Value BuiltinValue(const Function& f);

// Whether `name` is a method of some value (a string's startswith, a dict's items, ...).
bool IsKnownMethod(std::string_view name);
// self.name(args). Throws RenderError when self has no such method.
Value CallMethod(Context& ctx, const Value& self, const std::string& name, const CallArgs& args);
// Whether self has the method `name`: GetAttr gives a bound method for those.
bool HasMethod(const Value& self, std::string_view name);

}  // namespace carapace::jinja
