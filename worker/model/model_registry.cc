// The model backend registry.
#include "worker/model/model_backend.h"
#include "worker/model/openai_backend.h"
#include "worker/model/resilient_model.h"
#include "worker/model/scripted_backend.h"
#include "worker/model/triton_backend.h"

namespace carapace {

void ModelRegistry::Register(const std::string& name, ModelBackendFactory factory) {
  factories_[name] = std::move(factory);
}

Result<std::unique_ptr<ModelBackend>> ModelRegistry::CreateBackend(const ModelEndpointSpec& endpoint,
                                                                   int64_t embedding_dimensions,
                                                                   const std::string& field) const {
  auto it = factories_.find(endpoint.backend);
  if (it == factories_.end()) return InvalidArgument(field + ".backend: unknown backend \"" + endpoint.backend + "\"");
  auto backend = it->second(BackendContext{endpoint, embedding_dimensions});
  if (!backend.ok()) return InvalidArgument(field + "." + backend.status().message());
  return backend;
}

static Result<ModelEndpoint> MakeEndpoint(const ModelRegistry& registry, const ModelEndpointSpec& spec, int64_t dims,
                                          const std::string& field) {
  CARAPACE_ASSIGN_OR_RETURN(auto client, registry.CreateBackend(spec, dims, field));
  return ModelEndpoint{spec.Describe(), spec.backend, spec.backend == "scripted" ? "scripted" : spec.name,
                       std::move(client)};
}

Result<std::unique_ptr<ModelBackend>> ModelRegistry::Create(const AgentRun& run) const {
  const ModelSpec& model = run.spec.model;
  const int64_t dims = run.spec.embedding ? run.spec.embedding->dimensions : 768;
  std::vector<ModelEndpoint> endpoints;
  CARAPACE_ASSIGN_OR_RETURN(ModelEndpoint primary, MakeEndpoint(*this, model, dims, "spec.model"));
  endpoints.push_back(std::move(primary));
  for (size_t i = 0; i < model.fallbacks.size(); ++i) {
    CARAPACE_ASSIGN_OR_RETURN(ModelEndpoint e, MakeEndpoint(*this, model.fallbacks[i], dims,
                                                            "spec.model.fallbacks[" + std::to_string(i) + "]"));
    endpoints.push_back(std::move(e));
  }
  return std::unique_ptr<ModelBackend>(
      new ResilientModel(std::move(endpoints), ResilienceOptions{model.retry, model.circuit_breaker, {}}, metrics_));
}

Result<std::unique_ptr<ModelBackend>> ModelRegistry::CreateEmbedder(const AgentRun& run) const {
  if (!run.spec.embedding) return std::unique_ptr<ModelBackend>();
  std::vector<ModelEndpoint> endpoints;
  CARAPACE_ASSIGN_OR_RETURN(ModelEndpoint e,
                            MakeEndpoint(*this, *run.spec.embedding, run.spec.embedding->dimensions, "spec.embedding"));
  endpoints.push_back(std::move(e));
  // Embeddings use the same retry and breaker settings as the chat model.
  return std::unique_ptr<ModelBackend>(new ResilientModel(
      std::move(endpoints), ResilienceOptions{run.spec.model.retry, run.spec.model.circuit_breaker, {}}, nullptr));
}

void RegisterBuiltinModels(ModelRegistry* registry) {
  registry->Register("scripted", [](const BackendContext& c) -> Result<std::unique_ptr<ModelBackend>> {
    return std::unique_ptr<ModelBackend>(new ScriptedBackend(c.endpoint.script, c.embedding_dimensions));
  });
  registry->Register("openai", CreateOpenAiBackend);
  registry->Register("triton", CreateTritonBackend);
}

}  // namespace carapace
