// Reading Triton responses (see triton_outputs.h).
#include "worker/model/triton_outputs.h"

namespace carapace {

// Elements of a BYTES tensor in raw form: each a 4-byte little-endian length, then the bytes.
std::vector<std::string> SplitRawBytes(const std::string& raw) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at + 4 <= raw.size()) {
    uint32_t n = static_cast<uint8_t>(raw[at]) | static_cast<uint8_t>(raw[at + 1]) << 8 |
                 static_cast<uint8_t>(raw[at + 2]) << 16 | static_cast<uint32_t>(static_cast<uint8_t>(raw[at + 3])) << 24;
    at += 4;
    if (at + n > raw.size()) break;
    out.push_back(raw.substr(at, n));
    at += n;
  }
  return out;
}

// The named output of a response, as text, whichever way the server sent it.
std::optional<std::string> OutputText(const inference::ModelInferResponse& r, const std::string& name) {
  for (int i = 0; i < r.outputs_size(); ++i) {
    if (r.outputs(i).name() != name) continue;
    std::string text;
    if (i < r.raw_output_contents_size()) {
      for (const auto& part : SplitRawBytes(r.raw_output_contents(i))) text += part;
    } else {
      for (const auto& part : r.outputs(i).contents().bytes_contents()) text += part;
    }
    return text;
  }
  return std::nullopt;
}

std::optional<uint64_t> OutputUint(const inference::ModelInferResponse& r, const std::string& name) {
  for (int i = 0; i < r.outputs_size(); ++i) {
    const auto& out = r.outputs(i);
    if (out.name() != name) continue;
    const bool wide = out.datatype() == "UINT64";
    if (i < r.raw_output_contents_size()) {
      const std::string& raw = r.raw_output_contents(i);
      const size_t width = wide ? 8 : 4;
      if (raw.size() < width) return std::nullopt;
      uint64_t v = 0;
      for (size_t b = 0; b < width; ++b) v |= static_cast<uint64_t>(static_cast<unsigned char>(raw[b])) << (8 * b);
      return v;
    }
    if (out.contents().uint_contents_size() > 0) return out.contents().uint_contents(0);
    if (out.contents().uint64_contents_size() > 0) return out.contents().uint64_contents(0);
    return std::nullopt;
  }
  return std::nullopt;
}

bool IsFinal(const inference::ModelInferResponse& r) {
  auto it = r.parameters().find("triton_final_response");
  return it != r.parameters().end() && it->second.bool_param();
}

}  // namespace carapace
