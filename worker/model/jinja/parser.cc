// A recursive-descent parser with Jinja's grammar and operator precedence (jinja2/parser.py:
// condexpr, or, and, not, compare, + -, ~, * / // %, **, unary, then postfix . [] () and
// the | filters and `is` tests that bind tighter than any operator).
#include "worker/model/jinja/parser.h"

#include <set>
#include <tuple>

#include "worker/model/jinja/lexer.h"

namespace carapace::jinja {

namespace {

// Tags real templates may use that this engine leaves out, with what to do instead.
const char* UnsupportedTagHint(const std::string& name) {
  if (name == "include" || name == "extends" || name == "import" || name == "from" || name == "block") {
    return "a chat template must be one self-contained file";
  }
  if (name == "call" || name == "filter" || name == "with" || name == "do" || name == "autoescape") {
    return "this engine has the tags if, for, set, macro, break, continue, raw and generation";
  }
  return nullptr;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  ParsedTemplate Run() {
    ParsedTemplate out;
    out.body = ParseBody({}, nullptr, Peek());
    for (const auto& [name, line, col, in_branch] : calls_) {
      if (macros_.count(name) == 0) {
        Unknown("unknown function '" + name + "': not a macro of this template or a built-in (" +
                    "dict, namespace, raise_exception, range, strftime_now)",
                line, col, in_branch);
      }
    }
    out.deferred = std::move(deferred_);
    return out;
  }

 private:
  // A name the engine does not have. Outside any {% if %} it fails the load; inside one it
  // fails only if that branch runs, as in Jinja 3 (published templates keep code for inputs
  // vLLM never passes, e.g. `arguments | from_json` for string arguments), and is noted.
  void Unknown(const std::string& message, int line, int col, bool in_branch) {
    if (!in_branch) throw SyntaxError{message, line, col};
    deferred_.push_back(std::to_string(line) + ":" + std::to_string(col) + ": " + message);
  }

  const Token& Peek(size_t ahead = 0) const { return t_[std::min(p_ + ahead, t_.size() - 1)]; }
  const Token& Next() {
    const Token& t = t_[p_];
    if (p_ + 1 < t_.size()) ++p_;
    return t;
  }
  bool IsOp(const char* op, size_t ahead = 0) const {
    return Peek(ahead).kind == TokenKind::kOperator && Peek(ahead).text == op;
  }
  bool IsName(const char* name, size_t ahead = 0) const {
    return Peek(ahead).kind == TokenKind::kName && Peek(ahead).text == name;
  }
  [[noreturn]] static void Fail(const Token& at, std::string message) {
    throw SyntaxError{std::move(message), at.line, at.col};
  }
  static std::string Describe(const Token& t) {
    switch (t.kind) {
      case TokenKind::kEnd: return "the end of the template";
      case TokenKind::kVarEnd: return "}}";
      case TokenKind::kBlockEnd: return "%}";
      case TokenKind::kString: return "a string";
      case TokenKind::kText: return "text";
      default: return "'" + t.text + "'";
    }
  }
  void ExpectOp(const char* op) {
    if (!IsOp(op)) Fail(Peek(), std::string("expected '") + op + "', found " + Describe(Peek()));
    Next();
  }
  void ExpectBlockEnd(const char* after) {
    if (Peek().kind != TokenKind::kBlockEnd) Fail(Peek(), std::string("expected %} after ") + after + ", found " + Describe(Peek()));
    Next();
  }
  std::string ExpectName(const char* what) {
    if (Peek().kind != TokenKind::kName) Fail(Peek(), std::string("expected ") + what + ", found " + Describe(Peek()));
    return Next().text;
  }
  template <class T>
  std::unique_ptr<T> At(const Token& t) {
    auto n = std::make_unique<T>();
    n->line = t.line;
    n->col = t.col;
    return n;
  }

  // Guards the C++ stack against a template nested absurdly deep.
  struct Depth {
    explicit Depth(Parser* p, const Token& at) : p_(p) {
      if (++p_->depth_ > 200) Fail(at, "the template is nested more than 200 deep");
    }
    ~Depth() { --p_->depth_; }
    Parser* p_;
  };

  // The links of a chain (a + b + c, x.a.b, x|f|g) each nest the tree one deeper, though
  // they are parsed in a loop: counted the same way, and given back when the chain ends.
  struct Chain {
    explicit Chain(Parser* p) : p_(p) {}
    void Link(const Token& at) {
      ++links_;
      if (++p_->depth_ > 200) Fail(at, "the template is nested more than 200 deep");
    }
    ~Chain() { p_->depth_ -= links_; }
    Parser* p_;
    int links_ = 0;
  };

  // ---- statements ----

  // Nodes up to one of `enders` ({% endif %} ...), whose name it consumes and reports.
  Body ParseBody(const std::set<std::string>& enders, std::string* ended_by, const Token& opened_at) {
    Depth depth(this, opened_at);
    Body body;
    while (true) {
      const Token& t = Peek();
      switch (t.kind) {
        case TokenKind::kEnd:
          if (!enders.empty()) {
            Fail(opened_at, "this block is never closed: expected {% " + *enders.rbegin() + " %} before the end of the template");
          }
          return body;
        case TokenKind::kText: {
          auto n = At<TextNode>(t);
          n->text = Next().text;
          if (!n->text.empty()) body.push_back(std::move(n));
          break;
        }
        case TokenKind::kVarBegin: {
          auto n = At<OutputNode>(Next());
          n->expr = ParseExpression();
          if (Peek().kind != TokenKind::kVarEnd) Fail(Peek(), "expected }}, found " + Describe(Peek()));
          Next();
          body.push_back(std::move(n));
          break;
        }
        case TokenKind::kBlockBegin: {
          const Token& name = Peek(1);
          if (name.kind == TokenKind::kName && enders.count(name.text)) {
            Next();
            *ended_by = Next().text;
            return body;
          }
          static const std::set<std::string> kClosers = {"elif", "else", "endif", "endfor", "endmacro", "endset", "endgeneration"};
          if (name.kind == TokenKind::kName && kClosers.count(name.text)) {
            Fail(name, "unexpected {% " + name.text + " %}" +
                           (enders.empty() ? std::string(": no block is open") : ", expected {% " + *enders.rbegin() + " %}"));
          }
          Next();
          if (NodePtr n = ParseStatement()) body.push_back(std::move(n));
          break;
        }
        default: Fail(t, "unexpected " + Describe(t));
      }
    }
  }

  NodePtr ParseStatement() {
    const Token& tag = Peek();
    if (tag.kind != TokenKind::kName) Fail(tag, "expected a tag name after {%, found " + Describe(tag));
    const std::string name = tag.text;
    if (name == "if") return ParseIf();
    if (name == "for") return ParseFor();
    if (name == "set") return ParseSet();
    if (name == "macro") return ParseMacro();
    if (name == "break" || name == "continue") {
      if (loops_ == 0) Fail(tag, "{% " + name + " %} outside a for loop");
      auto n = At<JumpNode>(Next());
      n->jump = name == "break" ? Context::Jump::kBreak : Context::Jump::kContinue;
      ExpectBlockEnd(name.c_str());
      return n;
    }
    if (name == "generation") {
      // Hugging Face's marker of the assistant's own tokens (for training masks): it
      // renders its body unchanged.
      Next();
      ExpectBlockEnd("generation");
      std::string end;
      Body inner = ParseBody({"endgeneration"}, &end, tag);
      ExpectBlockEnd("endgeneration");
      auto n = At<IfNode>(tag);
      auto always = At<Literal>(tag);
      always->value = Value(true);
      n->branches.emplace_back(std::move(always), std::move(inner));
      return n;
    }
    if (const char* hint = UnsupportedTagHint(name)) Fail(tag, "the tag {% " + name + " %} is not supported: " + hint);
    Fail(tag, "unknown tag '" + name + "'");
  }

  NodePtr ParseIf() {
    const Token& tag = Next();
    auto n = At<IfNode>(tag);
    std::string end;
    ExprPtr cond = ParseExpression();
    ExpectBlockEnd("if");
    ++branches_;
    while (true) {
      Body body = ParseBody({"elif", "else", "endif"}, &end, tag);
      n->branches.emplace_back(std::move(cond), std::move(body));
      if (end != "elif") break;
      cond = ParseExpression();
      ExpectBlockEnd("elif");
    }
    if (end == "else") {
      ExpectBlockEnd("else");
      n->otherwise = ParseBody({"endif"}, &end, tag);
    }
    --branches_;
    ExpectBlockEnd("endif");
    return n;
  }

  std::vector<std::string> ParseTargets(const char* what) {
    std::vector<std::string> names;
    const bool paren = IsOp("(");
    if (paren) Next();
    names.push_back(ExpectName(what));
    while (IsOp(",")) {
      Next();
      names.push_back(ExpectName(what));
    }
    if (paren) ExpectOp(")");
    return names;
  }

  NodePtr ParseFor() {
    const Token& tag = Next();
    auto n = At<ForNode>(tag);
    n->targets = ParseTargets("a loop variable");
    if (!IsName("in")) Fail(Peek(), "expected 'in' in the for loop, found " + Describe(Peek()));
    Next();
    n->iterable = ParseOr();  // no conditional here: a trailing `if` filters the loop
    if (IsName("if")) {
      Next();
      n->filter = ParseExpression();
    }
    if (IsName("recursive")) Fail(Peek(), "recursive for loops are not supported");
    ExpectBlockEnd("for");
    ++loops_;
    std::string end;
    n->body = ParseBody({"else", "endfor"}, &end, tag);
    --loops_;
    if (end == "else") {
      ExpectBlockEnd("else");
      n->otherwise = ParseBody({"endfor"}, &end, tag);
    }
    ExpectBlockEnd("endfor");
    return n;
  }

  NodePtr ParseSet() {
    const Token& tag = Next();
    auto n = At<SetNode>(tag);
    n->targets.push_back(ExpectName("a variable name"));
    if (IsOp(".")) {
      Next();
      n->attribute = ExpectName("an attribute name");
    } else {
      while (IsOp(",")) {
        Next();
        n->targets.push_back(ExpectName("a variable name"));
      }
    }
    if (IsOp("=")) {
      Next();
      n->value = ParseTuple();
      ExpectBlockEnd("set");
      return n;
    }
    if (n->targets.size() > 1 || !n->attribute.empty()) Fail(Peek(), "expected '=' in the set, found " + Describe(Peek()));
    ExpectBlockEnd("set");
    std::string end;
    n->block = ParseBody({"endset"}, &end, tag);
    ExpectBlockEnd("endset");
    return n;
  }

  NodePtr ParseMacro() {
    const Token& tag = Next();
    auto n = At<MacroNode>(tag);
    n->name = ExpectName("the macro's name");
    macros_.insert(n->name);
    ExpectOp("(");
    while (!IsOp(")")) {
      n->params.push_back(ExpectName("a parameter name"));
      if (IsOp("=")) {
        Next();
        n->defaults.push_back(ParseExpression());
      } else {
        n->defaults.push_back(nullptr);
      }
      if (!IsOp(",")) break;
      Next();
    }
    ExpectOp(")");
    ExpectBlockEnd("macro");
    const int loops = loops_;
    loops_ = 0;
    std::string end;
    n->body = ParseBody({"endmacro"}, &end, tag);
    loops_ = loops;
    ExpectBlockEnd("endmacro");
    return n;
  }

  // ---- expressions ----

  // a, b, c as a list (a set's value or a loop's items); one expression stays itself.
  ExprPtr ParseTuple() {
    const Token& first = Peek();
    ExprPtr e = ParseExpression();
    if (!IsOp(",")) return e;
    auto list = At<ListExpr>(first);
    list->items.push_back(std::move(e));
    while (IsOp(",")) {
      Next();
      if (Peek().kind == TokenKind::kBlockEnd || Peek().kind == TokenKind::kVarEnd) break;
      list->items.push_back(ParseExpression());
    }
    return list;
  }

  ExprPtr ParseExpression() {
    const Token& start = Peek();
    Depth depth(this, start);
    ExprPtr e = ParseOr();
    Chain chain(this);
    while (IsName("if")) {
      chain.Link(Peek());
      auto c = At<CondExpr>(Next());
      c->then = std::move(e);
      c->cond = ParseOr();
      if (IsName("else")) {
        Next();
        c->otherwise = ParseExpression();
      }
      e = std::move(c);
    }
    return e;
  }

  ExprPtr Binary(std::string op, ExprPtr left, ExprPtr right, const Token& at) {
    auto b = At<BinaryExpr>(at);
    b->op = std::move(op);
    b->left = std::move(left);
    b->right = std::move(right);
    return b;
  }

  ExprPtr ParseOr() { return ParseKeywordChain("or", &Parser::ParseAnd); }
  ExprPtr ParseAnd() { return ParseKeywordChain("and", &Parser::ParseNot); }

  // a or b or c (and the same for and): left to right.
  ExprPtr ParseKeywordChain(const char* keyword, ExprPtr (Parser::*operand)()) {
    ExprPtr e = (this->*operand)();
    Chain chain(this);
    while (IsName(keyword)) {
      chain.Link(Peek());
      const Token& at = Next();
      e = Binary(keyword, std::move(e), (this->*operand)(), at);
    }
    return e;
  }

  ExprPtr ParseNot() {
    if (IsName("not")) {
      auto n = At<UnaryExpr>(Next());
      Depth depth(this, Peek());
      n->op = "not";
      n->operand = ParseNot();
      return n;
    }
    return ParseCompare();
  }

  // a < b, and Python's chains: a < b < c is a < b and b < c, with b evaluated once.
  ExprPtr ParseCompare() {
    const Token& first = Peek();
    std::vector<ExprPtr> operands;
    std::vector<std::pair<std::string, Token>> ops;
    operands.push_back(ParseMath1());
    Chain chain(this);
    while (true) {
      const Token& at = Peek();
      std::string op;
      if (at.kind == TokenKind::kOperator &&
          (at.text == "==" || at.text == "!=" || at.text == "<" || at.text == "<=" || at.text == ">" || at.text == ">=")) {
        op = at.text;
        Next();
      } else if (IsName("in")) {
        op = "in";
        Next();
      } else if (IsName("not") && IsName("in", 1)) {
        op = "not in";
        Next();
        Next();
      } else {
        break;
      }
      chain.Link(at);
      ops.emplace_back(op, at);
      operands.push_back(ParseMath1());
    }
    if (ops.empty()) return std::move(operands[0]);
    if (ops.size() == 1) return Binary(ops[0].first, std::move(operands[0]), std::move(operands[1]), ops[0].second);
    auto c = At<CompareChainExpr>(first);
    for (auto& [op, at] : ops) c->ops.push_back(op);
    c->operands = std::move(operands);
    return c;
  }

  ExprPtr ParseLeftAssoc(const std::vector<const char*>& ops, ExprPtr (Parser::*operand)()) {
    ExprPtr e = (this->*operand)();
    Chain chain(this);
    while (true) {
      const char* found = nullptr;
      for (const char* op : ops) {
        if (IsOp(op)) found = op;
      }
      if (found == nullptr) return e;
      chain.Link(Peek());
      const Token& at = Next();
      e = Binary(found, std::move(e), (this->*operand)(), at);
    }
  }

  ExprPtr ParseMath1() { return ParseLeftAssoc({"+", "-"}, &Parser::ParseConcat); }
  ExprPtr ParseConcat() { return ParseLeftAssoc({"~"}, &Parser::ParseMath2); }
  ExprPtr ParseMath2() { return ParseLeftAssoc({"*", "/", "//", "%"}, &Parser::ParsePow); }
  ExprPtr ParsePow() { return ParseLeftAssoc({"**"}, &Parser::ParseUnaryWithFilters); }
  ExprPtr ParseUnaryWithFilters() { return ParseUnary(true); }

  ExprPtr ParseUnary(bool with_filters) {
    ExprPtr e;
    if (IsOp("-") || IsOp("+")) {
      auto u = At<UnaryExpr>(Peek());
      Depth depth(this, Peek());
      u->op = Next().text;
      u->operand = ParseUnary(false);
      e = std::move(u);
    } else {
      e = ParsePrimary();
    }
    e = ParsePostfix(std::move(e));
    if (with_filters) e = ParseFiltersAndTests(std::move(e));
    return e;
  }

  ExprPtr ParsePrimary() {
    const Token& t = Peek();
    switch (t.kind) {
      case TokenKind::kName: {
        Next();
        auto lit = At<Literal>(t);
        if (t.text == "true" || t.text == "True") lit->value = Value(true);
        else if (t.text == "false" || t.text == "False") lit->value = Value(false);
        else if (t.text == "none" || t.text == "None") lit->value = Value::None();
        else {
          auto n = At<NameExpr>(t);
          n->name = t.text;
          return n;
        }
        return lit;
      }
      case TokenKind::kString: {
        std::string s = Next().text;
        while (Peek().kind == TokenKind::kString) s += Next().text;  // "a" "b" is "ab"
        auto lit = At<Literal>(t);
        lit->value = Value(std::move(s));
        return lit;
      }
      case TokenKind::kInt: {
        auto lit = At<Literal>(Next());
        lit->value = Value(t.int_value);
        return lit;
      }
      case TokenKind::kFloat: {
        auto lit = At<Literal>(Next());
        lit->value = Value(t.float_value);
        return lit;
      }
      case TokenKind::kOperator:
        if (t.text == "(") {
          Next();
          if (IsOp(")")) {
            Next();
            return At<ListExpr>(t);
          }
          ExprPtr e = ParseExpression();
          if (IsOp(",")) {
            auto list = At<ListExpr>(t);
            list->items.push_back(std::move(e));
            while (IsOp(",")) {
              Next();
              if (IsOp(")")) break;
              list->items.push_back(ParseExpression());
            }
            e = std::move(list);
          }
          ExpectOp(")");
          return e;
        }
        if (t.text == "[") {
          Next();
          auto list = At<ListExpr>(t);
          while (!IsOp("]")) {
            list->items.push_back(ParseExpression());
            if (!IsOp(",")) break;
            Next();
          }
          ExpectOp("]");
          return list;
        }
        if (t.text == "{") {
          Next();
          auto dict = At<DictExpr>(t);
          while (!IsOp("}")) {
            ExprPtr k = ParseExpression();
            ExpectOp(":");
            dict->items.emplace_back(std::move(k), ParseExpression());
            if (!IsOp(",")) break;
            Next();
          }
          ExpectOp("}");
          return dict;
        }
        break;
      default: break;
    }
    Fail(t, "expected an expression, found " + Describe(t));
  }

  ExprPtr ParsePostfix(ExprPtr e) {
    Chain chain(this);
    while (true) {
      if (IsOp(".") || IsOp("[") || IsOp("(")) chain.Link(Peek());
      // An access is placed where its object starts: an error says which expression.
      if (IsOp(".")) {
        Next();
        if (Peek().kind == TokenKind::kInt) {
          // x.0 is x[0] in Jinja.
          auto item = std::make_unique<ItemExpr>();
          item->line = e->line, item->col = e->col;
          auto lit = At<Literal>(Peek());
          lit->value = Value(Next().int_value);
          item->object = std::move(e);
          item->key = std::move(lit);
          e = std::move(item);
          continue;
        }
        auto a = std::make_unique<AttrExpr>();
        a->line = e->line, a->col = e->col;
        a->name_line = Peek().line, a->name_col = Peek().col;
        a->name = ExpectName("an attribute name after '.'");
        a->object = std::move(e);
        e = std::move(a);
      } else if (IsOp("[")) {
        e = ParseSubscript(std::move(e));
      } else if (IsOp("(")) {
        e = ParseCall(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr ParseSubscript(ExprPtr object) {
    Token at = Next();
    at.line = object->line, at.col = object->col;
    ExprPtr start;
    if (!IsOp(":")) start = ParseExpression();
    if (!IsOp(":")) {
      ExpectOp("]");
      auto item = At<ItemExpr>(at);
      item->object = std::move(object);
      item->key = std::move(start);
      return item;
    }
    auto slice = At<SliceExpr>(at);
    slice->object = std::move(object);
    slice->start = std::move(start);
    Next();
    if (!IsOp(":") && !IsOp("]")) slice->stop = ParseExpression();
    if (IsOp(":")) {
      Next();
      if (!IsOp("]")) slice->step = ParseExpression();
    }
    ExpectOp("]");
    return slice;
  }

  Arguments ParseArguments() {
    Arguments args;
    ExpectOp("(");
    while (!IsOp(")")) {
      if (IsOp("*") || IsOp("**")) Fail(Peek(), "*args and **kwargs are not supported");
      if (Peek().kind == TokenKind::kName && IsOp("=", 1)) {
        std::string name = Next().text;
        Next();
        args.keyword.emplace_back(std::move(name), ParseExpression());
      } else {
        if (!args.keyword.empty()) Fail(Peek(), "a positional argument after a keyword argument");
        args.positional.push_back(ParseExpression());
      }
      if (!IsOp(",")) break;
      Next();
    }
    ExpectOp(")");
    return args;
  }

  ExprPtr ParseCall(ExprPtr callee) {
    auto call = std::make_unique<CallExpr>();
    call->line = callee->line;  // errors point at the name called, not at "("
    call->col = callee->col;
    if (auto* name = dynamic_cast<NameExpr*>(callee.get())) {
      call->builtin = FindFunction(name->name);
      if (call->builtin == nullptr) calls_.emplace_back(name->name, callee->line, callee->col, branches_ > 0);
    } else if (auto* attr = dynamic_cast<AttrExpr*>(callee.get())) {
      if (!IsKnownMethod(attr->name)) {
        Unknown("unknown method '" + attr->name + "': strings have startswith, endswith, strip, lstrip, rstrip, " +
                    "split, splitlines, replace, upper, lower, title, capitalize, find, rfind, count, isdigit, " +
                    "isalpha, isalnum, isspace, islower, isupper, removeprefix, removesuffix and join; dicts " +
                    "have items, keys, values and get",
                attr->name_line, attr->name_col, branches_ > 0);
      }
    }
    call->callee = std::move(callee);
    call->args = ParseArguments();
    return call;
  }

  // A filter or test name given as a string to map/select/reject: known at load time too.
  void CheckNamedArgument(const std::string& filter, const Arguments& args) {
    const bool by_attribute = filter == "selectattr" || filter == "rejectattr";
    const size_t at = by_attribute ? 1 : 0;
    if (filter != "map" && filter != "select" && filter != "reject" && !by_attribute) return;
    if (at >= args.positional.size()) return;
    auto* lit = dynamic_cast<const Literal*>(args.positional[at].get());
    if (lit == nullptr || !lit->value.is_string()) return;
    const std::string& name = lit->value.str();
    const bool known = filter == "map" ? FindFilter(name) != nullptr : FindTest(name) != nullptr;
    if (!known) {
      Unknown("unknown " + std::string(filter == "map" ? "filter" : "test") + " '" + name + "' given to " + filter,
              lit->line, lit->col, branches_ > 0);
    }
  }

  ExprPtr ParseFiltersAndTests(ExprPtr e) {
    Chain chain(this);
    while (true) {
      if (IsOp("|") || IsName("is") || IsOp("(")) chain.Link(Peek());
      if (IsOp("|")) {
        Next();
        const Token& name = Peek();
        auto f = At<FilterExpr>(name);
        const std::string filter_name = ExpectName("a filter name after '|'");
        f->filter = FindFilter(filter_name);
        f->name = filter_name;
        if (f->filter == nullptr) Unknown("unknown filter '" + filter_name + "'", name.line, name.col, branches_ > 0);
        if (IsOp("(")) f->args = ParseArguments();
        CheckNamedArgument(filter_name, f->args);
        f->value = std::move(e);
        e = std::move(f);
      } else if (IsName("is")) {
        Next();
        auto t = At<TestExpr>(Peek());
        if (IsName("not")) {
          Next();
          t->negated = true;
        }
        const Token& name = Peek();
        const std::string test_name = ExpectName("a test name after 'is'");
        t->test = FindTest(test_name);
        t->name = test_name;
        if (t->test == nullptr) Unknown("unknown test '" + test_name + "'", name.line, name.col, branches_ > 0);
        if (IsOp("(")) {
          t->args = ParseArguments();
        } else if ((Peek().kind == TokenKind::kName || Peek().kind == TokenKind::kString || Peek().kind == TokenKind::kInt ||
                    Peek().kind == TokenKind::kFloat || IsOp("[") || IsOp("{")) &&
                   !IsName("else") && !IsName("or") && !IsName("and") && !IsName("if")) {
          // `x is divisibleby 3`: one argument without parentheses.
          t->args.positional.push_back(ParsePostfix(ParsePrimary()));
        }
        t->value = std::move(e);
        e = std::move(t);
      } else if (IsOp("(")) {
        e = ParseCall(std::move(e));
      } else {
        return e;
      }
    }
  }

  std::vector<Token> t_;
  size_t p_ = 0;
  int depth_ = 0;
  int loops_ = 0;
  std::vector<std::tuple<std::string, int, int, bool>> calls_;  // names called, checked against macros
  int branches_ = 0;                      // inside this many {% if %} bodies
  std::vector<std::string> deferred_;     // unknown names in branches: errors only if they run
  std::set<std::string> macros_;
};

}  // namespace

ParsedTemplate Parse(std::string_view source) { return Parser(Lex(source)).Run(); }

}  // namespace carapace::jinja
