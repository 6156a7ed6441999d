// The model families and how an endpoint's template settings become one ChatTemplate.
#include "worker/model/model_families.h"

#include <sys/stat.h>

#include <map>

#include "worker/model/reply_parser.h"

namespace carapace {

namespace {

// The families' own Jinja templates (worker/model/templates/*.jinja), compiled in by CMake:
// {"qwen3", "<template text>"}, ...
const std::map<std::string, std::string> kFamilyTemplates = {
#include "family_templates.inc"
};

struct ModelFamily {
  std::string name;
  std::string builtin;  // an affix template of chat_template.cc, or "" for kFamilyTemplates
  ToolCallFormat format;
  std::vector<std::string> stop;
  std::string bos;
  std::string eos;
};

// Whether a format's call markers are special tokens, which vLLM drops from the text unless
// asked (its sampling parameter skip_special_tokens, true by default).
bool MarkersAreSpecialTokens(ToolCallFormat format) {
  return format == ToolCallFormat::kMistral || format == ToolCallFormat::kDeepSeek || format == ToolCallFormat::kHarmony;
}

// Stop strings and special tokens are each model's tokenizer's (tokenizer_config.json,
// generation_config.json of the published models).
const std::vector<ModelFamily>& Families() {
  static const std::vector<ModelFamily> kFamilies = {
      {"chatml", "chatml", ToolCallFormat::kHermes, {"<|im_end|>", "<|endoftext|>"}, "", "<|im_end|>"},
      {"llama3", "llama3", ToolCallFormat::kLlama3, {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"}, "<|begin_of_text|>", "<|eot_id|>"},
      {"llama3.1", "llama3", ToolCallFormat::kLlama3, {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"}, "<|begin_of_text|>", "<|eot_id|>"},
      {"qwen2.5", "chatml", ToolCallFormat::kHermes, {"<|im_end|>", "<|endoftext|>"}, "", "<|im_end|>"},
      {"qwen3", "", ToolCallFormat::kHermes, {"<|im_end|>", "<|endoftext|>"}, "", "<|im_end|>"},
      {"qwen3-coder", "", ToolCallFormat::kQwen3Coder, {"<|im_end|>", "<|endoftext|>"}, "", "<|im_end|>"},
      {"mistral", "", ToolCallFormat::kMistral, {"</s>"}, "<s>", "</s>"},
      {"deepseek-v3", "", ToolCallFormat::kDeepSeek, {"<｜end▁of▁sentence｜>"}, "<｜begin▁of▁sentence｜>",
       "<｜end▁of▁sentence｜>"},
      {"gpt-oss", "", ToolCallFormat::kHarmony, {"<|return|>", "<|call|>"}, "", "<|return|>"},
  };
  return kFamilies;
}

const ModelFamily* FindFamily(const std::string& name) {
  for (const auto& f : Families()) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

ChatTemplate FromJinja(JinjaChatTemplate jinja, const std::string& name) {
  ChatTemplate t;
  t.name = name;
  t.jinja = std::make_shared<JinjaChatTemplate>(std::move(jinja));
  return t;
}

}  // namespace

const std::vector<std::string>& ModelFamilyNames() { return ModelFamilies(); }

Result<ChatTemplate> ChatTemplateFor(const TritonOptions& triton) {
  if (!triton.template_file.empty()) {
    auto t = LoadChatTemplateFile(triton.template_file);
    if (!t.ok()) return t.status().WithContext("triton.templateFile");
    return t;
  }
  const ModelFamily* family = triton.family.empty() ? nullptr : FindFamily(triton.family);
  if (!triton.family.empty() && family == nullptr) {
    return InvalidArgument("triton.family: unknown model family \"" + triton.family + "\"");
  }
  ChatTemplate t;
  const ChatTemplateSource& source = triton.jinja;
  if (source.given()) {
    Result<JinjaChatTemplate> jinja = InvalidArgument("no template");
    if (!source.inline_text.empty()) {
      jinja = LoadJinjaChatTemplate(source.inline_text, "chatTemplate.inline", source.name);
    } else {
      const std::string path = source.Path();
      struct stat st{};
      if (!source.config_map.empty() && ::stat(path.c_str(), &st) != 0) {
        return InvalidArgument("triton.chatTemplate.configMap: " + path + " is not there: the operator mounts ConfigMap \"" +
                               source.config_map + "\" in the pod; run locally, give chatTemplate.file instead");
      }
      jinja = LoadJinjaChatTemplateFile(path, source.name);
    }
    if (!jinja.ok()) return jinja.status().WithContext("triton.chatTemplate");
    jinja->variables = triton.template_variables;
    jinja->arguments_as_string = source.arguments_as == "string";
    // A family's special tokens fill in what a bare chat_template.jinja cannot say.
    if (family != nullptr && jinja->bos_token.empty()) jinja->bos_token = family->bos;
    if (family != nullptr && jinja->eos_token.empty()) jinja->eos_token = family->eos;
    const std::string detected_from = jinja->text;
    const std::string eos = jinja->eos_token;
    t = FromJinja(std::move(*jinja), "chatTemplate");
    if (family != nullptr) {
      t.tool_call_format = family->format;
      t.stop = family->stop;
    } else {
      t.tool_call_format = DetectToolCallFormat(detected_from).value_or(ToolCallFormat::kHermes);
      if (!eos.empty()) t.stop = {eos};
    }
  } else if (family != nullptr && !family->builtin.empty()) {
    CARAPACE_ASSIGN_OR_RETURN(t, BuiltinChatTemplate(family->builtin));
    t.name = family->name;
    t.stop = family->stop;
  } else if (family != nullptr) {
    auto text = kFamilyTemplates.find(family->name);
    if (text == kFamilyTemplates.end()) return Internal("model family " + family->name + " has no template");
    auto jinja = LoadJinjaChatTemplate(text->second, family->name + ".jinja", "");
    if (!jinja.ok()) return jinja.status().WithContext("triton.family");
    jinja->bos_token = family->bos;
    jinja->eos_token = family->eos;
    jinja->variables = triton.template_variables;
    t = FromJinja(std::move(*jinja), family->name);
    t.tool_call_format = family->format;
    t.stop = family->stop;
  } else {
    CARAPACE_ASSIGN_OR_RETURN(t, BuiltinChatTemplate(triton.chat_template));
  }
  if (!triton.tool_call_format.empty()) {
    auto format = ToolCallFormatFromName(triton.tool_call_format);
    if (!format) return InvalidArgument("triton.toolCallFormat: unknown format \"" + triton.tool_call_format + "\"");
    if (!t.jinja && *format != ToolCallFormat::kHermes && *format != ToolCallFormat::kLlama3) {
      return InvalidArgument("triton.toolCallFormat: " + triton.tool_call_format +
                             " needs a Jinja template (family or chatTemplate) to write earlier calls back");
    }
    t.tool_call_format = *format;
  }
  t.keep_special_tokens = MarkersAreSpecialTokens(t.tool_call_format);
  if (triton.stop) t.stop = *triton.stop;
  // Families that reason in <think> tags, and templates that mention them.
  const bool thinks = (family != nullptr && (family->name == "qwen3" || family->name == "deepseek-v3")) ||
                      (t.jinja && t.jinja->text.find("</think>") != std::string::npos);
  if (thinks) {
    t.reasoning_open = "<think>";
    t.reasoning_close = "</think>";
  }
  return t;
}

}  // namespace carapace
