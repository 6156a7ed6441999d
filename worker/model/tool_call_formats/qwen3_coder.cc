// Qwen3-Coder: calls between <tool_call> and </tool_call> as in Hermes, but written as XML-like
// tags, not JSON, with text around them:
//   <tool_call>
//   <function=get_weather>
//   <parameter=city>
//   Paris
//   </parameter>
//   </function>
//   </tool_call>
// A parameter's value is raw text; its type comes from the offered tool's JSON Schema. The
// facts follow vLLM's vllm/entrypoints/openai/tool_parsers/qwen3coder_tool_parser.py: one
// newline around a value is layout, a missing </parameter> ends at the next tag, and "null"
// is null whatever the type.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <optional>

#include "common/json_text.h"
#include "worker/model/tool_call_formats/format_parser.h"

namespace carapace::tool_call_formats {

namespace {

constexpr std::string_view kFunction = "<function=";
constexpr std::string_view kFunctionEnd = "</function>";
constexpr std::string_view kParameter = "<parameter=";
constexpr std::string_view kParameterEnd = "</parameter>";

// The type a parameter's schema declares ("" when none): the first that is not "null" where
// it gives several (["integer", "null"]).
std::string DeclaredType(const std::vector<ToolSchema>& tools, const std::string& tool, const std::string& param) {
  for (const auto& t : tools) {
    if (t.name != tool) continue;
    const nlohmann::json& p = t.parameters;
    if (!p.is_object() || !p.contains("properties") || !p["properties"].is_object()) return "";
    const nlohmann::json& props = p["properties"];
    if (!props.contains(param) || !props[param].is_object() || !props[param].contains("type")) return "";
    const nlohmann::json& type = props[param]["type"];
    if (type.is_string()) return type.get<std::string>();
    if (type.is_array()) {
      for (const auto& each : type) {
        if (each.is_string() && each != "null") return each.get<std::string>();
      }
    }
    return "";
  }
  return "";
}

// The value of a parameter written as raw text, as its declared type; nullopt when the text
// is not of that type. Without a known type, JSON if it reads as JSON, else the text.
std::optional<nlohmann::json> Convert(const std::string& text, const std::string& type) {
  const std::string trimmed = Trim(text);
  if (trimmed == "null") return nlohmann::json(nullptr);
  if (type == "string") return nlohmann::json(text);
  if (type == "boolean") {
    std::string lower = trimmed;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (lower == "true" || lower == "false") return nlohmann::json(lower == "true");
    return std::nullopt;
  }
  nlohmann::json j = ParsePeerJson(trimmed);
  if (type == "integer") {
    if (j.is_number_integer()) return j;
    if (j.is_number_float()) {  // 3.0 is an integer; 3.5 and 1e300 are not
      const double d = j.get<double>();
      if (std::trunc(d) == d && std::fabs(d) < 9.0e15) return nlohmann::json(static_cast<int64_t>(d));
    }
    return std::nullopt;
  }
  if (type == "number") return j.is_number() ? std::optional(j) : std::nullopt;
  if (type == "object") return j.is_object() ? std::optional(j) : std::nullopt;
  if (type == "array") return j.is_array() ? std::optional(j) : std::nullopt;
  if (j.is_discarded()) return nlohmann::json(text);
  return j;
}

// The start of a value for a message: at most `limit` bytes, not cutting a UTF-8 character.
std::string Excerpt(std::string_view value, size_t limit) {
  if (value.size() <= limit) return std::string(value);
  while (limit > 0 && (static_cast<unsigned char>(value[limit]) & 0xC0) == 0x80) --limit;
  return std::string(value.substr(0, limit)) + "...";
}

std::string_view SkipSpace(std::string_view s) { return s.substr(std::min(s.find_first_not_of(kSpace), s.size())); }

// What stands between <tool_call> and </tool_call>: one <function=NAME> with its parameters.
ToolCall ParseXmlCall(const std::string& raw_body, const std::vector<ToolSchema>& tools) {
  const std::string body = Trim(raw_body);
  std::string_view rest = body;
  if (!rest.starts_with(kFunction)) return Malformed(body, "the tool call does not start with <function=NAME>");
  size_t close = rest.find('>');
  if (close == std::string_view::npos) return Malformed(body, "the <function= tag is not closed with >");
  std::string name = Trim(rest.substr(kFunction.size(), close - kFunction.size()));
  if (name.empty()) return Malformed(body, "the tool call has no name");
  rest = rest.substr(close + 1);
  nlohmann::json args = nlohmann::json::object();
  while (true) {
    rest = SkipSpace(rest);
    if (rest.empty()) break;  // </function> left out
    if (rest.starts_with(kFunctionEnd)) {
      if (!SkipSpace(rest.substr(kFunctionEnd.size())).empty()) {
        return Malformed(
            body, "text follows </function> in the call of \"" + name + "\" (one function per <tool_call>)", name);
      }
      break;
    }
    if (!rest.starts_with(kParameter)) {
      return Malformed(body, "expected <parameter=NAME> or </function> in the call of \"" + name + "\"", name);
    }
    close = rest.find('>');
    if (close == std::string_view::npos) return Malformed(body, "a <parameter= tag is not closed with >", name);
    const std::string param = Trim(rest.substr(kParameter.size(), close - kParameter.size()));
    if (param.empty()) return Malformed(body, "a parameter of \"" + name + "\" has no name", name);
    rest = rest.substr(close + 1);
    const size_t end =
        std::min({rest.find(kParameterEnd), rest.find(kParameter), rest.find(kFunctionEnd), rest.size()});
    std::string_view value = rest.substr(0, end);
    rest = rest.substr(end);
    if (rest.starts_with(kParameterEnd)) rest = rest.substr(kParameterEnd.size());
    if (value.starts_with('\n')) value.remove_prefix(1);
    if (value.ends_with('\n')) value.remove_suffix(1);
    const std::string type = DeclaredType(tools, name, param);
    std::optional<nlohmann::json> converted = Convert(std::string(value), type);
    if (!converted) {
      return Malformed(body,
                       "the parameter \"" + param + "\" of \"" + name + "\" must be " +
                           (type == "integer" || type == "array" || type == "object" ? "an " : "a ") + type +
                           ", not \"" + Excerpt(value, 40) + "\"",
                       name);
    }
    args[param] = std::move(*converted);
  }
  ToolCall c;
  c.name = std::move(name);
  c.arguments = std::move(args);
  return c;
}

}  // namespace

std::unique_ptr<FormatParser> NewQwen3CoderParser(std::vector<ToolSchema> tools) {
  return NewTaggedCallParser("<tool_call>", "</tool_call>",
                             [tools = std::move(tools)](const std::string& body) { return ParseXmlCall(body, tools); });
}

}  // namespace carapace::tool_call_formats
