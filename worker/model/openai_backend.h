// The `openai` backend: the OpenAI-compatible HTTP API that vLLM, SGLang, NIM, Ollama,
// llama.cpp's server and OpenAI itself serve. /chat/completions with tools, streamed as
// server-sent events; /embeddings; GET /models as the health check. The API key comes
// from an environment variable or a file and is sent as a bearer token; it is registered
// for redaction, so it never reaches a log or the event log.
#pragma once

#include <memory>

#include "worker/model/model_backend.h"

namespace carapace {

// Errors: kInvalidArgument when the API key or a TLS file cannot be read.
Result<std::unique_ptr<ModelBackend>> CreateOpenAiBackend(const BackendContext& context);

// The chat messages as the API takes them (exposed for tests).
nlohmann::json OpenAiMessages(const std::vector<Message>& messages);

// Accumulates streamed tool-call fragments: by `index`, and by `id` where a server reuses an
// index for a new call (or sends none). Exposed for tests.
class ToolCallFragments {
 public:
  void Add(const nlohmann::json& fragment);
  // The complete calls, in order; arguments that are not a JSON object make a malformed call.
  std::vector<ToolCall> Finish() const;
  bool empty() const { return slots_.empty(); }

 private:
  struct Slot {
    int64_t index = -1;
    std::string id;
    std::string name;
    std::string arguments;
  };
  std::vector<Slot> slots_;
};

// One chat-completion stream's chunks (the data of each server-sent event), as they come:
// text goes to `out` as it arrives, tool-call fragments are gathered, and the usage, the
// finish reason and an error sent inside the stream are kept. Exposed for tests and the
// fuzz harness.
class OpenAiStreamChunks {
 public:
  explicit OpenAiStreamChunks(ChatStream* out) : out_(out) {}
  void Handle(const std::string& data);

  bool done = false;  // [DONE], or an error in the stream
  std::string finish_reason;
  std::string stream_error;
  nlohmann::json usage;
  size_t generated = 0;  // bytes of text, for the usage estimate
  ToolCallFragments fragments;

 private:
  ChatStream* out_;
};

}  // namespace carapace
