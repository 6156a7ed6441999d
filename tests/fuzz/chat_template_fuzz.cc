// A model's chat template as a user brings it (chatTemplate: a Jinja template or a whole
// tokenizer_config.json): loaded, and when it loads, rendered with a small conversation that
// has a tool call, its result and tools. Nothing may crash or hang; a template that fails
// says so.
#include <cstdint>
#include <string>
#include <vector>

#include "worker/model/jinja_chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto t = carapace::LoadJinjaChatTemplate(text, "fuzz.jinja", "");
  if (!t.ok()) return 0;
  carapace::Message call{"assistant", "", {}, "", ""};
  call.tool_calls.push_back({"s1c0", "f", {{"n", 1}, {"s", "x"}}, ""});
  static const std::vector<carapace::ToolSchema> kTools = {
      {"f", "a tool", {{"type", "object"}, {"properties", {{"n", {{"type", "integer"}}}}}}}};
  const std::vector<carapace::Message> messages = {{"system", "Be brief.", {}, "", ""},
                                                   {"user", "hi", {}, "", ""},
                                                   call,
                                                   {"tool", "{\"ok\": true}", {}, "s1c0", "f"},
                                                   {"assistant", "done", {}, "", ""}};
  (void)carapace::RenderJinjaPrompt(*t, messages, kTools);
  (void)carapace::RenderJinjaPrompt(*t, messages, {});
  return 0;
}
