// ModelBackend: how the runtime asks a model for the next reply. A backend streams the
// reply into a ChatStream (text deltas, tool calls, usage, finish reason); the runtime
// records the complete response only once the stream has finished, so a reply cut off
// mid-way is simply asked for again. Backends are kinds registered by name ("scripted",
// "openai", "triton"); spec.model.backend picks one (docs/models.md).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/agentrun/spec.h"
#include "common/status.h"
#include "worker/model/chat.h"

namespace prometheus {
class Registry;
}

namespace carapace {

struct ModelRequest {
  int64_t step = 0;  // 1-based step this call is for; the same on a retry after a crash
  const std::vector<Message>* messages = nullptr;
  std::vector<ToolSchema> tools;
};

struct ModelResponse {
  std::string text;
  std::vector<ToolCall> tool_calls;  // ids are assigned by the runtime
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  std::string finish_reason;  // "stop" | "tool_calls" | "length" | ...
  std::string answered_by;    // the endpoint that answered (ModelEndpointSpec::Describe)
  // The token counts are the client's estimate: the service reported none (a server without
  // usage, a Triton model that does not offer its counts).
  bool tokens_estimated = false;
};

// One event of a streamed reply, as an observer sees it.
struct ChatStreamEvent {
  enum class Kind { kText, kToolCall, kUsage, kFinish, kError };
  Kind kind = Kind::kText;
  std::string text;  // kText: the delta; kFinish: the reason; kError: the message
  ToolCall call;     // kToolCall
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  bool tokens_estimated = false;  // kUsage
};

// Where a backend puts a reply as it arrives. It assembles the complete response and
// passes each event on to an optional observer (live output, metrics).
class ChatStream {
 public:
  using Observer = std::function<void(const ChatStreamEvent&)>;
  explicit ChatStream(Observer observer = {}) : observer_(std::move(observer)) {}

  void Text(std::string_view delta);
  void Call(ToolCall call);
  // `estimated`: the counts are the client's guess, not the service's.
  void Usage(int64_t prompt_tokens, int64_t completion_tokens, bool estimated = false);
  void Finish(std::string reason);
  void Error(const std::string& message);
  void AnsweredBy(std::string endpoint) { response_.answered_by = std::move(endpoint); }

  // True once text or a tool call arrived: a failure after this point is "after the first
  // token" and is not retried by the backend (the runtime re-issues the call whole).
  bool started() const { return started_; }
  const ModelResponse& response() const { return response_; }
  ModelResponse Take() { return std::move(response_); }

 private:
  void Emit(const ChatStreamEvent& e) const {
    if (observer_) observer_(e);
  }
  Observer observer_;
  ModelResponse response_;
  bool started_ = false;
};

class ModelBackend {
 public:
  virtual ~ModelBackend() = default;

  // Streams the model's reply into `out`. Errors: kUnavailable / kResourceExhausted when the
  // service could not answer now (may be retried), kDeadlineExceeded when the call's
  // deadline passed, kAborted when the stream broke after tokens arrived (ask again whole),
  // kPermissionDenied when the service refused the credentials, kInvalidArgument when it
  // refused the request, kFailedPrecondition only when it never will answer (a script ran
  // out): the runtime fails the run for that alone (worker/runtime/model_outcome.h).
  virtual Status Chat(const ModelRequest& request, ChatStream* out) = 0;

  // Chat, collected: the complete reply.
  Result<ModelResponse> Complete(const ModelRequest& request);

  // One vector per text, each of the spec's embedding dimensions. Errors: kFailedPrecondition
  // when the backend has no embeddings; otherwise as Chat.
  virtual Result<std::vector<std::vector<float>>> Embed(const std::vector<std::string>& texts);

  // Whether the service answers now (ServerReady and ModelReady, GET /models): for /readyz
  // and for trying an endpoint again. Ok by default (nothing remote).
  virtual Status CheckHealth() { return Status::Ok(); }

  // The model's context window in tokens, as the service reported it to the last
  // CheckHealth (vLLM's GET /v1/models max_model_len), when it did. Empty by default.
  virtual std::optional<int64_t> ContextWindow() { return std::nullopt; }
};

// A failure of a call whose reply already started streaming becomes kAborted (the runtime
// asks again whole), except a deadline, which stays what it is.
Status AfterStart(const ChatStream& out, Status failure);

// Token counts for services that report none (prompt-only servers): one token per four
// bytes, so budgets still hold.
int64_t EstimateTokens(size_t bytes);
int64_t EstimatePromptTokens(const std::vector<Message>& messages);

// What a factory gets: the endpoint to talk to, and the embedding width of the run.
struct BackendContext {
  const ModelEndpointSpec& endpoint;
  int64_t embedding_dimensions = 768;
};

using ModelBackendFactory = std::function<Result<std::unique_ptr<ModelBackend>>(const BackendContext&)>;

// Name -> factory. Adding a backend adds a file and one Register call in RegisterBuiltinModels.
// Create() wraps the endpoints of spec.model (and its fallbacks) in the retry, circuit
// breaker and failover layer, with metrics in `metrics` when one is given.
class ModelRegistry {
 public:
  void Register(const std::string& name, ModelBackendFactory factory);
  void set_metrics(prometheus::Registry* metrics) { metrics_ = metrics; }

  // Errors: kInvalidArgument naming the field (spec.model.backend, spec.model.fallbacks[1]...)
  // when a backend is unknown or cannot be built from its settings.
  Result<std::unique_ptr<ModelBackend>> Create(const AgentRun& run) const;
  // The backend for spec.embedding; null when the spec has none.
  Result<std::unique_ptr<ModelBackend>> CreateEmbedder(const AgentRun& run) const;
  // One endpoint's bare backend, without retries or failover.
  Result<std::unique_ptr<ModelBackend>> CreateBackend(const ModelEndpointSpec& endpoint, int64_t embedding_dimensions,
                                                      const std::string& field) const;

 private:
  std::map<std::string, ModelBackendFactory> factories_;
  prometheus::Registry* metrics_ = nullptr;
};

// Registers the backends this build ships.
void RegisterBuiltinModels(ModelRegistry* registry);

}  // namespace carapace
