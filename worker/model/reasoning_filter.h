// Leaves a reply's leading reasoning out of its text. Reasoning models (Qwen3, DeepSeek-R1
// and their fine-tunes) may open a reply with <think>...</think>: it is not the answer, and
// the model's own template leaves it out of the history anyway. Streaming: only what may
// still become the opening tag is held back.
#pragma once

#include <string>
#include <string_view>

namespace carapace {

class ReasoningFilter {
 public:
  // `open` and `close`: the tags, e.g. "<think>" and "</think>". Both empty: nothing is
  // filtered.
  ReasoningFilter(std::string open, std::string close) : open_(std::move(open)), close_(std::move(close)) {}

  // The part of the reply so far that is text, not reasoning; may be empty.
  std::string Feed(std::string_view delta);
  // The reply ended: text still held back. Reasoning never closed is dropped.
  std::string End();

 private:
  std::string Take();  // held_, emptied

  enum class State { kUndecided, kReasoning, kAfterReasoning, kText };
  std::string open_;
  std::string close_;
  State state_ = State::kUndecided;
  std::string held_;
};

}  // namespace carapace
