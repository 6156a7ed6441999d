// The scripted backend: replies come from spec.model.script, one per step, in order.
// It makes runs deterministic, which is what demos, tests and replay need.
#pragma once

#include <vector>

#include "worker/model/model_backend.h"

namespace carapace {

class ScriptedBackend : public ModelBackend {
 public:
  explicit ScriptedBackend(std::vector<ScriptedReply> script) : script_(std::move(script)) {}

  // Reply number `request.step` (1-based). Token counts are estimated as one token per four
  // characters of prompt and reply, so budgets behave as they would with a real model.
  // Errors: kFailedPrecondition when the script has no reply for the step.
  Result<ModelResponse> Complete(const ModelRequest& request) override;

 private:
  std::vector<ScriptedReply> script_;
};

}  // namespace carapace
