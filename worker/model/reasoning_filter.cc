// A reply's leading <think> block, left out as it streams.
#include "worker/model/reasoning_filter.h"

namespace carapace {

namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

}  // namespace

std::string ReasoningFilter::Feed(std::string_view delta) {
  if (open_.empty() || state_ == State::kText) return std::string(delta);
  held_.append(delta);
  if (state_ == State::kUndecided) {
    size_t first = 0;
    while (first < held_.size() && IsSpace(held_[first])) ++first;
    const std::string_view rest = std::string_view(held_).substr(first);
    if (rest.size() < open_.size() && open_.compare(0, rest.size(), rest) == 0) return "";  // may still open
    if (rest.substr(0, open_.size()) != open_) {
      state_ = State::kText;
      return Take();
    }
    held_.erase(0, first + open_.size());
    state_ = State::kReasoning;
  }
  if (state_ == State::kReasoning) {
    const size_t close = held_.find(close_);
    if (close == std::string::npos) {
      // Keep only what may be the start of the closing tag.
      if (held_.size() > close_.size()) held_.erase(0, held_.size() - close_.size());
      return "";
    }
    held_.erase(0, close + close_.size());
    state_ = State::kAfterReasoning;
  }
  // The blank lines between the reasoning and the answer are not part of the answer.
  size_t first = 0;
  while (first < held_.size() && IsSpace(held_[first])) ++first;
  held_.erase(0, first);
  if (held_.empty()) return "";
  state_ = State::kText;
  return Take();
}

std::string ReasoningFilter::End() {
  std::string out = Take();
  return state_ == State::kUndecided ? out : std::string();
}

std::string ReasoningFilter::Take() {
  std::string out;
  out.swap(held_);
  return out;
}

}  // namespace carapace
