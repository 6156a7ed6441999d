// Streaming tool-call extraction (Hermes tags, Llama 3 JSON).
#include "worker/model/reply_parser.h"

#include <algorithm>

#include "common/json_text.h"

namespace carapace {

namespace {

constexpr std::string_view kOpen = "<tool_call>";
constexpr std::string_view kClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";

// Length of the longest suffix of `text` that is a proper prefix of one of `markers`: text
// that may become a marker with the next delta.
size_t HeldBack(std::string_view text, const std::vector<std::string_view>& markers) {
  size_t best = 0;
  for (auto m : markers) {
    for (size_t n = std::min(text.size(), m.size() - 1); n > best; --n) {
      if (text.substr(text.size() - n) == m.substr(0, n)) {
        best = n;
        break;
      }
    }
  }
  return best;
}

std::string Trim(std::string_view s) {
  size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string_view::npos) return "";
  size_t b = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(a, b - a + 1));
}

ToolCall Malformed(const std::string& raw, const std::string& why, std::string name = "") {
  ToolCall c;
  c.name = std::move(name);
  c.arguments = raw;
  c.malformed = why;
  return c;
}

// End of the JSON object starting at text[start] == '{' (one past its '}'), or npos.
size_t ObjectEnd(const std::string& text, size_t start) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = start; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{') {
      ++depth;
    } else if (c == '}' && --depth == 0) {
      return i + 1;
    }
  }
  return std::string::npos;
}

}  // namespace

ToolCall ParseToolCallJson(const std::string& raw) {
  const std::string body = Trim(raw);
  nlohmann::json j = ParsePeerJson(body);
  if (j.is_discarded()) return Malformed(body, "the tool call is not valid JSON");
  if (!j.is_object()) return Malformed(body, "the tool call must be a JSON object with name and arguments");
  if (!j.contains("name") || !j["name"].is_string() || j["name"].get<std::string>().empty()) {
    return Malformed(body, "the tool call has no \"name\"");
  }
  std::string name = j["name"];
  nlohmann::json args = nlohmann::json::object();
  for (const char* key : {"arguments", "parameters"}) {
    if (!j.contains(key)) continue;
    args = j[key];
    if (args.is_string()) args = ParsePeerJson(args.get<std::string>());
    break;
  }
  if (!args.is_object()) return Malformed(body, "the arguments of \"" + name + "\" must be a JSON object", name);
  ToolCall c;
  c.name = std::move(name);
  c.arguments = std::move(args);
  return c;
}

ReplyParser::ReplyParser(ToolCallFormat format, std::vector<std::string> stops) : format_(format) {
  for (auto& s : stops) {
    if (!s.empty()) stops_.push_back(std::move(s));  // "" would end every reply at once
  }
}

bool ReplyParser::CutAtStop() {
  size_t cut = std::string::npos;
  for (const auto& s : stops_) cut = std::min(cut, pending_.find(s));
  if (cut == std::string::npos) return false;
  pending_.resize(cut);
  stopped_ = true;
  return true;
}

void ReplyParser::EmitCall(const std::string& body, ChatStream* out) {
  ToolCall c = ParseToolCallJson(body);
  if (!c.malformed.empty()) ++malformed_;
  out->Call(std::move(c));
}

void ReplyParser::Feed(std::string_view delta, ChatStream* out) {
  if (stopped_ || ended_) return;
  pending_.append(delta);
  const bool stop = CutAtStop();
  if (format_ == ToolCallFormat::kHermes) {
    FeedHermes(out);
  } else {
    if (llama_mode_ == LlamaMode::kUndecided) {
      size_t first = pending_.find_first_not_of(" \t\r\n");
      if (first != std::string::npos) {
        std::string_view rest = std::string_view(pending_).substr(first);
        bool maybe_tag = kPythonTag.substr(0, std::min(rest.size(), kPythonTag.size())) == rest.substr(0, kPythonTag.size());
        if (rest[0] == '{' || (maybe_tag && rest.size() >= kPythonTag.size())) llama_mode_ = LlamaMode::kCalls;
        else if (!maybe_tag) llama_mode_ = LlamaMode::kText;
      }
    }
    if (llama_mode_ == LlamaMode::kText) {
      std::vector<std::string_view> markers(stops_.begin(), stops_.end());
      size_t hold = stop ? 0 : HeldBack(pending_, markers);
      out->Text(std::string_view(pending_).substr(0, pending_.size() - hold));
      pending_.erase(0, pending_.size() - hold);
    }
  }
  if (stop) End(out);
}

void ReplyParser::FeedHermes(ChatStream* out) {
  std::vector<std::string_view> markers(stops_.begin(), stops_.end());
  while (true) {
    if (in_call_) {
      size_t close = pending_.find(kClose);
      if (close == std::string::npos) return;  // the call is not complete yet
      EmitCall(pending_.substr(0, close), out);
      pending_.erase(0, close + kClose.size());
      in_call_ = false;
      continue;
    }
    size_t open = pending_.find(kOpen);
    if (open != std::string::npos) {
      out->Text(std::string_view(pending_).substr(0, open));
      pending_.erase(0, open + kOpen.size());
      in_call_ = true;
      continue;
    }
    markers.push_back(kOpen);
    size_t hold = stopped_ ? 0 : HeldBack(pending_, markers);
    out->Text(std::string_view(pending_).substr(0, pending_.size() - hold));
    pending_.erase(0, pending_.size() - hold);
    return;
  }
}

void ReplyParser::EmitLlamaCalls(std::string text, ChatStream* out) {
  text = Trim(text);
  const bool tagged = text.rfind(kPythonTag, 0) == 0;
  if (tagged) text = Trim(std::string_view(text).substr(kPythonTag.size()));
  size_t at = 0;
  bool first = true;
  while (true) {
    at = text.find_first_not_of(" \t\r\n;", at);
    if (at == std::string::npos) return;
    if (text[at] != '{') {
      ++malformed_;
      out->Call(Malformed(text.substr(at), "expected a JSON tool call, found text"));
      return;
    }
    size_t end = ObjectEnd(text, at);
    std::string body = text.substr(at, end == std::string::npos ? std::string::npos : end - at);
    if (end == std::string::npos) {
      ++malformed_;
      out->Call(Malformed(body, "the tool call JSON is not terminated"));
      return;
    }
    ToolCall c = ParseToolCallJson(body);
    // A reply that is a JSON document but not a call is an answer, not a broken call.
    if (first && !tagged && c.malformed == "the tool call has no \"name\"" && end == text.size()) {
      out->Text(text);
      return;
    }
    first = false;
    if (!c.malformed.empty()) ++malformed_;
    out->Call(std::move(c));
    at = end;
  }
}

void ReplyParser::End(ChatStream* out) {
  if (ended_) return;
  ended_ = true;
  if (format_ == ToolCallFormat::kHermes) {
    FeedHermes(out);
    if (in_call_) {
      ++malformed_;
      out->Call(Malformed(Trim(pending_), "the <tool_call> is not closed with </tool_call>"));
      in_call_ = false;
    } else {
      out->Text(pending_);
    }
  } else if (llama_mode_ == LlamaMode::kCalls) {
    EmitLlamaCalls(pending_, out);
  } else {
    out->Text(pending_);
  }
  pending_.clear();
}

}  // namespace carapace
