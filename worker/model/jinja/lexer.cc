// The template lexer: text, tags, and the tokens of the expressions inside tags.
#include "worker/model/jinja/lexer.h"

#include <algorithm>
#include <cctype>

#include "common/text.h"

namespace carapace::jinja {

namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

class Lexer {
 public:
  explicit Lexer(std::string_view src) : src_(src) {
    for (size_t i = 0; i < src.size(); ++i) {
      if (src[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  std::vector<Token> Run() {
    size_t pos = 0;
    while (pos < src_.size()) {
      const size_t open = FindTagStart(pos);
      Text(pos, open);
      if (open == src_.size()) break;
      pos = Tag(open);
    }
    Token end;
    end.kind = TokenKind::kEnd;
    Place(&end, src_.size());
    tokens_.push_back(end);
    return std::move(tokens_);
  }

 private:
  void Place(Token* t, size_t pos) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos);
    t->line = static_cast<int>(it - line_starts_.begin());
    t->col = static_cast<int>(pos - *(it - 1)) + 1;
  }

  [[noreturn]] void Fail(size_t pos, std::string message) const {
    Token t;
    Place(&t, pos);
    throw SyntaxError{std::move(message), t.line, t.col};
  }

  size_t FindTagStart(size_t pos) const {
    while (true) {
      size_t at = src_.find('{', pos);
      if (at == std::string_view::npos || at + 1 >= src_.size()) return src_.size();
      const char next = src_[at + 1];
      if (next == '{' || next == '%' || next == '#') return at;
      pos = at + 1;
    }
  }

  // Literal text [from, to), with what the tags around it strip.
  void Text(size_t from, size_t to) {
    std::string text(src_.substr(from, to - from));
    if (strip_next_) {
      text.erase(0, std::find_if_not(text.begin(), text.end(), IsSpace) - text.begin());
    } else if (trim_newline_next_) {
      // trim_blocks: the first newline after a block tag goes.
      if (text.rfind("\r\n", 0) == 0) text.erase(0, 2);
      else if (!text.empty() && text[0] == '\n') text.erase(0, 1);
    }
    strip_next_ = trim_newline_next_ = false;
    Token t;
    t.kind = TokenKind::kText;
    t.text = std::move(text);
    Place(&t, from);
    tokens_.push_back(std::move(t));
  }

  // The text token just before a tag: "-" strips all its trailing whitespace; lstrip_blocks
  // strips spaces and tabs between the start of the line and a block or comment tag.
  void BeforeTag(char modifier, bool block_or_comment, size_t open) {
    if (tokens_.empty() || tokens_.back().kind != TokenKind::kText) return;
    std::string& text = tokens_.back().text;
    if (modifier == '-') {
      while (!text.empty() && IsSpace(text.back())) text.pop_back();
      return;
    }
    if (!block_or_comment || modifier == '+') return;
    // Judged on the source, not the text: trim_blocks may have taken the newline already.
    size_t blanks = 0;
    while (blanks < open && (src_[open - blanks - 1] == ' ' || src_[open - blanks - 1] == '\t')) ++blanks;
    if (blanks < open && src_[open - blanks - 1] != '\n') return;
    text.resize(text.size() - std::min(blanks, text.size()));
  }

  // After a tag's closing delimiter: "-" strips the next text's leading whitespace, "+" keeps
  // it, and a block or comment tag otherwise drops one newline (trim_blocks).
  void AfterTag(char modifier, bool block_or_comment) {
    if (modifier == '-') strip_next_ = true;
    else if (modifier != '+' && block_or_comment) trim_newline_next_ = true;
  }

  // A tag starting at `open`; returns the position after it.
  size_t Tag(size_t open) {
    const char kind = src_[open + 1];
    size_t pos = open + 2;
    char modifier = pos < src_.size() && (src_[pos] == '-' || src_[pos] == '+') ? src_[pos] : 0;
    if (modifier) ++pos;
    BeforeTag(modifier, kind != '{', open);
    if (kind == '#') {
      const size_t close = src_.find("#}", pos);
      if (close == std::string_view::npos) Fail(open, "the comment is not closed with #}");
      const char end_modifier = close > pos && (src_[close - 1] == '-' || src_[close - 1] == '+') ? src_[close - 1] : 0;
      AfterTag(end_modifier, true);
      return close + 2;
    }
    Token begin;
    begin.kind = kind == '{' ? TokenKind::kVarBegin : TokenKind::kBlockBegin;
    Place(&begin, open);
    tokens_.push_back(begin);
    const size_t first_token = tokens_.size();
    pos = Expression(pos, kind == '{' ? '}' : '%', open);
    // {% raw %}: everything up to {% endraw %} is text.
    if (kind == '%' && tokens_.size() == first_token + 2 && tokens_[first_token].kind == TokenKind::kName &&
        tokens_[first_token].text == "raw") {
      tokens_.resize(first_token - 1);
      trim_newline_next_ = false;  // Jinja's raw block keeps the newline after {% raw %}
      return Raw(pos);
    }
    return pos;
  }

  // The tokens of an expression, up to the closing delimiter at bracket depth 0.
  size_t Expression(size_t pos, char close, size_t open) {
    int depth = 0;
    while (true) {
      while (pos < src_.size() && IsSpace(src_[pos])) ++pos;
      if (pos >= src_.size()) Fail(open, close == '}' ? "the tag is not closed with }}" : "the tag is not closed with %}");
      if (depth == 0) {
        size_t at = pos;
        char modifier = 0;
        if (src_[at] == '-' || src_[at] == '+') modifier = src_[at++];
        if (at + 1 < src_.size() && src_[at] == close && src_[at + 1] == '}' && (modifier != '+' || close == '%')) {
          Token end;
          end.kind = close == '}' ? TokenKind::kVarEnd : TokenKind::kBlockEnd;
          Place(&end, pos);
          tokens_.push_back(end);
          AfterTag(modifier, close == '%');
          return at + 2;
        }
      }
      Token t;
      Place(&t, pos);
      const char c = src_[pos];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t end = pos;
        while (end < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[end])) || src_[end] == '_')) ++end;
        t.kind = TokenKind::kName;
        t.text = std::string(src_.substr(pos, end - pos));
        pos = end;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        pos = Number(pos, &t);
      } else if (c == '\'' || c == '"') {
        pos = String(pos, &t);
      } else {
        static const char* kOperators[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "|",
                                           ".",  ",",  ":",  "(",  ")",  "[",  "]", "{", "}", "=", "<", ">"};
        const char* found = nullptr;
        for (const char* op : kOperators) {
          if (src_.substr(pos, std::char_traits<char>::length(op)) == op) {
            found = op;
            break;
          }
        }
        if (found == nullptr) Fail(pos, std::string("unexpected character '") + c + "'");
        t.kind = TokenKind::kOperator;
        t.text = found;
        pos += t.text.size();
        if (t.text == "(" || t.text == "[" || t.text == "{") ++depth;
        if ((t.text == ")" || t.text == "]" || t.text == "}") && depth > 0) --depth;
      }
      tokens_.push_back(std::move(t));
    }
  }

  size_t Number(size_t pos, Token* t) {
    size_t end = pos;
    auto digits = [&] {
      while (end < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[end])) || src_[end] == '_')) ++end;
    };
    digits();
    bool is_float = false;
    if (end + 1 < src_.size() && src_[end] == '.' && std::isdigit(static_cast<unsigned char>(src_[end + 1]))) {
      is_float = true;
      ++end;
      digits();
    }
    if (end < src_.size() && (src_[end] == 'e' || src_[end] == 'E')) {
      size_t e = end + 1;
      if (e < src_.size() && (src_[e] == '+' || src_[e] == '-')) ++e;
      if (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) {
        is_float = true;
        end = e;
        digits();
      }
    }
    std::string text;
    for (size_t i = pos; i < end; ++i) {
      if (src_[i] != '_') text += src_[i];
    }
    try {
      if (is_float) {
        t->kind = TokenKind::kFloat;
        t->float_value = std::stod(text);
      } else {
        t->kind = TokenKind::kInt;
        t->int_value = std::stoll(text);
      }
    } catch (const std::exception&) {
      Fail(pos, "the number " + text + " is out of range");
    }
    t->text = std::move(text);
    return end;
  }

  size_t String(size_t pos, Token* t) {
    const char quote = src_[pos];
    std::string value;
    size_t i = pos + 1;
    for (; i < src_.size() && src_[i] != quote; ++i) {
      if (src_[i] != '\\' || i + 1 >= src_.size()) {
        value += src_[i];
        continue;
      }
      const char e = src_[++i];
      switch (e) {
        case 'n': value += '\n'; break;
        case 't': value += '\t'; break;
        case 'r': value += '\r'; break;
        case '0': value += '\0'; break;
        case '\\': value += '\\'; break;
        case '\'': value += '\''; break;
        case '"': value += '"'; break;
        case '\n': break;  // a line continuation
        case 'x':
        case 'u':
        case 'U': {
          const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (i + n >= src_.size()) Fail(i - 1, "a truncated \\" + std::string(1, e) + " escape");
          const std::string hex(src_.substr(i + 1, n));
          if (!std::all_of(hex.begin(), hex.end(), [](char h) { return std::isxdigit(static_cast<unsigned char>(h)); })) {
            Fail(i - 1, "a bad \\" + std::string(1, e) + " escape");
          }
          const auto cp = static_cast<uint32_t>(std::stoul(hex, nullptr, 16));
          if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) Fail(i - 1, "a \\" + std::string(1, e) + " escape that is no Unicode character");
          AppendUtf8(cp, &value);
          i += n;
          break;
        }
        default: value += '\\', value += e;  // Python keeps unknown escapes as written
      }
    }
    if (i >= src_.size()) Fail(pos, "the string is not closed");
    t->kind = TokenKind::kString;
    t->text = std::move(value);
    return i + 1;
  }

  // The body of {% raw %}: text up to {% endraw %}, which may carry "-" modifiers too.
  size_t Raw(size_t pos) {
    size_t search = pos;
    while (true) {
      const size_t open = src_.find("{%", search);
      if (open == std::string_view::npos) Fail(pos, "{% raw %} is not closed with {% endraw %}");
      size_t at = open + 2;
      char modifier = at < src_.size() && (src_[at] == '-' || src_[at] == '+') ? src_[at] : 0;
      if (modifier) ++at;
      while (at < src_.size() && IsSpace(src_[at])) ++at;
      if (src_.substr(at, 6) != "endraw") {
        search = open + 2;
        continue;
      }
      at += 6;
      while (at < src_.size() && IsSpace(src_[at])) ++at;
      char end_modifier = at < src_.size() && (src_[at] == '-' || src_[at] == '+') ? src_[at] : 0;
      if (end_modifier) ++at;
      if (src_.substr(at, 2) != "%}") Fail(open, "{% endraw %} is not closed with %}");
      Text(pos, open);
      BeforeTag(modifier, true, open);
      AfterTag(end_modifier, true);
      return at + 2;
    }
  }

  std::string_view src_;
  std::vector<size_t> line_starts_{0};
  std::vector<Token> tokens_;
  bool strip_next_ = false;
  bool trim_newline_next_ = false;
};

}  // namespace

std::vector<Token> Lex(std::string_view source) { return Lexer(source).Run(); }

}  // namespace carapace::jinja
