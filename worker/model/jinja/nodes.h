// The parsed template: expressions and statements, each knowing its place in the source
// and how to evaluate itself. Built by the parser, run by Template::Render.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "worker/model/jinja/builtins.h"
#include "worker/model/jinja/value.h"

namespace carapace::jinja {

struct Frame {
  std::vector<std::pair<std::string, Value>> vars;
  Value* Find(std::string_view name);
};

// What one rendering carries: variables, output, loop control, and the limits that keep a
// runaway template from taking the worker down with it.
struct Context {
  const Dict* globals = nullptr;    // the render's variables (messages, tools, ...)
  std::vector<Frame*> chain;        // innermost last; chain[0] is the template's top level
  std::string* out = nullptr;
  enum class Jump { kNone, kBreak, kContinue } jump = Jump::kNone;
  int64_t steps = 0;                // nodes evaluated, against kMaxSteps
  int call_depth = 0;               // macro calls, against kMaxCallDepth

  // A chat template takes tens of steps a message: a few thousand messages stay far below.
  static constexpr int64_t kMaxSteps = 5'000'000;
  static constexpr int kMaxCallDepth = 32;
  static constexpr size_t kMaxOutput = kMaxStringBytes;

  Value Lookup(const std::string& name) const;
  void Assign(const std::string& name, Value v);
  void Step();
};

struct Expr {
  int line = 0;
  int col = 0;
  virtual ~Expr() = default;
  // Throws RenderError; Evaluate() below adds this node's position to one without any.
  virtual Value Eval(Context& ctx) const = 0;
};
using ExprPtr = std::unique_ptr<Expr>;

Value Evaluate(const Expr& e, Context& ctx);

struct Literal : Expr {
  Value value;
  Value Eval(Context&) const override { return value; }
};

struct ListExpr : Expr {  // [a, b] and (a, b): both are lists here
  std::vector<ExprPtr> items;
  Value Eval(Context& ctx) const override;
};

struct DictExpr : Expr {
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
  Value Eval(Context& ctx) const override;
};

struct NameExpr : Expr {
  std::string name;
  Value Eval(Context& ctx) const override;
};

struct AttrExpr : Expr {  // object.name; the node's position is the object's
  ExprPtr object;
  std::string name;
  int name_line = 0;  // where the name is, for a load-time error about it
  int name_col = 0;
  Value Eval(Context& ctx) const override;
};

struct ItemExpr : Expr {  // object[key]
  ExprPtr object;
  ExprPtr key;
  Value Eval(Context& ctx) const override;
};

struct SliceExpr : Expr {  // object[start:stop:step], each part optional
  ExprPtr object;
  ExprPtr start, stop, step;
  Value Eval(Context& ctx) const override;
};

struct Arguments {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keyword;
  CallArgs Eval(Context& ctx) const;
};

struct CallExpr : Expr {  // a macro, a built-in function, or object.method(...)
  ExprPtr callee;
  Arguments args;
  const Function* builtin = nullptr;  // the callee is a built-in function's name
  Value Eval(Context& ctx) const override;
};

struct FilterExpr : Expr {  // value | name(args)
  ExprPtr value;
  const Filter* filter = nullptr;  // null: unknown, an error if evaluated
  std::string name;
  Arguments args;
  Value Eval(Context& ctx) const override;
};

struct TestExpr : Expr {  // value is [not] name(args)
  ExprPtr value;
  const Test* test = nullptr;  // null: unknown, an error if evaluated
  std::string name;
  bool negated = false;
  Arguments args;
  Value Eval(Context& ctx) const override;
};

struct UnaryExpr : Expr {  // not x, -x, +x
  std::string op;
  ExprPtr operand;
  Value Eval(Context& ctx) const override;
};

struct BinaryExpr : Expr {  // arithmetic, ~, comparisons, in, not in, and, or
  std::string op;
  ExprPtr left, right;
  Value Eval(Context& ctx) const override;
};

struct CompareChainExpr : Expr {  // a < b <= c: each pair compared, left to right, until one fails
  std::vector<std::string> ops;
  std::vector<ExprPtr> operands;  // one more than ops
  Value Eval(Context& ctx) const override;
};

struct CondExpr : Expr {  // then if cond else otherwise
  ExprPtr cond, then, otherwise;  // otherwise may be null: undefined
  Value Eval(Context& ctx) const override;
};

struct Node {
  int line = 0;
  int col = 0;
  virtual ~Node() = default;
  virtual void Render(Context& ctx) const = 0;
};
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

void RenderBody(const Body& body, Context& ctx);

struct TextNode : Node {
  std::string text;
  void Render(Context& ctx) const override;
};

struct OutputNode : Node {  // {{ expr }}
  ExprPtr expr;
  void Render(Context& ctx) const override;
};

struct IfNode : Node {
  std::vector<std::pair<ExprPtr, Body>> branches;  // if and each elif
  Body otherwise;
  void Render(Context& ctx) const override;
};

struct ForNode : Node {
  std::vector<std::string> targets;  // one name, or several to unpack each item into
  ExprPtr iterable;
  ExprPtr filter;  // for x in xs if cond: may be null
  Body body;
  Body otherwise;  // {% else %}: when nothing was iterated
  void Render(Context& ctx) const override;
};

struct SetNode : Node {
  std::vector<std::string> targets;  // a name, several names, or the namespace of ns.attr
  std::string attribute;             // set ns.attr = ...: the attribute
  ExprPtr value;                     // null for {% set x %}...{% endset %}
  Body block;
  void Render(Context& ctx) const override;
};

struct MacroNode : Node {
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // one per param; null where none
  Body body;
  void Render(Context& ctx) const override;
  Value Call(Context& ctx, const CallArgs& args) const;
};

struct JumpNode : Node {  // break, continue
  Context::Jump jump = Context::Jump::kBreak;
  void Render(Context& ctx) const override { ctx.jump = jump; }
};

}  // namespace carapace::jinja
