// Parses a template's tokens into nodes. Everything that can be known before rendering is
// checked here: tags, filters, tests, functions and methods the engine does not have, and
// break/continue outside a loop, each reported with its line and column.
#pragma once

#include <string_view>

#include "worker/model/jinja/nodes.h"

namespace carapace::jinja {

struct ParsedTemplate {
  Body body;
  // "line:col: unknown filter 'x'" for each name the engine does not have inside an
  // {% if %} branch: an error only if that branch runs (Parse says so here).
  std::vector<std::string> deferred;
};

// Throws SyntaxError.
ParsedTemplate Parse(std::string_view source);

}  // namespace carapace::jinja
