// Calls written between an opening and a closing tag, with text before, between and after
// them: the shape Hermes, Qwen3-Coder and DeepSeek share. Only what stands between the tags
// differs, and each format reads that itself.
#include <algorithm>

#include "worker/model/tool_call_formats/format_parser.h"

namespace carapace::tool_call_formats {

namespace {

// The tags are string literals: they outlive the parser.
class TaggedCallParser : public FormatParser {
 public:
  TaggedCallParser(std::string_view open, std::string_view close,
                   std::function<ToolCall(const std::string&)> parse_body, std::vector<std::string_view> dropped)
      : open_(open), close_(close), parse_body_(std::move(parse_body)), dropped_(std::move(dropped)) {
    markers_ = dropped_;
    markers_.push_back(open_);
  }

  void Read(std::string& pending, bool complete, ReplySink& out) override {
    while (true) {
      if (in_call_) {
        size_t close = pending.find(close_);
        if (close == std::string::npos) {
          if (!complete) return;  // the call is not complete yet
          out.Call(
              Malformed(Trim(pending), "the " + std::string(open_) + " is not closed with " + std::string(close_)));
          pending.clear();
          in_call_ = false;
          return;
        }
        out.Call(parse_body_(pending.substr(0, close)));
        pending.erase(0, close + close_.size());
        in_call_ = false;
        continue;
      }
      // The first marker in the text: the opening tag, or one to drop.
      size_t at = pending.find(open_), length = open_.size();
      bool opens = true;
      for (auto d : dropped_) {
        if (size_t found = pending.find(d); found < at) {
          at = found;
          length = d.size();
          opens = false;
        }
      }
      if (at == std::string::npos) break;
      out.Text(std::string_view(pending).substr(0, at));
      pending.erase(0, at + length);
      in_call_ = opens;
    }
    out.PassText(pending, complete, markers_);
  }

 private:
  const std::string_view open_, close_;
  const std::function<ToolCall(const std::string&)> parse_body_;
  const std::vector<std::string_view> dropped_;
  std::vector<std::string_view> markers_;  // all the text may hold: held back while partial
  bool in_call_ = false;
};

}  // namespace

std::unique_ptr<FormatParser> NewTaggedCallParser(std::string_view open, std::string_view close,
                                                  std::function<ToolCall(const std::string& body)> parse_body,
                                                  std::vector<std::string_view> dropped) {
  return std::make_unique<TaggedCallParser>(open, close, std::move(parse_body), std::move(dropped));
}

}  // namespace carapace::tool_call_formats
