// Assembling a streamed reply.
#include "worker/model/model_backend.h"

namespace carapace {

void ChatStream::Generating() {
  if (generating_) return;
  generating_ = true;
  ChatStreamEvent e;
  e.kind = ChatStreamEvent::Kind::kGenerating;
  Emit(e);
}

void ChatStream::Text(std::string_view delta) {
  if (delta.empty()) return;
  Generating();
  started_ = true;
  response_.text.append(delta);
  ChatStreamEvent e;
  e.kind = ChatStreamEvent::Kind::kText;
  e.text = std::string(delta);
  Emit(e);
}

void ChatStream::Call(ToolCall call) {
  Generating();
  started_ = true;
  ChatStreamEvent e;
  e.kind = ChatStreamEvent::Kind::kToolCall;
  e.call = call;
  response_.tool_calls.push_back(std::move(call));
  Emit(e);
}

void ChatStream::Usage(int64_t prompt_tokens, int64_t completion_tokens, bool estimated) {
  response_.prompt_tokens = prompt_tokens;
  response_.completion_tokens = completion_tokens;
  response_.tokens_estimated = estimated;
  ChatStreamEvent e;
  e.kind = ChatStreamEvent::Kind::kUsage;
  e.prompt_tokens = prompt_tokens;
  e.completion_tokens = completion_tokens;
  e.tokens_estimated = estimated;
  Emit(e);
}

void ChatStream::Finish(std::string reason) {
  ChatStreamEvent e;
  e.kind = ChatStreamEvent::Kind::kFinish;
  e.text = reason;
  response_.finish_reason = std::move(reason);
  Emit(e);
}

void ChatStream::Error(const std::string& message) {
  ChatStreamEvent e;
  e.kind = ChatStreamEvent::Kind::kError;
  e.text = message;
  Emit(e);
}

Status AfterStart(const ChatStream& out, Status failure) {
  if (!out.started() || failure.ok() || failure.code() == StatusCode::kDeadlineExceeded) return failure;
  return Aborted(failure.message() + " (the reply broke off after tokens arrived)");
}

int64_t EstimateTokens(size_t bytes) { return static_cast<int64_t>(bytes / 4 + 1); }

int64_t EstimatePromptTokens(const std::vector<Message>& messages) {
  size_t bytes = 0;
  for (const auto& m : messages) bytes += m.content.size() + 8;  // + role and framing
  return EstimateTokens(bytes);
}

Result<ModelResponse> ModelBackend::Complete(const ModelRequest& request) {
  ChatStream stream;
  Status s = Chat(request, &stream);
  if (!s.ok()) return s;
  return stream.Take();
}

Result<std::vector<std::vector<float>>> ModelBackend::Embed(const std::vector<std::string>&) {
  return FailedPrecondition("this model backend does not provide embeddings");
}

}  // namespace carapace
