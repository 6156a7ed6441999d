// Splits a template into text and tag tokens, with the whitespace rules chat templates are
// written for: Hugging Face renders them with trim_blocks and lstrip_blocks on, and authors
// use "-" on tags to strip the rest. The whitespace of the output depends on exactly this.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace carapace::jinja {

enum class TokenKind {
  kText,        // literal output, whitespace rules already applied
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,
  kString,      // text: the value, escapes resolved
  kInt,
  kFloat,
  kOperator,    // text: the operator
  kEnd,         // end of the template
};

struct Token {
  TokenKind kind = TokenKind::kEnd;
  std::string text;
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;
  int col = 1;
};

// A template that cannot be read: where and why. Thrown inside the jinja module only.
struct SyntaxError {
  std::string message;
  int line = 0;
  int col = 0;
};

// Throws SyntaxError for an unterminated tag, comment or string, or a character that
// starts no token.
std::vector<Token> Lex(std::string_view source);

}  // namespace carapace::jinja
