// Loading a model's Jinja chat template and rendering a conversation with it.
#include "worker/model/jinja_chat_template.h"

#include "common/file.h"
#include "common/json_text.h"

namespace carapace {

namespace {

// tokenizer_config.json writes a special token as a string or as an AddedToken object.
std::string TokenText(const nlohmann::json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
  return "";
}

Result<std::shared_ptr<const jinja::Template>> ParseNamed(const std::string& text, const std::string& origin) {
  auto t = jinja::Template::Parse(text, origin);
  if (!t.ok()) return t.status();
  return *t;
}

}  // namespace

Result<JinjaChatTemplate> LoadJinjaChatTemplate(const std::string& text, const std::string& origin,
                                                const std::string& name) {
  JinjaChatTemplate out;
  const size_t first = text.find_first_not_of(" \t\r\n");
  nlohmann::json config = first != std::string::npos && text[first] == '{' ? ParsePeerJson(text) : nlohmann::json();
  if (!config.is_object() || !config.contains("chat_template")) {
    // A bare Jinja template. ({ starts a JSON object, but also "{%" and "{{".)
    if (!name.empty()) return InvalidArgument(origin + ": name \"" + name + "\" picks a template of a tokenizer_config.json; this is a single template");
    CARAPACE_ASSIGN_OR_RETURN(out.main, ParseNamed(text, origin));
    out.text = text;
    return out;
  }
  out.bos_token = TokenText(config.value("bos_token", nlohmann::json()));
  out.eos_token = TokenText(config.value("eos_token", nlohmann::json()));
  for (auto it = config.begin(); it != config.end(); ++it) {
    const std::string& key = it.key();
    if (key.size() > 6 && key.compare(key.size() - 6, 6, "_token") == 0 && !TokenText(it.value()).empty()) {
      out.special_tokens[key] = TokenText(it.value());
    }
  }
  if (config.contains("additional_special_tokens") && config["additional_special_tokens"].is_array()) {
    nlohmann::json tokens = nlohmann::json::array();
    for (const auto& t : config["additional_special_tokens"]) {
      if (!TokenText(t).empty()) tokens.push_back(TokenText(t));
    }
    out.special_tokens["additional_special_tokens"] = tokens;
  }
  const nlohmann::json& ct = config["chat_template"];
  if (ct.is_string()) {
    if (!name.empty() && name != "default") {
      return InvalidArgument(origin + ": has one chat_template, not one named \"" + name + "\"");
    }
    out.text = ct.get<std::string>();
    CARAPACE_ASSIGN_OR_RETURN(out.main, ParseNamed(out.text, origin + " chat_template"));
    return out;
  }
  if (!ct.is_array()) return InvalidArgument(origin + ": chat_template must be a string or a list of {name, template}");
  std::string names;
  const std::string wanted = name.empty() ? "default" : name;
  for (const auto& entry : ct) {
    if (!entry.is_object() || !entry.value("name", nlohmann::json()).is_string() ||
        !entry.value("template", nlohmann::json()).is_string()) {
      return InvalidArgument(origin + ": each chat_template entry must be {name, template}, both strings");
    }
    const std::string entry_name = entry["name"];
    names += (names.empty() ? "" : ", ") + entry_name;
    const std::string where = origin + " chat_template \"" + entry_name + "\"";
    if (entry_name == wanted) {
      out.text = entry["template"];
      CARAPACE_ASSIGN_OR_RETURN(out.main, ParseNamed(out.text, where));
    } else if (name.empty() && entry_name == "tool_use") {
      CARAPACE_ASSIGN_OR_RETURN(out.tool_use, ParseNamed(entry["template"].get<std::string>(), where));
      out.text += entry["template"].get<std::string>();
    }
  }
  if (!out.main) {
    return InvalidArgument(origin + ": has no chat template named \"" + wanted + "\"; it has: " + names +
                           " (pick one with chatTemplate.name)");
  }
  return out;
}

Result<JinjaChatTemplate> LoadJinjaChatTemplateFile(const std::string& path, const std::string& name) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  return LoadJinjaChatTemplate(*text, path, name);
}

std::vector<std::string> JinjaChatTemplate::Deferred() const {
  std::vector<std::string> out = main ? main->deferred() : std::vector<std::string>{};
  if (tool_use) out.insert(out.end(), tool_use->deferred().begin(), tool_use->deferred().end());
  return out;
}

std::string TemplateCallId(const std::string& id) {
  // FNV-1a, then base 62: 62^9 is below 2^64, so nine characters hold most of the hash.
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : id) h = (h ^ c) * 1099511628211ull;
  static const char kAlphabet[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  std::string out(9, '0');
  for (char& c : out) {
    c = kAlphabet[h % 62];
    h /= 62;
  }
  return out;
}

Result<std::string> RenderJinjaPrompt(const JinjaChatTemplate& t, const std::vector<Message>& messages,
                                      const std::vector<ToolSchema>& tools) {
  using jinja::Dict;
  using jinja::List;
  using jinja::Value;
  List message_values;
  message_values.reserve(messages.size());
  for (const auto& m : messages) {
    // The shape of OpenAI's chat API, as vLLM hands it to the template: a call's arguments
    // are a mapping (templates write them with tojson).
    Dict d;
    d.items.emplace_back("role", Value(m.role));
    d.items.emplace_back("content", Value(m.content));
    if (!m.tool_calls.empty()) {
      List calls;
      for (const auto& c : m.tool_calls) {
        Dict function;
        function.items.emplace_back("name", Value(c.name));
        function.items.emplace_back("arguments", t.arguments_as_string && !c.arguments.is_string()
                                                     ? Value(c.arguments.dump())
                                                     : jinja::FromJson(c.arguments));
        Dict call;
        call.items.emplace_back("id", Value(TemplateCallId(c.id)));
        call.items.emplace_back("type", Value("function"));
        call.items.emplace_back("function", Value(std::move(function)));
        calls.emplace_back(std::move(call));
      }
      d.items.emplace_back("tool_calls", Value(std::move(calls)));
    }
    if (m.role == "tool") {
      d.items.emplace_back("tool_call_id", Value(TemplateCallId(m.tool_call_id)));
      d.items.emplace_back("name", Value(m.name));
    }
    message_values.emplace_back(std::move(d));
  }
  Dict vars;
  vars.items.emplace_back("messages", Value(std::move(message_values)));
  if (tools.empty()) {
    vars.items.emplace_back("tools", Value::None());  // what Hugging Face passes without tools
  } else {
    List tool_values;
    for (const auto& tool : tools) {
      // In the order of OpenAI's API, as a template's tojson writes it. (The schema itself
      // keeps the order the worker stores JSON in: sorted keys.)
      Dict function;
      function.items.emplace_back("name", Value(tool.name));
      function.items.emplace_back("description", Value(tool.description));
      function.items.emplace_back("parameters", jinja::FromJson(tool.parameters));
      Dict entry;
      entry.items.emplace_back("type", Value("function"));
      entry.items.emplace_back("function", Value(std::move(function)));
      tool_values.emplace_back(std::move(entry));
    }
    vars.items.emplace_back("tools", Value(std::move(tool_values)));
  }
  vars.items.emplace_back("add_generation_prompt", Value(true));
  for (auto it = t.special_tokens.begin(); it != t.special_tokens.end(); ++it) vars.Set(it.key(), jinja::FromJson(it.value()));
  vars.Set("bos_token", Value(t.bos_token));
  vars.Set("eos_token", Value(t.eos_token));
  for (auto it = t.variables.begin(); it != t.variables.end(); ++it) vars.Set(it.key(), jinja::FromJson(it.value()));
  const jinja::Template& chosen = !tools.empty() && t.tool_use ? *t.tool_use : *t.main;
  return chosen.Render(vars);
}

}  // namespace carapace
