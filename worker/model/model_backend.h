// ModelBackend: how the runtime asks a model for the next reply. Backends are kinds
// registered by name ("scripted", later "openai", "triton"); spec.model.backend picks one.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/agentrun/spec.h"
#include "common/status.h"
#include "worker/model/chat.h"

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
  std::string finish_reason;  // "stop" | "tool_calls" | ...
};

class ModelBackend {
 public:
  virtual ~ModelBackend() = default;
  // Returns the model's complete reply. Errors: kUnavailable / kDeadlineExceeded when the
  // service could not answer (the runtime may ask again: a model call has no side effect),
  // kFailedPrecondition when it never will (a scripted backend out of replies).
  virtual Result<ModelResponse> Complete(const ModelRequest& request) = 0;

  // One vector per text, each of the spec's embedding dimensions. Errors: kFailedPrecondition
  // when the backend has no embeddings; kUnavailable when the service could not answer.
  virtual Result<std::vector<std::vector<float>>> Embed(const std::vector<std::string>& texts);
};

using ModelBackendFactory = std::function<Result<std::unique_ptr<ModelBackend>>(const AgentRun&)>;

// Name -> factory. Adding a backend adds a file and one Register call in RegisterBuiltinModels.
class ModelRegistry {
 public:
  void Register(const std::string& name, ModelBackendFactory factory);
  // Errors: kInvalidArgument naming spec.model.backend when the name is unknown.
  Result<std::unique_ptr<ModelBackend>> Create(const AgentRun& run) const;
  // The backend for spec.embedding; null when the spec has none.
  Result<std::unique_ptr<ModelBackend>> CreateEmbedder(const AgentRun& run) const;

 private:
  std::map<std::string, ModelBackendFactory> factories_;
};

// Registers the backends this build ships.
void RegisterBuiltinModels(ModelRegistry* registry);

}  // namespace carapace
