// Evaluating expressions and rendering statements.
#include "worker/model/jinja/nodes.h"

#include <cstdint>

#include "worker/model/jinja/operations.h"

namespace carapace::jinja {

Value* Frame::Find(std::string_view name) {
  for (auto& [k, v] : vars) {
    if (k == name) return &v;
  }
  return nullptr;
}

Value Context::Lookup(const std::string& name) const {
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    if (Value* v = (*it)->Find(name)) return *v;
  }
  if (const Value* v = globals->Find(name)) return *v;
  // The built-in functions are globals too: `strftime_now is defined` is how templates ask.
  if (const Function* f = FindFunction(name)) return BuiltinValue(*f);
  return Value::Undefined("'" + name + "' is undefined");
}

void Context::Assign(const std::string& name, Value v) {
  Frame* frame = chain.back();
  if (Value* existing = frame->Find(name)) *existing = std::move(v);
  else frame->vars.emplace_back(name, std::move(v));
}

void Context::Step() {
  if (++steps > kMaxSteps) throw RenderError{"the template did more than 5,000,000 steps: is a loop unbounded?"};
  if (out->size() > kMaxOutput) throw RenderError{"the template's output passed 64 MiB"};
}

Value Evaluate(const Expr& e, Context& ctx) {
  try {
    ctx.Step();
    return e.Eval(ctx);
  } catch (RenderError& err) {
    if (err.line == 0) {
      err.line = e.line;
      err.col = e.col;
    }
    throw;
  }
}

Value ListExpr::Eval(Context& ctx) const {
  List out;
  out.reserve(items.size());
  for (const auto& item : items) out.push_back(Evaluate(*item, ctx));
  return Value(std::move(out));
}

Value DictExpr::Eval(Context& ctx) const {
  Dict d;
  for (const auto& [k, v] : items) {
    Value key = Evaluate(*k, ctx);
    if (!key.is_string()) throw RenderError{"dict keys must be strings here, not " + key.TypeName(), k->line, k->col};
    d.Set(key.str(), Evaluate(*v, ctx));
  }
  return Value(std::move(d));
}

Value NameExpr::Eval(Context& ctx) const { return ctx.Lookup(name); }

Value AttrExpr::Eval(Context& ctx) const { return GetAttr(Evaluate(*object, ctx), name); }

Value ItemExpr::Eval(Context& ctx) const { return GetItem(Evaluate(*object, ctx), Evaluate(*key, ctx)); }

Value SliceExpr::Eval(Context& ctx) const {
  Value o = Evaluate(*object, ctx);
  auto bound = [&](const ExprPtr& e) -> std::optional<int64_t> {
    if (!e) return std::nullopt;
    Value v = Evaluate(*e, ctx);
    if (v.is_none()) return std::nullopt;
    if (v.kind() != Value::Kind::kInt) throw RenderError{"slice indices must be integers, not " + v.TypeName(), e->line, e->col};
    return v.as_int();
  };
  auto a = bound(start), b = bound(stop), c = bound(step);
  return Slice(o, a, b, c);
}

CallArgs Arguments::Eval(Context& ctx) const {
  CallArgs a;
  a.positional.reserve(positional.size());
  for (const auto& e : positional) a.positional.push_back(Evaluate(*e, ctx));
  for (const auto& [k, e] : keyword) a.keyword.emplace_back(k, Evaluate(*e, ctx));
  return a;
}

Value CallExpr::Eval(Context& ctx) const {
  Value f;
  if (auto* attr = dynamic_cast<const AttrExpr*>(callee.get())) {
    // object.method(...) is called directly, without making a bound method first.
    Value self = Evaluate(*attr->object, ctx);
    if (HasMethod(self, attr->name) || self.is_undefined()) return CallMethod(ctx, self, attr->name, args.Eval(ctx));
    f = GetAttr(self, attr->name);
  } else {
    f = Evaluate(*callee, ctx);
  }
  if (f.kind() == Value::Kind::kCallable) return f.callable().call(ctx, args.Eval(ctx));
  if (f.is_undefined() && builtin != nullptr) return builtin->call(ctx, args.Eval(ctx));
  if (f.is_undefined()) UseOfUndefined(f);
  throw RenderError{"'" + f.TypeName() + "' object is not callable"};
}

Value FilterExpr::Eval(Context& ctx) const {
  if (filter == nullptr) throw RenderError{"unknown filter '" + name + "'"};
  Value v = Evaluate(*value, ctx);
  return filter->apply(ctx, v, args.Eval(ctx));
}

Value TestExpr::Eval(Context& ctx) const {
  if (test == nullptr) throw RenderError{"unknown test '" + name + "'"};
  Value v = Evaluate(*value, ctx);
  return test->apply(ctx, v, args.Eval(ctx)) != negated;
}

Value UnaryExpr::Eval(Context& ctx) const {
  Value v = Evaluate(*operand, ctx);
  if (op == "not") return !v.Truthy();
  if (v.kind() == Value::Kind::kInt) {
    if (op == "-" && v.as_int() == INT64_MIN) throw RenderError{"integer overflow in unary -"};
    return op == "-" ? -v.as_int() : v.as_int();
  }
  if (v.kind() == Value::Kind::kFloat) return op == "-" ? -v.as_double() : v.as_double();
  if (v.kind() == Value::Kind::kBool) return static_cast<int64_t>(op == "-" ? -int{v.as_bool()} : int{v.as_bool()});
  if (v.is_undefined()) UseOfUndefined(v);
  throw RenderError{"bad operand type for unary " + op + ": '" + v.TypeName() + "'"};
}

Value BinaryExpr::Eval(Context& ctx) const {
  // and / or give one of their operands, as in Python, and evaluate the right one only
  // when it decides.
  if (op == "and") {
    Value a = Evaluate(*left, ctx);
    return a.Truthy() ? Evaluate(*right, ctx) : a;
  }
  if (op == "or") {
    Value a = Evaluate(*left, ctx);
    return a.Truthy() ? a : Evaluate(*right, ctx);
  }
  Value a = Evaluate(*left, ctx);
  return BinaryOp(op, a, Evaluate(*right, ctx));
}

Value CompareChainExpr::Eval(Context& ctx) const {
  Value left = Evaluate(*operands[0], ctx);
  for (size_t i = 0; i < ops.size(); ++i) {
    Value right = Evaluate(*operands[i + 1], ctx);
    if (!BinaryOp(ops[i], left, right).Truthy()) return false;
    left = std::move(right);
  }
  return true;
}

Value CondExpr::Eval(Context& ctx) const {
  if (Evaluate(*cond, ctx).Truthy()) return Evaluate(*then, ctx);
  if (otherwise) return Evaluate(*otherwise, ctx);
  return Value::Undefined("the conditional expression has no else");
}

void RenderBody(const Body& body, Context& ctx) {
  for (const auto& node : body) {
    try {
      ctx.Step();
    } catch (RenderError& e) {
      throw RenderError{e.message, node->line, node->col};
    }
    node->Render(ctx);
    if (ctx.jump != Context::Jump::kNone) return;
  }
}

void TextNode::Render(Context& ctx) const { *ctx.out += text; }

void OutputNode::Render(Context& ctx) const { Evaluate(*expr, ctx).AppendTo(ctx.out); }

void IfNode::Render(Context& ctx) const {
  for (const auto& [cond, body] : branches) {
    if (Evaluate(*cond, ctx).Truthy()) {
      RenderBody(body, ctx);
      return;
    }
  }
  RenderBody(otherwise, ctx);
}

namespace {

// Binds a for loop's or a set's names: one name takes the value, several unpack a list.
void Bind(Context& ctx, const std::vector<std::string>& targets, const Value& v, int line, int col) {
  if (targets.size() == 1) {
    ctx.Assign(targets[0], v);
    return;
  }
  if (v.kind() != Value::Kind::kList) {
    throw RenderError{"cannot unpack a " + v.TypeName() + " into " + std::to_string(targets.size()) + " names", line, col};
  }
  if (v.list().size() != targets.size()) {
    throw RenderError{"expected " + std::to_string(targets.size()) + " values to unpack, got " +
                          std::to_string(v.list().size()),
                      line, col};
  }
  for (size_t i = 0; i < targets.size(); ++i) ctx.Assign(targets[i], v.list()[i]);
}

// Pushes a frame for the life of a scope: a loop body, a macro call.
class ScopedFrame {
 public:
  explicit ScopedFrame(Context& ctx) : ctx_(ctx) { ctx_.chain.push_back(&frame_); }
  ~ScopedFrame() { ctx_.chain.pop_back(); }
  ScopedFrame(const ScopedFrame&) = delete;
  ScopedFrame& operator=(const ScopedFrame&) = delete;

 private:
  Context& ctx_;
  Frame frame_;
};

}  // namespace

void ForNode::Render(Context& ctx) const {
  Value iterable_value = Evaluate(*iterable, ctx);
  if (iterable_value.is_none()) throw RenderError{"'NoneType' object is not iterable", iterable->line, iterable->col};
  auto items = std::make_shared<List>();
  try {
    *items = Items(iterable_value);
  } catch (RenderError& e) {
    throw RenderError{e.message, iterable->line, iterable->col};
  }
  if (filter) {
    // `for x in xs if cond`: loop.length and loop.last count only the items that pass.
    List kept;
    for (const Value& item : *items) {
      ScopedFrame scope(ctx);
      Bind(ctx, targets, item, line, col);
      if (Evaluate(*filter, ctx).Truthy()) kept.push_back(item);
    }
    *items = std::move(kept);
  }
  auto loop = std::make_shared<LoopState>();
  loop->items = items;
  for (size_t i = 0; i < items->size(); ++i) {
    // Each iteration starts from the outer variables (Jinja enters a new frame per item):
    // what the body sets stays in that iteration; a namespace is how it outlives it.
    ScopedFrame scope(ctx);
    loop->index0 = i;
    ctx.Assign("loop", Value::Loop(loop));
    Bind(ctx, targets, (*items)[i], line, col);
    RenderBody(body, ctx);
    if (ctx.jump == Context::Jump::kBreak) {
      ctx.jump = Context::Jump::kNone;
      break;
    }
    ctx.jump = Context::Jump::kNone;
  }
  if (items->empty()) RenderBody(otherwise, ctx);
}

void SetNode::Render(Context& ctx) const {
  Value v;
  if (value) {
    v = Evaluate(*value, ctx);
  } else {
    // The block renders in its own frame, as Jinja's AssignBlock does.
    std::string captured;
    std::string* outer = ctx.out;
    ctx.out = &captured;
    try {
      ScopedFrame scope(ctx);
      RenderBody(block, ctx);
    } catch (...) {
      ctx.out = outer;
      throw;
    }
    ctx.out = outer;
    v = Value(std::move(captured));
  }
  if (!attribute.empty()) {
    Value ns = ctx.Lookup(targets[0]);
    if (ns.kind() != Value::Kind::kNamespace) {
      throw RenderError{"cannot assign attribute '" + attribute + "' on " + targets[0] + ", a " + ns.TypeName() +
                            ": only a namespace() takes attributes",
                        line, col};
    }
    if (v.holds_namespace()) {
      throw RenderError{"cannot assign a namespace (or a value holding one) to " + targets[0] + "." + attribute +
                            ": a namespace cannot hold a namespace",
                        line, col};
    }
    ns.mutable_dict().Set(attribute, std::move(v));
    return;
  }
  Bind(ctx, targets, v, line, col);
}

void MacroNode::Render(Context& ctx) const {
  auto c = std::make_shared<Callable>();
  c->name = name;
  c->call = [this](Context& call_ctx, const CallArgs& args) { return Call(call_ctx, args); };
  ctx.Assign(name, Value::Function(std::move(c)));
}

Value MacroNode::Call(Context& ctx, const CallArgs& args) const {
  if (args.positional.size() > params.size()) {
    throw RenderError{"macro '" + name + "' takes " + std::to_string(params.size()) + " arguments, " +
                      std::to_string(args.positional.size()) + " given"};
  }
  for (const auto& [k, v] : args.keyword) {
    if (std::find(params.begin(), params.end(), k) == params.end()) {
      throw RenderError{"macro '" + name + "' has no parameter '" + k + "'"};
    }
  }
  if (++ctx.call_depth > Context::kMaxCallDepth) {
    throw RenderError{"macros called more than 32 deep", line, col};
  }
  // A macro sees the template's top level and its own parameters, not its caller's loop.
  std::vector<Frame*> caller_chain = {ctx.chain.begin() + 1, ctx.chain.end()};
  ctx.chain.resize(1);
  std::string captured;
  std::string* outer = ctx.out;
  ctx.out = &captured;
  auto restore = [&] {
    ctx.chain.insert(ctx.chain.end(), caller_chain.begin(), caller_chain.end());
    ctx.out = outer;
    --ctx.call_depth;
  };
  try {
    ScopedFrame scope(ctx);
    for (size_t i = 0; i < params.size(); ++i) {
      static const Value kMissing;
      const Value& given = args.Get(i, params[i], kMissing);
      if (&given == &kMissing) {
        ctx.Assign(params[i], defaults[i] ? Evaluate(*defaults[i], ctx)
                                          : Value::Undefined("parameter '" + params[i] + "' of macro '" + name + "' was not given"));
      } else {
        ctx.Assign(params[i], given);
      }
    }
    RenderBody(body, ctx);
    ctx.jump = Context::Jump::kNone;
  } catch (...) {
    restore();
    throw;
  }
  restore();
  return Value(std::move(captured));
}

}  // namespace carapace::jinja
