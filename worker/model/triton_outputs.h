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
