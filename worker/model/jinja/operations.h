// What the template's operators and look-ups mean, with Python's rules: attribute and item
// access (a dict's keys, a string's methods), slicing, iteration, arithmetic, comparison.
// Shared by the expression nodes and the built-in filters. All throw RenderError.
#pragma once

#include <optional>
#include <string>

#include "worker/model/jinja/value.h"

namespace carapace::jinja {

// object.name: a dict's method (items, keys, values, get) before its key, as Jinja's
// getattr does; a namespace's or loop's attribute. Undefined when absent; using an
// undefined value's attribute is an error.
Value GetAttr(const Value& object, const std::string& name);
// object[key]: a dict's key before its method; a list or string index (negative from the
// end). Undefined when absent.
Value GetItem(const Value& object, const Value& key);
// Python's object[start:stop:step] for lists and strings.
Value Slice(const Value& object, const std::optional<int64_t>& start, const std::optional<int64_t>& stop,
            const std::optional<int64_t>& step);
// What a for loop walks: a list's items, a dict's keys, a string's characters (UTF-8 code
// points), nothing for undefined.
List Items(const Value& iterable);
// Length as Python's len(); undefined is 0.
int64_t Length(const Value& v);

// + - * / // % ** ~ and the comparisons < <= > >= == != and in / not in.
Value BinaryOp(const std::string& op, const Value& a, const Value& b);
bool Contains(const Value& container, const Value& item);
// Python's ordering of two numbers or two strings; a TypeError otherwise.
int Compare(const Value& a, const Value& b, const std::string& op);

// Throws the error an undefined value carries when it is used as a value.
[[noreturn]] void UseOfUndefined(const Value& v);

}  // namespace carapace::jinja
