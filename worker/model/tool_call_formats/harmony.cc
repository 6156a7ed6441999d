// gpt-oss's harmony format: the reply is a sequence of messages, each a header, <|message|>
// and content, ended by <|end|> (another message follows, after <|start|>), <|call|> (the
// message is a tool call) or <|return|> (done). The prompt ends with <|start|>assistant, so
// the first header follows at once. A message from any role but the assistant (a server that
// did not stop at <|call|>, and the model imagining the tool's answer) ends the reply. From
// the header:
//   <|channel|>final: the answer, passed on as it arrives;
//   <|channel|>commentary without a recipient: a preamble for the user, text as well;
//   <|channel|>analysis: reasoning, dropped;
//   a recipient (to=functions.NAME, in the role or the channel part): a call of NAME with the
//   content as its JSON arguments (<|constrain|>json or a bare "json" says so; not needed).
// Facts from the openai-harmony docs (openai-cookbook articles/openai-harmony.md) and vLLM's
// vllm/entrypoints/openai/tool_parsers/openai_tool_parser.py. <|call|> and <|return|> are
// stop tokens a server may remove, so a message the stream cuts off is finished at the end.
#include "common/json_text.h"
#include "worker/model/tool_call_formats/format_parser.h"

namespace carapace::tool_call_formats {

namespace {

constexpr std::string_view kStart = "<|start|>";
constexpr std::string_view kChannel = "<|channel|>";
constexpr std::string_view kMessage = "<|message|>";
constexpr std::string_view kEnd = "<|end|>";
constexpr std::string_view kCall = "<|call|>";
constexpr std::string_view kReturn = "<|return|>";
constexpr std::string_view kFunctions = "functions.";

// The word after `key` in a header ("" when absent): ends at a space or the next token.
std::string WordAfter(std::string_view header, std::string_view key) {
  size_t at = header.find(key);
  if (at == std::string_view::npos) return "";
  std::string_view rest = header.substr(at + key.size());
  rest = rest.substr(std::min(rest.find_first_not_of(kSpace), rest.size()));
  return std::string(rest.substr(0, rest.find_first_of(" \t\r\n<")));
}

// The header's "to=..." ("" when none), a word of its own wherever it stands.
std::string Recipient(std::string_view header) {
  for (size_t at = header.find("to="); at != std::string_view::npos; at = header.find("to=", at + 1)) {
    if (at == 0 || kSpace.find(header[at - 1]) != std::string_view::npos || header[at - 1] == '>') {
      return WordAfter(header.substr(at), "to=");
    }
  }
  return "";
}

// functions.NAME calls NAME; another recipient (a built-in tool such as browser.search) is
// named as it stands.
std::string ToolName(const std::string& recipient) {
  return recipient.starts_with(kFunctions) ? recipient.substr(kFunctions.size()) : recipient;
}

// Whether the header begins a message of another role than the assistant's (a tool's answer).
bool FromAnotherRole(std::string_view header) {
  return header.find(kStart) != std::string_view::npos && WordAfter(header, kStart) != "assistant";
}

class HarmonyParser : public FormatParser {
 public:
  void Read(std::string& pending, bool complete, ReplySink& out) override {
    while (true) {
      if (state_ == State::kDone) return pending.clear();
      if (state_ == State::kHeader) {
        const size_t message = pending.find(kMessage);
        if (message == std::string::npos) {
          if (complete) EndInHeader(pending, out);
          return;
        }
        StartMessage(std::string_view(pending).substr(0, message));
        pending.erase(0, message + kMessage.size());
        continue;
      }
      // The content runs to the first of the markers that end a message.
      size_t end = std::string::npos;
      std::string_view marker;
      for (auto m : {kEnd, kCall, kReturn, kStart}) {
        if (size_t at = pending.find(m); at < end) {
          end = at;
          marker = m;
        }
      }
      if (end == std::string::npos && !complete) {
        if (state_ == State::kText) out.PassText(pending, false, {kEnd, kCall, kReturn, kStart});
        if (state_ == State::kReasoning) out.DropText(pending, false, {kEnd, kCall, kReturn, kStart});
        return;  // a call's content stays until it is whole
      }
      end = std::min(end, pending.size());
      FinishMessage(std::string_view(pending).substr(0, end), out);
      // <|start|> belongs to the next header; only <|return|> ends the reply.
      pending.erase(0, end + (marker == kStart ? 0 : marker.size()));
      state_ = marker == kReturn || marker.empty() ? State::kDone : State::kHeader;
    }
  }

 private:
  enum class State { kHeader, kText, kReasoning, kCall, kDone };

  void StartMessage(std::string_view header) {
    started_ = true;
    if (FromAnotherRole(header)) {
      state_ = State::kDone;
      return;
    }
    recipient_ = Recipient(header);
    const std::string channel = WordAfter(header, kChannel);
    if (!recipient_.empty()) {
      state_ = State::kCall;
    } else if (channel == "final" || channel == "commentary") {
      state_ = State::kText;
    } else {
      state_ = State::kReasoning;
    }
  }

  void FinishMessage(std::string_view content, ReplySink& out) {
    if (state_ == State::kText) return out.Text(content);
    if (state_ != State::kCall) return;
    std::string name = ToolName(recipient_);
    std::string args = Trim(content);
    // A function without parameters may be called with no content at all.
    out.Call(CallWithArguments(std::move(name), args.empty() ? nlohmann::json::object() : ParsePeerJson(args), args));
  }

  // The reply ended before a header was complete.
  void EndInHeader(std::string& pending, ReplySink& out) {
    if (!started_ && pending.find("<|") == std::string::npos) {
      out.Text(pending);  // a reply that ignored the format altogether: its text is the answer
    } else if (std::string to = ToolName(Recipient(pending)); !to.empty() && !FromAnotherRole(pending)) {
      out.Call(Malformed(Trim(pending), "the call of \"" + to + "\" was cut off before its arguments", to));
    }
    pending.clear();
  }

  State state_ = State::kHeader;
  std::string recipient_;
  bool started_ = false;  // a message has begun
};

}  // namespace

std::unique_ptr<FormatParser> NewHarmonyParser() { return std::make_unique<HarmonyParser>(); }

}  // namespace carapace::tool_call_formats
