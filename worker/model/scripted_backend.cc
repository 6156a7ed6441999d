// Scripted replies with estimated token usage.
#include "worker/model/scripted_backend.h"

#include <cmath>

#include "common/text.h"

namespace carapace {

Status ScriptedBackend::Chat(const ModelRequest& request, ChatStream* out) {
  if (request.step < 1 || request.step > static_cast<int64_t>(script_.size())) {
    return FailedPrecondition("scripted backend: the script has " + std::to_string(script_.size()) +
                              " replies and step " + std::to_string(request.step) + " asked for one more");
  }
  const ScriptedReply& reply = script_[static_cast<size_t>(request.step - 1)];
  out->Text(reply.text);
  size_t completion_chars = reply.text.size();
  for (const auto& c : reply.tool_calls) {
    ToolCall call;
    call.name = c.name;
    call.arguments = c.arguments;
    completion_chars += c.name.size() + c.arguments.dump().size();
    out->Call(std::move(call));
  }
  out->Usage(request.messages ? EstimatePromptTokens(*request.messages) : 1, EstimateTokens(completion_chars), true);
  out->Finish(reply.tool_calls.empty() ? "stop" : "tool_calls");
  return Status::Ok();
}

Result<std::vector<std::vector<float>>> ScriptedBackend::Embed(const std::vector<std::string>& texts) {
  std::vector<std::vector<float>> out;
  out.reserve(texts.size());
  for (const auto& text : texts) {
    std::vector<float> v(static_cast<size_t>(dimensions_), 0.0f);
    for (const auto& word : Tokenize(text)) {
      uint64_t h = 1469598103934665603ull;  // FNV-1a: stable across builds and platforms
      for (unsigned char c : word) h = (h ^ c) * 1099511628211ull;
      v[h % v.size()] += (h >> 63) ? 1.0f : -1.0f;
    }
    double norm = 0;
    for (float x : v) norm += static_cast<double>(x) * x;
    if (norm > 0) {
      float inv = static_cast<float>(1.0 / std::sqrt(norm));
      for (float& x : v) x *= inv;
    }
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace carapace
