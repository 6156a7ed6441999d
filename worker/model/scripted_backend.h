// The scripted backend: replies come from spec.model.script, one per step, in order.
// It makes runs deterministic, which is what demos, tests and replay need.
#pragma once

#include <vector>

#include "worker/model/model_backend.h"

namespace carapace {

class ScriptedBackend : public ModelBackend {
 public:
  explicit ScriptedBackend(std::vector<ScriptedReply> script, int64_t embedding_dimensions = 768)
      : script_(std::move(script)), dimensions_(embedding_dimensions) {}

  // Reply number `request.step` (1-based). Token counts are estimated as one token per four
  // characters of prompt and reply, so budgets behave as they would with a real model.
  // Errors: kFailedPrecondition when the script has no reply for the step.
  Status Chat(const ModelRequest& request, ChatStream* out) override;

  // Deterministic embeddings by feature hashing: each word adds +1 or -1 to a dimension
  // chosen by its hash; the vector is normalised. Texts that share words get similar
  // vectors, which is enough to test ranking without a model.
  Result<std::vector<std::vector<float>>> Embed(const std::vector<std::string>& texts) override;

 private:
  std::vector<ScriptedReply> script_;
  int64_t dimensions_;
};

}  // namespace carapace
