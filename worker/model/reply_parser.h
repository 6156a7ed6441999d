// Reading tool calls out of generated text, as it streams in. Servers that take a prompt
// (Triton's LLM backends) return plain text; the model writes its calls in the format its
// chat template taught it. Text is passed on as it arrives, except what might be the start
// of a tool call or a stop string, which is held back until it is known.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "worker/model/chat_template.h"
#include "worker/model/model_backend.h"

namespace carapace {

namespace tool_call_formats {
class FormatParser;
}

// One reply. Not thread-safe; one parser per reply.
class ReplyParser {
 public:
  // `stops`: generation ends at the first of these ("" is ignored). `tools`: the tools offered
  // with the request; formats that write arguments as text (Qwen3-Coder) take their types
  // from the tools' JSON Schemas.
  ReplyParser(ToolCallFormat format, std::vector<std::string> stops, std::vector<ToolSchema> tools = {});
  ~ReplyParser();

  // Feeds the next piece of generated text; text deltas and complete calls go to `out`.
  void Feed(std::string_view delta, ChatStream* out);
  // The reply is complete: flushes held-back text; an unterminated call is malformed.
  // Called by Feed itself when a stop string arrives; later calls do nothing.
  void End(ChatStream* out);

  // A stop string was generated: everything after it is ignored.
  bool stopped() const { return stopped_; }
  // Calls passed on with `malformed` set (never an exception: the model is told and retries).
  int malformed_calls() const { return malformed_; }

 private:
  // Cuts pending_ at the first stop string; true when there was one. Only the text from
  // `from` on can hold one that was not there before.
  bool CutAtStop(size_t from);

  std::unique_ptr<tool_call_formats::FormatParser> format_;
  std::vector<std::string> stops_;
  size_t longest_stop_ = 0;
  std::string pending_;  // arrived, not read yet
  bool stopped_ = false;
  bool ended_ = false;
  int malformed_ = 0;
};

// One call written as JSON: {"name": "...", "arguments" | "parameters": {...}}. Arguments
// given as a JSON string holding an object are accepted too. On failure the call comes back
// with `malformed` set and the raw text as its arguments.
ToolCall ParseToolCallJson(const std::string& body);

// The name a format goes by in template files and flags: "hermes", "llama3", "mistral",
// "qwen3-coder", "deepseek", "harmony".
std::string_view ToolCallFormatName(ToolCallFormat format);
// The format of that name; nullopt for any other.
std::optional<ToolCallFormat> ToolCallFormatFromName(std::string_view name);
// The format a Jinja chat template teaches, from the markers in its text; nullopt when it
// names none of them.
std::optional<ToolCallFormat> DetectToolCallFormat(std::string_view chat_template_text);

}  // namespace carapace
