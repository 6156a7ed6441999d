// Hermes (Qwen 2.5, Hermes and many fine-tunes taught by ChatML templates): each call is a JSON
// object between <tool_call> and </tool_call>, any number of them, with text around them.
#include "worker/model/reply_parser.h"
#include "worker/model/tool_call_formats/format_parser.h"

namespace carapace::tool_call_formats {

std::unique_ptr<FormatParser> NewHermesParser() {
  return NewTaggedCallParser("<tool_call>", "</tool_call>", ParseToolCallJson);
}

}  // namespace carapace::tool_call_formats
