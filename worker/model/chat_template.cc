// Built-in chat templates, template files and prompt rendering.
#include "worker/model/chat_template.h"

#include "common/manifest.h"

namespace carapace {

namespace {

const char* kHermesToolsPrompt =
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within <tool_call></tool_call> "
    "XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>";

const char* kLlama3ToolsPrompt =
    "\n\nGiven the following functions, please respond with a JSON for a function call with its proper arguments "
    "that best answers the given prompt.\n\nRespond in the format {\"name\": function name, \"parameters\": "
    "dictionary of argument name and its value}. Do not use variables.\n\n{tools}";

ChatTemplate ChatMl() {
  ChatTemplate t;
  t.name = "chatml";
  t.roles["system"] = {"<|im_start|>system\n", "<|im_end|>\n"};
  t.roles["user"] = {"<|im_start|>user\n", "<|im_end|>\n"};
  t.roles["assistant"] = {"<|im_start|>assistant\n", "<|im_end|>\n"};
  t.roles["tool"] = {"<|im_start|>user\n<tool_response>\n", "\n</tool_response><|im_end|>\n"};
  t.generation_prompt = "<|im_start|>assistant\n";
  t.stop = {"<|im_end|>", "<|endoftext|>"};
  t.tool_call_format = ToolCallFormat::kHermes;
  t.tools_prompt = kHermesToolsPrompt;
  return t;
}

ChatTemplate Llama3() {
  ChatTemplate t;
  t.name = "llama3";
  t.bos = "<|begin_of_text|>";
  auto role = [](const std::string& r) {
    return ChatTemplate::Affix{"<|start_header_id|>" + r + "<|end_header_id|>\n\n", "<|eot_id|>"};
  };
  t.roles["system"] = role("system");
  t.roles["user"] = role("user");
  t.roles["assistant"] = role("assistant");
  t.roles["tool"] = role("ipython");
  t.generation_prompt = "<|start_header_id|>assistant<|end_header_id|>\n\n";
  t.stop = {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"};
  t.tool_call_format = ToolCallFormat::kLlama3;
  t.tools_prompt = kLlama3ToolsPrompt;
  return t;
}

std::string ToolsJsonLines(const std::vector<ToolSchema>& tools) {
  std::string out;
  for (const auto& tool : tools) {
    out += (out.empty() ? "" : "\n") + FunctionJson(tool).dump();
  }
  return out;
}

std::string RenderCall(const ChatTemplate& t, const ToolCall& call) {
  // A malformed call goes back as the model wrote it, so it sees its own mistake.
  std::string body = !call.malformed.empty() && call.arguments.is_string()
                         ? call.arguments.get<std::string>()
                         : nlohmann::json({{"name", call.name},
                                           {t.tool_call_format == ToolCallFormat::kLlama3 ? "parameters" : "arguments",
                                            call.arguments}})
                               .dump();
  if (t.tool_call_format == ToolCallFormat::kLlama3) return body;
  return "<tool_call>\n" + body + "\n</tool_call>";
}

}  // namespace

Result<ChatTemplate> BuiltinChatTemplate(const std::string& name) {
  if (name == "chatml") return ChatMl();
  if (name == "llama3") return Llama3();
  return InvalidArgument("unknown chat template \"" + name + "\"; built in: chatml, llama3");
}

Result<ChatTemplate> LoadChatTemplateFile(const std::string& path) {
  CARAPACE_ASSIGN_OR_RETURN(YAML::Node root, LoadYamlFile(path));
  ManifestErrors errs(path);
  ObjectReader r(root, "", &errs);
  ChatTemplate t;
  t.name = path;
  if (!r.valid()) {
    if (!root.IsMap()) errs.Add(root, "", "a chat template must be a mapping");
    return errs.ToStatus();
  }
  if (auto v = r.String("bos")) t.bos = *v;
  ObjectReader roles(r.Child("roles"), "roles", &errs);
  if (!r.Has("roles")) r.Error("roles", "is required");
  for (const char* role : {"system", "user", "assistant", "tool"}) {
    ObjectReader a(roles.Child(role), roles.PathOf(role), &errs);
    if (!a.valid()) {
      if (roles.valid() && !roles.Has(role)) roles.Error(role, "is required");
      continue;
    }
    ChatTemplate::Affix affix;
    if (auto v = a.String("prefix")) affix.prefix = *v;
    if (auto v = a.String("suffix")) affix.suffix = *v;
    a.Finish();
    t.roles[role] = affix;
  }
  roles.Finish();
  if (auto v = r.String("generationPrompt", true)) t.generation_prompt = *v;
  if (auto v = r.StringList("stop")) {
    for (const auto& stop : *v) {
      if (stop.empty()) r.Error("stop", "must not contain an empty string: it would end every reply at once");
    }
    t.stop = *v;
  }
  if (auto v = r.Enum("toolCallFormat", {"hermes", "llama3"})) {
    t.tool_call_format = *v == "llama3" ? ToolCallFormat::kLlama3 : ToolCallFormat::kHermes;
  }
  if (auto v = r.String("toolsPrompt")) {
    if (v->find("{tools}") == std::string::npos) r.Error("toolsPrompt", "must contain {tools}");
    t.tools_prompt = *v;
  } else {
    t.tools_prompt = t.tool_call_format == ToolCallFormat::kLlama3 ? kLlama3ToolsPrompt : kHermesToolsPrompt;
  }
  r.Finish();
  if (!errs.empty()) return errs.ToStatus();
  return t;
}

Result<std::string> RenderPrompt(const ChatTemplate& t, const std::vector<Message>& messages,
                                 const std::vector<ToolSchema>& tools) {
  if (t.jinja) return RenderJinjaPrompt(*t.jinja, messages, tools);
  std::string tools_text;
  if (!tools.empty()) {
    tools_text = t.tools_prompt;
    size_t at = tools_text.find("{tools}");
    if (at != std::string::npos) tools_text.replace(at, 7, ToolsJsonLines(tools));
  }
  std::string out = t.bos;
  bool tools_placed = tools_text.empty();
  auto affix = [&](const std::string& role) -> const ChatTemplate::Affix& {
    static const ChatTemplate::Affix kNone;
    auto it = t.roles.find(role);
    return it == t.roles.end() ? kNone : it->second;
  };
  if (!tools_placed && (messages.empty() || messages.front().role != "system")) {
    out += affix("system").prefix + tools_text.substr(tools_text.find_first_not_of('\n')) + affix("system").suffix;
    tools_placed = true;
  }
  for (const auto& m : messages) {
    const auto& a = affix(m.role);
    std::string body = m.content;
    if (m.role == "system" && !tools_placed) {
      body += tools_text;
      tools_placed = true;
    }
    if (m.role == "assistant" && !m.tool_calls.empty()) {
      // Llama 3 writes calls as the whole reply; Hermes after any text.
      const bool llama = t.tool_call_format == ToolCallFormat::kLlama3;
      if (llama) body.clear();
      for (const auto& call : m.tool_calls) {
        if (!body.empty()) body += llama ? "; " : "\n";
        body += RenderCall(t, call);
      }
    }
    out += a.prefix + body + a.suffix;
  }
  out += t.generation_prompt;
  return out;
}

}  // namespace carapace
