// The streaming tool-call parser of prompt-template models: Hermes <tool_call> tags and
// Llama 3 JSON replies, with stop strings, fed in two pieces split where the first byte says.
#include <cstdint>
#include <string>
#include <string_view>

#include "worker/model/model_backend.h"
#include "worker/model/reply_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const auto format = (data[0] & 1) ? carapace::ToolCallFormat::kLlama3 : carapace::ToolCallFormat::kHermes;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t cut = text.empty() ? 0 : (data[0] >> 1) % (text.size() + 1);
  carapace::ReplyParser parser(format, {"<|eot_id|>", "<|im_end|>"});
  carapace::ChatStream out;
  parser.Feed(text.substr(0, cut), &out);
  parser.Feed(text.substr(cut), &out);
  parser.End(&out);
  return 0;
}
