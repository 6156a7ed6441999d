// The model backend registry.
#include "worker/model/model_backend.h"
#include "worker/model/scripted_backend.h"

namespace carapace {

void ModelRegistry::Register(const std::string& name, ModelBackendFactory factory) {
  factories_[name] = std::move(factory);
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
    return std::unique_ptr<ModelBackend>(new ScriptedBackend(run.spec.model.script));
  });
}

}  // namespace carapace
