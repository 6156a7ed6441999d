// Llama 3: a reply that calls tools is nothing but the calls, JSON objects
// {"name": ..., "parameters": {...}} joined by ';', optionally after <|python_tag|>. Whether a
// reply is calls is known from its first characters; calls are read when the reply is complete.
#include "worker/model/reply_parser.h"
#include "worker/model/tool_call_formats/format_parser.h"

namespace carapace::tool_call_formats {

namespace {

constexpr std::string_view kPythonTag = "<|python_tag|>";

class Llama3Parser : public FormatParser {
 public:
  void Read(std::string& pending, bool complete, ReplySink& out) override {
    if (mode_ == Mode::kUndecided) Decide(pending);
    if (mode_ == Mode::kText) return out.PassText(pending, complete);
    if (!complete) return;
    if (mode_ == Mode::kCalls) {
      ReadCalls(pending, out);
    } else {
      out.Text(pending);
    }
    pending.clear();
  }

 private:
  void Decide(std::string_view pending) {
    size_t first = pending.find_first_not_of(kSpace);
    if (first == std::string_view::npos) return;
    std::string_view rest = pending.substr(first);
    if (rest[0] == '{' || rest.starts_with(kPythonTag)) {
      mode_ = Mode::kCalls;
    } else if (!IsPartial(rest, kPythonTag)) {
      mode_ = Mode::kText;
    }
  }

  static void ReadCalls(std::string_view reply, ReplySink& out) {
    std::string text = Trim(reply);
    const bool tagged = text.starts_with(kPythonTag);
    if (tagged) text = Trim(std::string_view(text).substr(kPythonTag.size()));
    size_t at = 0;
    bool first = true;
    while (true) {
      at = text.find_first_not_of(" \t\r\n;", at);
      if (at == std::string::npos) return;
      if (text[at] != '{') return out.Call(Malformed(text.substr(at), "expected a JSON tool call, found text"));
      size_t end = ObjectEnd(text, at);
      if (end == std::string::npos) return out.Call(Malformed(text.substr(at), "the tool call JSON is not terminated"));
      ToolCall c = ParseToolCallJson(text.substr(at, end - at));
      // A reply that is a JSON document but not a call is an answer, not a broken call.
      if (first && !tagged && c.malformed == "the tool call has no \"name\"" && end == text.size()) {
        return out.Text(text);
      }
      first = false;
      out.Call(std::move(c));
      at = end;
    }
  }

  enum class Mode { kUndecided, kText, kCalls } mode_ = Mode::kUndecided;
};

}  // namespace

std::unique_ptr<FormatParser> NewLlama3Parser() { return std::make_unique<Llama3Parser>(); }

}  // namespace carapace::tool_call_formats
