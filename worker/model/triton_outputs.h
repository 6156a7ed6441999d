// Reading what a KServe v2 / Triton server answers: the text of a named BYTES output (raw
// or typed contents), the vLLM backend's finish reason, and the decoupled stream's final
// flag. Apart from the backend so the fuzz harness reads responses the same way.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "inference/grpc_service.pb.h"

namespace carapace {

// The finish reason Triton's vLLM backend sends when asked (docs/additional_outputs.md of
// triton-inference-server/vllm_backend, r24.12 on): the input `return_finish_reason` (BOOL)
// asks for it, the output `finish_reason` (BYTES) carries vLLM's reason on every response,
// "None" until the sequence has finished, then "stop", "length" or "abort". A model whose
// config does not declare the input (older servers, other backends) is not sent it: Triton
// refuses an input a model does not declare.
inline constexpr char kReturnFinishReason[] = "return_finish_reason";
inline constexpr char kFinishReason[] = "finish_reason";
// Its token counts (the same document; r24.12 on for the output count, later for the input):
// `return_num_input_tokens` / `return_num_output_tokens` (BOOL) ask for `num_input_tokens`
// (UINT32: the prompt's tokens, on every response) and `num_output_tokens` (UINT32: the tokens
// of this response's text, the difference from the last response, so a stream's sum is the
// reply's count). Each is sent only when the model's config declares it.
inline constexpr char kReturnNumInputTokens[] = "return_num_input_tokens";
inline constexpr char kNumInputTokens[] = "num_input_tokens";
inline constexpr char kReturnNumOutputTokens[] = "return_num_output_tokens";
inline constexpr char kNumOutputTokens[] = "num_output_tokens";

// Elements of a BYTES tensor in raw form: each a 4-byte little-endian length, then the
// bytes; a truncated element ends the list.
std::vector<std::string> SplitRawBytes(const std::string& raw);
// The named output of a response, as text, whichever way the server sent it.
std::optional<std::string> OutputText(const inference::ModelInferResponse& r, const std::string& name);
// The named output's first element as an unsigned integer (UINT32 or UINT64, raw
// little-endian or typed contents), whichever way the server sent it.
std::optional<uint64_t> OutputUint(const inference::ModelInferResponse& r, const std::string& name);
// A decoupled stream's last response (the parameter triton_final_response).
bool IsFinal(const inference::ModelInferResponse& r);

}  // namespace carapace
