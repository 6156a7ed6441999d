// What the tool-call formats share: the reader each format implements behind ReplyParser
// (worker/model/reply_parser.h), and the small pieces of text handling they have in common.
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "worker/model/chat.h"
#include "worker/model/model_backend.h"

namespace carapace::tool_call_formats {

constexpr std::string_view kSpace = " \t\r\n";

// Where a format puts what it reads: text and calls go on to the stream, and malformed calls
// are counted. Built by ReplyParser for each piece of text; holds no text itself.
class ReplySink {
 public:
  ReplySink(ChatStream* out, const std::vector<std::string>& stops, int* malformed)
      : out_(out), stops_(stops), malformed_(malformed) {}

  void Text(std::string_view text) { out_->Text(text); }
  void Call(ToolCall call);

  // Passes on `pending` as text and erases it. Before the reply is complete, an end of it that
  // may still grow into one of `markers` or a stop string stays in `pending`.
  void PassText(std::string& pending, bool complete, std::span<const std::string_view> markers);
  void PassText(std::string& pending, bool complete, std::initializer_list<std::string_view> markers = {}) {
    PassText(pending, complete, std::span(markers.begin(), markers.size()));
  }
  // The same, but the text is dropped, not passed on (a model's reasoning). The end is still
  // held back: a stop string split across deltas must stay whole to be found.
  void DropText(std::string& pending, bool complete, std::span<const std::string_view> markers);
  void DropText(std::string& pending, bool complete, std::initializer_list<std::string_view> markers) {
    DropText(pending, complete, std::span(markers.begin(), markers.size()));
  }

 private:
  size_t Settled(std::string_view pending, bool complete, std::span<const std::string_view> markers) const;

  ChatStream* out_;
  const std::vector<std::string>& stops_;
  int* malformed_;
};

// One format's reader. ReplyParser keeps the text not read yet (`pending`, already cut at a
// stop string) and calls Read after every delta, and once more when the reply is complete.
class FormatParser {
 public:
  virtual ~FormatParser() = default;
  // Reads what is already certain from the front of `pending`, hands text and complete calls
  // to `out` and erases them. With `complete` (the reply has ended) everything is read: a call
  // left unfinished becomes a malformed call. Never throws.
  virtual void Read(std::string& pending, bool complete, ReplySink& out) = 0;
};

// Calls between an opening and a closing tag with text around them (Hermes, Qwen3-Coder,
// DeepSeek); `parse_body` turns what stands between the tags into a call. `dropped` are
// markers that may appear in the text and mean nothing to the reader (DeepSeek's block tags).
std::unique_ptr<FormatParser> NewTaggedCallParser(std::string_view open, std::string_view close,
                                                  std::function<ToolCall(const std::string& body)> parse_body,
                                                  std::vector<std::string_view> dropped = {});

std::unique_ptr<FormatParser> NewHermesParser();
std::unique_ptr<FormatParser> NewLlama3Parser();
std::unique_ptr<FormatParser> NewMistralParser();
// `tools`: the offered tools, whose JSON Schemas give the parameters' types.
std::unique_ptr<FormatParser> NewQwen3CoderParser(std::vector<ToolSchema> tools);
std::unique_ptr<FormatParser> NewDeepSeekParser();
std::unique_ptr<FormatParser> NewHarmonyParser();

// Length of the longest end of `text` that is a proper prefix of `marker`: text that may
// become the marker with the next delta.
size_t HeldBack(std::string_view text, std::string_view marker);
// Whether `text` is a proper prefix of `marker`: more text may make it the marker.
inline bool IsPartial(std::string_view text, std::string_view marker) {
  return text.size() < marker.size() && marker.starts_with(text);
}
std::string Trim(std::string_view s);
// A call that could not be read: `why`, with the model's text as its arguments.
ToolCall Malformed(std::string raw, std::string why, std::string name = "");
// End of the JSON object starting at text[start] == '{' (one past its '}'), or npos while it
// is not closed.
size_t ObjectEnd(std::string_view text, size_t start);
// A call to `name` with `args` (parsed; discarded when it was not JSON) as its arguments; a
// JSON string holding an object is accepted too. Malformed, with `raw` as its text, when the
// name is empty or the arguments are not an object.
ToolCall CallWithArguments(std::string name, nlohmann::json args, std::string raw);

}  // namespace carapace::tool_call_formats
