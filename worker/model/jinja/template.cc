// Template: parse once, render many times; errors become Status at this border.
#include "worker/model/jinja/template.h"

#include "worker/model/jinja/lexer.h"
#include "worker/model/jinja/nodes.h"
#include "worker/model/jinja/parser.h"

namespace carapace::jinja {

namespace {

std::string Where(const std::string& name, int line, int col) {
  return name + ":" + std::to_string(line) + ":" + std::to_string(col) + ": ";
}

}  // namespace

Template::~Template() = default;

Result<std::shared_ptr<const Template>> Template::Parse(std::string_view source, std::string name) {
  constexpr size_t kMaxSource = 1u << 20;
  if (source.size() > kMaxSource) return InvalidArgument(name + ": a chat template over 1 MiB is refused");
  std::shared_ptr<Template> t(new Template());
  t->name_ = std::move(name);
  // Jinja's defaults, which Hugging Face keeps: every newline in the template becomes "\n",
  // and one newline at its very end is dropped (keep_trailing_newline=False).
  std::string text;
  text.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] != '\r') {
      text += source[i];
    } else {
      text += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    }
  }
  if (!text.empty() && text.back() == '\n') text.pop_back();
  try {
    ParsedTemplate parsed = jinja::Parse(text);
    t->body_ = std::move(parsed.body);
    for (auto& note : parsed.deferred) t->deferred_.push_back(t->name_ + ":" + note + " (in a branch: an error only if it runs)");
  } catch (const SyntaxError& e) {
    return InvalidArgument(Where(t->name_, e.line, e.col) + e.message);
  }
  return std::shared_ptr<const Template>(std::move(t));
}

Result<std::string> Template::Render(const Dict& variables) const {
  std::string out;
  Frame top;
  Context ctx;
  ctx.globals = &variables;
  ctx.chain.push_back(&top);
  ctx.out = &out;
  try {
    RenderBody(body_, ctx);
  } catch (const RenderError& e) {
    return InvalidArgument(Where(name_, e.line, e.col) + e.message);
  } catch (const std::exception& e) {
    // Nothing a template does may take the worker down: a library's own limit too.
    return InvalidArgument(name_ + ": the template could not be rendered: " + e.what());
  }
  return out;
}

}  // namespace carapace::jinja
