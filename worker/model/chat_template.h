// Chat templates: how a conversation becomes the one prompt string that Triton's LLM
// backends take. Built in: ChatML (Qwen, Hermes, many fine-tunes) and Llama 3. A template
// file (YAML) gives the same parts for any other model; see docs/models.md.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/model/chat.h"
#include "worker/model/jinja_chat_template.h"

namespace carapace {

// How the model writes a tool call in its text.
enum class ToolCallFormat {
  kHermes,      // <tool_call>{"name": ..., "arguments": {...}}</tool_call>, any number of them
  kLlama3,      // the whole reply is {"name": ..., "parameters": {...}} (several joined by ';')
  kMistral,     // [TOOL_CALLS] then a JSON list of calls, or name[ARGS]{...} per call
  kQwen3Coder,  // <tool_call><function=NAME><parameter=P>value</parameter></function></tool_call>
  kDeepSeek,    // <｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{...}<｜tool▁call▁end｜> (V3 and V3.1)
  kHarmony,     // gpt-oss: messages on channels; a call is a message to=functions.NAME
};

struct ChatTemplate {
  struct Affix {
    std::string prefix;
    std::string suffix;
  };
  std::string name;
  std::string bos;                      // once, at the start
  std::map<std::string, Affix> roles;   // system, user, assistant, tool
  std::string generation_prompt;        // opens the assistant's turn
  std::vector<std::string> stop;        // generation ends at any of these
  ToolCallFormat tool_call_format = ToolCallFormat::kHermes;
  // Added to the system message when tools are offered; "{tools}" becomes one JSON
  // function schema per line.
  std::string tools_prompt;
  // The model's own Jinja template (or a family's): when set it writes the whole prompt,
  // and the parts above are unused.
  std::shared_ptr<const JinjaChatTemplate> jinja;
  // The tool-call markers are special tokens: the server must keep them in the text.
  bool keep_special_tokens = false;
  // A reply may open with reasoning between these tags (Qwen3's <think>): not the answer.
  std::string reasoning_open;
  std::string reasoning_close;
};

// "chatml" or "llama3". Errors: kInvalidArgument naming the known ones.
Result<ChatTemplate> BuiltinChatTemplate(const std::string& name);

// Reads a template file. Errors: kInvalidArgument with file:line:col and the field.
Result<ChatTemplate> LoadChatTemplateFile(const std::string& path);

// The prompt for `messages`, ending with the generation prompt. Tool calls of earlier
// assistant turns are written back in the template's tool-call format. Errors: only from a
// Jinja template, kInvalidArgument when it refuses the conversation (raise_exception) or
// fails, with its line and column.
Result<std::string> RenderPrompt(const ChatTemplate& t, const std::vector<Message>& messages,
                         const std::vector<ToolSchema>& tools);

}  // namespace carapace
