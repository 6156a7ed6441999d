// Reading tool calls out of generated text, as it streams in. Servers that take a prompt
// (Triton's LLM backends) return plain text; the model writes its calls in the format its
// chat template taught it. Text is passed on as it arrives, except what might be the start
// of a tool call or a stop string, which is held back until it is known.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "worker/model/chat_template.h"
#include "worker/model/model_backend.h"

namespace carapace {

class ReplyParser {
 public:
  ReplyParser(ToolCallFormat format, std::vector<std::string> stops);

  // Feeds the next piece of generated text; text deltas and complete calls go to `out`.
  void Feed(std::string_view delta, ChatStream* out);
  // The reply is complete: flushes held-back text; an unterminated call is malformed.
  // Called by Feed itself when a stop string arrives; later calls do nothing.
  void End(ChatStream* out);

  // A stop string was generated: everything after it is ignored.
  bool stopped() const { return stopped_; }
  int malformed_calls() const { return malformed_; }

 private:
  void FeedHermes(ChatStream* out);
  void EmitCall(const std::string& body, ChatStream* out);
  void EmitLlamaCalls(std::string text, ChatStream* out);
  // Cuts pending_ at the first stop string; true when there was one.
  bool CutAtStop();

  ToolCallFormat format_;
  std::vector<std::string> stops_;
  std::string pending_;
  bool in_call_ = false;
  bool stopped_ = false;
  bool ended_ = false;
  enum class LlamaMode { kUndecided, kText, kCalls } llama_mode_ = LlamaMode::kUndecided;
  int malformed_ = 0;
};

// One call written as JSON: {"name": "...", "arguments" | "parameters": {...}}. Arguments
// given as a JSON string holding an object are accepted too. On failure the call comes back
// with `malformed` set and the raw text as its arguments.
ToolCall ParseToolCallJson(const std::string& body);

}  // namespace carapace
