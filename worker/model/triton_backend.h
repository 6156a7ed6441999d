// The `triton` backend: Triton Inference Server and KServe v2 over gRPC (Open Inference
// Protocol). The worker renders the chat into a prompt with a chat template, sends it as
// the `text_input` tensor, reads `text_output` (streamed through ModelStreamInfer by
// default) and parses tool calls out of the text. Tensor names and sampling parameters
// follow the preset (vllm, tensorrtllm); see docs/models.md.
#pragma once

#include <memory>

#include "worker/model/chat_template.h"
#include "worker/model/model_backend.h"

namespace carapace {

// Errors: kInvalidArgument when the template file or TLS files cannot be read.
Result<std::unique_ptr<ModelBackend>> CreateTritonBackend(const BackendContext& context);

}  // namespace carapace
