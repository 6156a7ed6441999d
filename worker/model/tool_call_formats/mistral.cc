// Mistral: text, then [TOOL_CALLS] and the calls, which run to the end of the reply. Two
// generations of the format (as vLLM's vllm/entrypoints/openai/tool_parsers/mistral_tool_parser.py
// reads them):
//   v0.3 and older tokenizers: [TOOL_CALLS][{"name": "f", "arguments": {...}}, ...]
//   v11+ (Mistral Small 3.2, Devstral, Magistral): [TOOL_CALLS]f[ARGS]{...}, repeated per call,
//   optionally with [CALL_ID]id before [ARGS]; the oldest v11 models leave out [ARGS].
// Each call is passed on as soon as its JSON closes.
#include "common/json_text.h"
#include "worker/model/reply_parser.h"
#include "worker/model/tool_call_formats/format_parser.h"

namespace carapace::tool_call_formats {

namespace {

constexpr std::string_view kToolCalls = "[TOOL_CALLS]";
constexpr std::string_view kArgs = "[ARGS]";
constexpr std::string_view kCallId = "[CALL_ID]";

class MistralParser : public FormatParser {
 public:
  void Read(std::string& pending, bool complete, ReplySink& out) override {
    if (!in_calls_) {
      size_t at = pending.find(kToolCalls);
      if (at == std::string::npos) return out.PassText(pending, complete, {kToolCalls});
      out.Text(std::string_view(pending).substr(0, at));
      pending.erase(0, at + kToolCalls.size());
      in_calls_ = true;
    }
    bool more = true;
    while (more) more = ReadNext(pending, complete, out);
    if (complete && calls_ == 0) out.Call(Malformed("", "[TOOL_CALLS] is not followed by a tool call"));
  }

 private:
  // Reads one piece of the calls (a call, a marker, a bracket or a comma) from the front of
  // `p`; false when there is nothing more to read until more text arrives.
  bool ReadNext(std::string& p, bool complete, ReplySink& out) {
    p.erase(0, std::min(p.find_first_not_of(kSpace), p.size()));
    if (p.empty()) return false;
    std::string_view s = p;
    if (s.starts_with(kToolCalls)) {  // the next call of the v11 style
      p.erase(0, kToolCalls.size());
      return true;
    }
    if (!complete && (IsPartial(s, kToolCalls) || IsPartial(s, kArgs) || IsPartial(s, kCallId))) return false;
    // The v0.3 list: its brackets and commas stand between JSON calls.
    const bool opens_list = !in_list_ && s[0] == '[' && !s.starts_with(kArgs) && !s.starts_with(kCallId);
    if (opens_list || (in_list_ && (s[0] == ',' || s[0] == ']'))) {
      in_list_ = s[0] != ']';
      p.erase(0, 1);
      return true;
    }
    if (s[0] == '{') return ReadJsonCall(p, complete, out);
    if (in_list_) return SkipMalformed(p, complete, out, "expected a JSON tool call in the [TOOL_CALLS] list");
    return ReadNamedCall(p, complete, out);
  }

  // {"name": ..., "arguments": {...}}; an "id" beside them is the model's and is not used.
  bool ReadJsonCall(std::string& p, bool complete, ReplySink& out) {
    size_t end = ObjectEnd(p, 0);
    if (end == std::string::npos) {
      if (complete) Emit(Malformed(Trim(p), "the tool call JSON is not terminated"), p, p.size(), out);
      return false;
    }
    Emit(ParseToolCallJson(p.substr(0, end)), p, end, out);
    return true;
  }

  // name[ARGS]{...}, name[CALL_ID]id[ARGS]{...} or name{...}.
  bool ReadNamedCall(std::string& p, bool complete, ReplySink& out) {
    const size_t bracket = p.find_first_of("[{");
    if (bracket == std::string::npos) {
      if (complete) Emit(Malformed(Trim(p), "the tool call has no [ARGS]"), p, p.size(), out);
      return false;
    }
    const std::string name = Trim(std::string_view(p).substr(0, bracket));
    size_t args = bracket;
    std::string_view rest = std::string_view(p).substr(bracket);
    if (rest.starts_with(kArgs)) {
      args += kArgs.size();
    } else if (rest.starts_with(kCallId)) {
      size_t at = p.find(kArgs, bracket);
      size_t next = p.find(kToolCalls, bracket);
      if (at == std::string::npos || next < at) {
        if (!complete && next == std::string::npos) return false;
        return SkipMalformed(p, complete, out, "the tool call \"" + name + "\" has no [ARGS]", name);
      }
      args = at + kArgs.size();
    } else if (rest[0] == '[') {
      if (!complete && (IsPartial(rest, kArgs) || IsPartial(rest, kCallId) || IsPartial(rest, kToolCalls))) {
        return false;
      }
      return SkipMalformed(p, complete, out, "the tool call \"" + name + "\" has no [ARGS]", name);
    }
    const size_t brace = p.find_first_not_of(kSpace, args);
    if (brace == std::string::npos) {
      if (complete) Emit(Malformed(Trim(p), "the tool call \"" + name + "\" has no arguments", name), p, p.size(), out);
      return false;
    }
    if (p[brace] != '{') {
      return SkipMalformed(p, complete, out, "the arguments of \"" + name + "\" must be a JSON object", name);
    }
    const size_t end = ObjectEnd(p, brace);
    if (end == std::string::npos) {
      if (complete) {
        Emit(Malformed(Trim(p), "the arguments of \"" + name + "\" are not terminated", name), p, p.size(), out);
      }
      return false;
    }
    std::string raw = Trim(std::string_view(p).substr(0, end));
    Emit(CallWithArguments(name, ParsePeerJson(std::string_view(p).substr(brace, end - brace)), std::move(raw)), p, end,
         out);
    return true;
  }

  // What cannot be read runs to the next [TOOL_CALLS], or to the end of the reply. (`p` does
  // not start with one: ReadNext took it.)
  bool SkipMalformed(std::string& p, bool complete, ReplySink& out, const std::string& why, std::string name = "") {
    size_t next = p.find(kToolCalls, 1);
    if (next == std::string::npos && !complete) return false;
    next = std::min(next, p.size());
    Emit(Malformed(Trim(std::string_view(p).substr(0, next)), why, std::move(name)), p, next, out);
    return !p.empty();
  }

  // Passes on `call`, read from the first `length` bytes of `p`.
  void Emit(ToolCall call, std::string& p, size_t length, ReplySink& out) {
    out.Call(std::move(call));
    ++calls_;
    p.erase(0, length);
  }

  bool in_calls_ = false;  // [TOOL_CALLS] arrived: the rest of the reply is calls
  bool in_list_ = false;   // inside the v0.3 JSON list
  int calls_ = 0;
};

}  // namespace

std::unique_ptr<FormatParser> NewMistralParser() { return std::make_unique<MistralParser>(); }

}  // namespace carapace::tool_call_formats
