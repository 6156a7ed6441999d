// The model backend registry.
#include "worker/model/model_backend.h"
#include "worker/model/scripted_backend.h"

namespace carapace {

void ModelRegistry::Register(const std::string& name, ModelBackendFactory factory) {
  factories_[name] = std::move(factory);
}

Result<std::vector<std::vector<float>>> ModelBackend::Embed(const std::vector<std::string>&) {
  return FailedPrecondition("this model backend does not provide embeddings");
}

Result<std::unique_ptr<ModelBackend>> ModelRegistry::CreateEmbedder(const AgentRun& run) const {
  if (!run.spec.embedding) return std::unique_ptr<ModelBackend>();
  auto it = factories_.find(run.spec.embedding->backend);
  if (it == factories_.end()) {
    return InvalidArgument("spec.embedding.backend: unknown backend \"" + run.spec.embedding->backend + "\"");
  }
  return it->second(run);
}

Result<std::unique_ptr<ModelBackend>> ModelRegistry::Create(const AgentRun& run) const {
  auto it = factories_.find(run.spec.model.backend);
  if (it == factories_.end()) {
    return InvalidArgument("spec.model.backend: unknown backend \"" + run.spec.model.backend + "\"");
  }
  return it->second(run);
}

void RegisterBuiltinModels(ModelRegistry* registry) {
  registry->Register("scripted", [](const AgentRun& run) -> Result<std::unique_ptr<ModelBackend>> {
    int64_t dims = run.spec.embedding ? run.spec.embedding->dimensions : 768;
    return std::unique_ptr<ModelBackend>(new ScriptedBackend(run.spec.model.script, dims));
  });
}

}  // namespace carapace
