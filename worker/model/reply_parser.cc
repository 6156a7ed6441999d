// Streaming tool-call extraction: stop strings here, each format's reading in
// worker/model/tool_call_formats/.
#include "worker/model/reply_parser.h"

#include <algorithm>

#include "common/json_text.h"
#include "worker/model/tool_call_formats/format_parser.h"

namespace carapace {

namespace formats = tool_call_formats;

namespace {

std::unique_ptr<formats::FormatParser> NewFormatParser(ToolCallFormat format, std::vector<ToolSchema> tools) {
  switch (format) {
    case ToolCallFormat::kHermes:
      return formats::NewHermesParser();
    case ToolCallFormat::kLlama3:
      return formats::NewLlama3Parser();
    case ToolCallFormat::kMistral:
      return formats::NewMistralParser();
    case ToolCallFormat::kQwen3Coder:
      return formats::NewQwen3CoderParser(std::move(tools));
    case ToolCallFormat::kDeepSeek:
      return formats::NewDeepSeekParser();
    case ToolCallFormat::kHarmony:
      return formats::NewHarmonyParser();
  }
  return formats::NewHermesParser();
}

struct FormatName {
  ToolCallFormat format;
  std::string_view name;
};
constexpr FormatName kFormatNames[] = {
    {ToolCallFormat::kHermes, "hermes"},     {ToolCallFormat::kLlama3, "llama3"},
    {ToolCallFormat::kMistral, "mistral"},   {ToolCallFormat::kQwen3Coder, "qwen3-coder"},
    {ToolCallFormat::kDeepSeek, "deepseek"}, {ToolCallFormat::kHarmony, "harmony"},
};

}  // namespace

ToolCall ParseToolCallJson(const std::string& raw) {
  std::string body = formats::Trim(raw);
  nlohmann::json j = ParsePeerJson(body);
  if (j.is_discarded()) return formats::Malformed(body, "the tool call is not valid JSON");
  if (!j.is_object()) return formats::Malformed(body, "the tool call must be a JSON object with name and arguments");
  if (!j.contains("name") || !j["name"].is_string() || j["name"].get<std::string>().empty()) {
    return formats::Malformed(body, "the tool call has no \"name\"");
  }
  nlohmann::json args = nlohmann::json::object();
  for (const char* key : {"arguments", "parameters"}) {
    if (j.contains(key)) {
      args = j[key];
      break;
    }
  }
  return formats::CallWithArguments(j["name"].get<std::string>(), std::move(args), std::move(body));
}

ReplyParser::ReplyParser(ToolCallFormat format, std::vector<std::string> stops, std::vector<ToolSchema> tools)
    : format_(NewFormatParser(format, std::move(tools))) {
  for (auto& s : stops) {
    if (s.empty()) continue;  // "" would end every reply at once
    longest_stop_ = std::max(longest_stop_, s.size());
    stops_.push_back(std::move(s));
  }
}

ReplyParser::~ReplyParser() = default;

bool ReplyParser::CutAtStop(size_t from) {
  size_t cut = std::string::npos;
  for (const auto& s : stops_) cut = std::min(cut, pending_.find(s, from));
  if (cut == std::string::npos) return false;
  pending_.resize(cut);
  stopped_ = true;
  return true;
}

void ReplyParser::Feed(std::string_view delta, ChatStream* out) {
  if (stopped_ || ended_) return;
  // A stop string not in pending_ before this delta must end inside it.
  const size_t from = pending_.size() - std::min(pending_.size(), longest_stop_ > 0 ? longest_stop_ - 1 : 0);
  pending_.append(delta);
  if (CutAtStop(from)) return End(out);
  formats::ReplySink sink(out, stops_, &malformed_);
  format_->Read(pending_, false, sink);
}

void ReplyParser::End(ChatStream* out) {
  if (ended_) return;
  ended_ = true;
  formats::ReplySink sink(out, stops_, &malformed_);
  format_->Read(pending_, true, sink);
  pending_.clear();
}

std::string_view ToolCallFormatName(ToolCallFormat format) {
  for (const auto& f : kFormatNames) {
    if (f.format == format) return f.name;
  }
  return "";
}

std::optional<ToolCallFormat> ToolCallFormatFromName(std::string_view name) {
  for (const auto& f : kFormatNames) {
    if (f.name == name) return f.format;
  }
  return std::nullopt;
}

std::optional<ToolCallFormat> DetectToolCallFormat(std::string_view t) {
  auto has = [&](std::string_view marker) { return t.find(marker) != std::string_view::npos; };
  if (has("[TOOL_CALLS]")) return ToolCallFormat::kMistral;
  // Qwen3-Coder's template also writes <tool_call>: its XML tags decide first.
  if (has("<function=") && has("<parameter=")) return ToolCallFormat::kQwen3Coder;
  if (has("<tool_call>")) return ToolCallFormat::kHermes;
  if (has("tool▁calls▁begin")) return ToolCallFormat::kDeepSeek;
  if (has("<|channel|>")) return ToolCallFormat::kHarmony;
  if ((has("<|python_tag|>") || has("<|start_header_id|>")) && has("parameters")) return ToolCallFormat::kLlama3;
  return std::nullopt;
}

}  // namespace carapace
