// DeepSeek V3 and V3.1: calls between <｜tool▁call▁begin｜> and <｜tool▁call▁end｜>, inside a
// <｜tool▁calls▁begin｜> ... <｜tool▁calls▁end｜> block; text before the block is the reply's
// text. The tokens are written with U+FF5C (｜) and U+2581 (▁). What stands left of
// <｜tool▁sep｜> tells the two apart (vLLM's vllm/entrypoints/openai/tool_parsers/
// deepseekv3_tool_parser.py and deepseekv31_tool_parser.py):
//   V3:   function<｜tool▁sep｜>NAME\n```json\n{...}\n```
//   V3.1: NAME<｜tool▁sep｜>{...}
#include "common/json_text.h"
#include "worker/model/tool_call_formats/format_parser.h"

namespace carapace::tool_call_formats {

namespace {

constexpr std::string_view kCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kSep = "<｜tool▁sep｜>";

// The JSON inside a ```json fence (or bare, where the model left the fence out).
std::string Unfenced(std::string_view text) {
  std::string s = Trim(text);
  if (!s.starts_with("```")) return s;
  size_t line = s.find('\n');
  if (line == std::string::npos) return "";
  std::string_view inner = std::string_view(s).substr(line + 1);
  if (inner.ends_with("```")) inner.remove_suffix(3);
  return Trim(inner);
}

ToolCall ParseCall(const std::string& raw_body) {
  const std::string body = Trim(raw_body);
  const size_t sep = body.find(kSep);
  if (sep == std::string::npos) return Malformed(body, "the tool call has no <｜tool▁sep｜>");
  const std::string left = Trim(std::string_view(body).substr(0, sep));
  const std::string_view right = std::string_view(body).substr(sep + kSep.size());
  std::string name, args;
  if (left == "function") {
    const size_t line = right.find('\n');
    name = Trim(right.substr(0, line));
    if (line != std::string_view::npos) args = Unfenced(right.substr(line + 1));
  } else {
    name = left;
    args = Trim(right);
  }
  return CallWithArguments(std::move(name), ParsePeerJson(args), body);
}

}  // namespace

std::unique_ptr<FormatParser> NewDeepSeekParser() {
  // The block tags carry nothing a reader needs: V3.1 calls are read without them as well.
  return NewTaggedCallParser(kCallBegin, kCallEnd, ParseCall, {kCallsBegin, kCallsEnd});
}

}  // namespace carapace::tool_call_formats
