// A model's own chat template, in Jinja, as its authors ship it: chat_template.jinja, or
// tokenizer_config.json (its chat_template, one string or several named ones, and its bos
// and eos tokens), or the text inline in the AgentRun. Rendered with what Hugging Face's
// apply_chat_template passes: messages, tools, add_generation_prompt, bos_token, eos_token,
// and the variables the spec adds (enable_thinking, reasoning_effort, ...).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "worker/model/chat.h"
#include "worker/model/jinja/template.h"

namespace carapace {

struct JinjaChatTemplate {
  std::shared_ptr<const jinja::Template> main;
  // tokenizer_config.json's "tool_use" template, rendered instead when tools are offered
  // (as Hugging Face chooses); null when there is none.
  std::shared_ptr<const jinja::Template> tool_use;
  std::string bos_token;
  std::string eos_token;
  // The tokenizer_config.json's other special tokens (unk_token, pad_token, ...,
  // additional_special_tokens), which Hugging Face passes to the template too.
  nlohmann::json special_tokens = nlohmann::json::object();
  std::string text;  // the template's source, to detect its tool-call format from
  nlohmann::json variables = nlohmann::json::object();
  bool arguments_as_string = false;  // a call's arguments as JSON text, not a mapping
  // Names outside the engine's subset in {% if %} branches: errors only if those run.
  std::vector<std::string> Deferred() const;
};

// `text` is a Jinja template, or a tokenizer_config.json (a JSON object with chat_template).
// `name` picks one of several named templates ("" = "default", with "tool_use" for tools).
// Errors: kInvalidArgument naming `origin`, with line and column for a template the engine
// cannot render, or the names there are when `name` is not one of them.
Result<JinjaChatTemplate> LoadJinjaChatTemplate(const std::string& text, const std::string& origin,
                                                const std::string& name);
Result<JinjaChatTemplate> LoadJinjaChatTemplateFile(const std::string& path, const std::string& name);

// The prompt, ending with the generation prompt. Errors: kInvalidArgument when the template
// refuses the conversation (its raise_exception) or fails, with its line and column.
Result<std::string> RenderJinjaPrompt(const JinjaChatTemplate& t, const std::vector<Message>& messages,
                                      const std::vector<ToolSchema>& tools);

// The id a template sees for a tool call: nine letters and digits derived from the run's own
// id ("s12c0"), the same for the call and its result. Some templates (Mistral's) refuse any
// other shape.
std::string TemplateCallId(const std::string& id);

}  // namespace carapace
