// The streaming tool-call parser of prompt-template models, in every format it reads, with stop
// strings and typed tools, fed in two pieces: the first byte picks the format and the split.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "worker/model/model_backend.h"
#include "worker/model/reply_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using carapace::ToolCallFormat;
  static const ToolCallFormat kFormats[] = {ToolCallFormat::kHermes,   ToolCallFormat::kLlama3,
                                            ToolCallFormat::kMistral,  ToolCallFormat::kQwen3Coder,
                                            ToolCallFormat::kDeepSeek, ToolCallFormat::kHarmony};
  static const std::vector<carapace::ToolSchema> kTools = {
      {"f", "", {{"type", "object"}, {"properties", {{"n", {{"type", "integer"}}}, {"b", {{"type", "boolean"}}}}}}}};
  if (size < 1) return 0;
  const auto format = kFormats[data[0] % 6];
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t cut = text.empty() ? 0 : (data[0] / 6) % (text.size() + 1);
  carapace::ReplyParser parser(format, {"<|eot_id|>", "<|im_end|>", "</s>"}, kTools);
  carapace::ChatStream out;
  parser.Feed(text.substr(0, cut), &out);
  parser.Feed(text.substr(cut), &out);
  parser.End(&out);
  return 0;
}
