// The pieces of text handling every tool-call format uses.
#include "worker/model/tool_call_formats/format_parser.h"

#include <algorithm>

#include "common/json_text.h"

namespace carapace::tool_call_formats {

void ReplySink::Call(ToolCall call) {
  if (!call.malformed.empty()) ++*malformed_;
  out_->Call(std::move(call));
}

size_t ReplySink::Settled(std::string_view pending, bool complete, std::span<const std::string_view> markers) const {
  if (complete) return pending.size();
  size_t hold = 0;
  for (auto m : markers) hold = std::max(hold, HeldBack(pending, m));
  for (const auto& s : stops_) hold = std::max(hold, HeldBack(pending, s));
  return pending.size() - hold;
}

void ReplySink::PassText(std::string& pending, bool complete, std::span<const std::string_view> markers) {
  const size_t n = Settled(pending, complete, markers);
  Text(std::string_view(pending).substr(0, n));
  pending.erase(0, n);
}

void ReplySink::DropText(std::string& pending, bool complete, std::span<const std::string_view> markers) {
  pending.erase(0, Settled(pending, complete, markers));
}

size_t HeldBack(std::string_view text, std::string_view marker) {
  if (marker.empty()) return 0;
  for (size_t n = std::min(text.size(), marker.size() - 1); n > 0; --n) {
    if (text.substr(text.size() - n) == marker.substr(0, n)) return n;
  }
  return 0;
}

std::string Trim(std::string_view s) {
  size_t a = s.find_first_not_of(kSpace);
  if (a == std::string_view::npos) return "";
  size_t b = s.find_last_not_of(kSpace);
  return std::string(s.substr(a, b - a + 1));
}

ToolCall Malformed(std::string raw, std::string why, std::string name) {
  ToolCall c;
  c.name = std::move(name);
  c.arguments = std::move(raw);
  c.malformed = std::move(why);
  return c;
}

size_t ObjectEnd(std::string_view text, size_t start) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = start; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{') {
      ++depth;
    } else if (c == '}' && --depth == 0) {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

ToolCall CallWithArguments(std::string name, nlohmann::json args, std::string raw) {
  if (name.empty()) return Malformed(std::move(raw), "the tool call has no name");
  if (args.is_string()) args = ParsePeerJson(args.get<std::string>());
  if (args.is_discarded()) {
    return Malformed(std::move(raw), "the arguments of \"" + name + "\" are not valid JSON", name);
  }
  if (!args.is_object()) {
    return Malformed(std::move(raw), "the arguments of \"" + name + "\" must be a JSON object", name);
  }
  ToolCall c;
  c.name = std::move(name);
  c.arguments = std::move(args);
  return c;
}

}  // namespace carapace::tool_call_formats
