// Chat templates in Jinja: a model's own (chat_template.jinja, tokenizer_config.json,
// inline) and the model families' built-in ones, rendered to the prompts their formats
// document. Expected prompts are written out by hand from each family's documented prompt
// format; a template that renders anything else fails here.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <algorithm>
#include <cctype>
#include <fstream>

#include "tests/support/child_process.h"
#include "worker/model/jinja_chat_template.h"
#include "worker/model/model_families.h"
#include "worker/model/reasoning_filter.h"
#include "worker/model/reply_parser.h"

using namespace carapace;
using Catch::Matchers::ContainsSubstring;

namespace {

const std::vector<ToolSchema> kWeatherTool = {
    {"get_weather", "Gets the weather",
     nlohmann::json::parse(R"({"type": "object", "properties": {"city": {"type": "string", "description": "city name"},
                              "days": {"type": "integer"}}, "required": ["city"]})")}};

// A whole exchange: a system prompt, a question, a call, its result, an answer, a thank-you.
std::vector<Message> Exchange() {
  Message call{"assistant", "", {}, "", ""};
  call.tool_calls.push_back({"s1c0", "get_weather", {{"city", "Paris"}, {"days", 3}}, ""});
  return {{"system", "Be brief.", {}, "", ""},
          {"user", "Weather in Paris?", {}, "", ""},
          call,
          {"tool", "sunny", {}, "s1c0", "get_weather"},
          {"assistant", "Sunny.", {}, "", ""},
          {"user", "Thanks", {}, "", ""}};
}

// The tool as OpenAI's API and Python's json.dumps write it: type, then function; the schema
// with the worker's (sorted) key order.
const std::string kToolJson =
    R"({"type": "function", "function": {"name": "get_weather", "description": "Gets the weather", "parameters": )"
    R"({"properties": {"city": {"description": "city name", "type": "string"}, "days": {"type": "integer"}}, )"
    R"("required": ["city"], "type": "object"}}})";

std::string FamilyPrompt(const std::string& family, const nlohmann::json& variables = nlohmann::json::object()) {
  TritonOptions options;
  options.family = family;
  options.template_variables = variables;
  auto t = ChatTemplateFor(options);
  INFO(t.status().ToString());
  REQUIRE(t.ok());
  auto p = RenderPrompt(*t, Exchange(), kWeatherTool);
  INFO(p.status().ToString());
  REQUIRE(p.ok());
  return *p;
}

}  // namespace

TEST_CASE("qwen3: ChatML turns, Hermes tools in the system turn, results as tool_response, thinking off on request",
          "[jinja][templates]") {
  const std::string expected =
      "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
      "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" +
      kToolJson +
      "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
      "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
      "</tool_call><|im_end|>\n"
      "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
      "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}\n"
      "</tool_call><|im_end|>\n"
      "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n"
      "<|im_start|>assistant\nSunny.<|im_end|>\n"
      "<|im_start|>user\nThanks<|im_end|>\n"
      "<|im_start|>assistant\n";
  CHECK(FamilyPrompt("qwen3") == expected);
  CHECK(FamilyPrompt("qwen3", {{"enable_thinking", false}}) == expected + "<think>\n\n</think>\n\n");

  // Earlier reasoning is not shown to the model again.
  TritonOptions options;
  options.family = "qwen3";
  auto t = ChatTemplateFor(options);
  REQUIRE(t.ok());
  std::vector<Message> m = {{"user", "hi", {}, "", ""}, {"assistant", "<think>\nhmm\n</think>\n\nHello!", {}, "", ""}};
  CHECK(RenderPrompt(*t, m, {}).value() ==
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>assistant\n");
}

TEST_CASE("qwen3-coder: tools in XML, calls as function and parameter blocks", "[jinja][templates]") {
  CHECK(FamilyPrompt("qwen3-coder") ==
        "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou have access to the following functions:\n\n<tools>\n"
        "<function>\n<name>get_weather</name>\n<description>Gets the weather</description>\n<parameters>\n"
        "<parameter>\n<name>city</name>\n<type>string</type>\n<description>city name</description>\n"
        "<required>true</required>\n</parameter>\n"
        "<parameter>\n<name>days</name>\n<type>integer</type>\n</parameter>\n</parameters>\n</function>\n</tools>\n\n"
        "If you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
        "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"
        "</function>\n</tool_call><|im_end|>\n"
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
        "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n<|im_end|>\n"
        "<|im_start|>assistant\nSunny.<|im_end|>\n"
        "<|im_start|>user\nThanks<|im_end|>\n"
        "<|im_start|>assistant\n");
}

TEST_CASE("mistral: [INST] turns, tools and the system prompt before the last user turn, nine-character call ids",
          "[jinja][templates]") {
  const std::string id = TemplateCallId("s1c0");
  CHECK(FamilyPrompt("mistral") ==
        "<s>[INST] Weather in Paris?[/INST]"
        "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}, \"id\": \"" + id + "\"}]</s>"
        "[TOOL_RESULTS] {\"content\": \"sunny\", \"call_id\": \"" + id + "\"}[/TOOL_RESULTS]"
        " Sunny.</s>"
        "[AVAILABLE_TOOLS] [" + kToolJson + "][/AVAILABLE_TOOLS]"
        "[INST] Be brief.\n\nThanks[/INST]");
  // The ids a template sees: nine letters and digits, the same for a call and its result,
  // different for different calls.
  CHECK(id.size() == 9);
  CHECK(std::all_of(id.begin(), id.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }));
  CHECK(TemplateCallId("s1c0") == id);
  CHECK(TemplateCallId("s1c1") != id);
}

TEST_CASE("deepseek-v3: User and Assistant markers, calls with a json block, outputs grouped", "[jinja][templates]") {
  CHECK(FamilyPrompt("deepseek-v3") ==
        "<｜begin▁of▁sentence｜>Be brief.\n\n## Tools\n\n### Function\n\nYou have the following functions available:\n"
        "\n- `get_weather`:\n```json\n"
        R"({"name": "get_weather", "description": "Gets the weather", "parameters": {"properties": {"city": )"
        R"({"description": "city name", "type": "string"}, "days": {"type": "integer"}}, "required": ["city"], "type": "object"}})"
        "\n```\n"
        "<｜User｜>Weather in Paris?"
        "<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
        "{\"city\": \"Paris\", \"days\": 3}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>"
        "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>sunny<｜tool▁output▁end｜><｜tool▁outputs▁end｜>"
        "<｜Assistant｜>Sunny.<｜end▁of▁sentence｜>"
        "<｜User｜>Thanks<｜Assistant｜>");
}

TEST_CASE("gpt-oss: harmony system and developer messages, tools as a TypeScript namespace, calls on commentary",
          "[jinja][templates]") {
  CHECK(FamilyPrompt("gpt-oss", {{"current_date", "2026-12-05"}, {"reasoning_effort", "low"}}) ==
        "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\n"
        "Current date: 2026-12-05\n\nReasoning: low\n\n"
        "# Valid channels: analysis, commentary, final. Channel must be included for every message.\n"
        "Calls to these tools must go to the commentary channel: 'functions'.<|end|>"
        "<|start|>developer<|message|># Instructions\n\nBe brief.\n\n# Tools\n\n## functions\n\nnamespace functions {\n\n"
        "// Gets the weather\ntype get_weather = (_: {\n// city name\ncity: string,\ndays?: number,\n}) => any;\n\n"
        "} // namespace functions<|end|>"
        "<|start|>user<|message|>Weather in Paris?<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
        "{\"city\": \"Paris\", \"days\": 3}<|call|>"
        "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>sunny<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Sunny.<|end|>"
        "<|start|>user<|message|>Thanks<|end|>"
        "<|start|>assistant");
}

TEST_CASE("every family named in the spec has a template, a tool-call format the parser knows, and stops",
          "[jinja][templates]") {
  for (const auto& family : ModelFamilyNames()) {
    INFO(family);
    TritonOptions options;
    options.family = family;
    auto t = ChatTemplateFor(options);
    REQUIRE(t.ok());
    CHECK_FALSE(t->stop.empty());
    CHECK(ToolCallFormatFromName(ToolCallFormatName(t->tool_call_format)) == t->tool_call_format);
    auto p = RenderPrompt(*t, Exchange(), kWeatherTool);
    REQUIRE(p.ok());
    CHECK_THAT(*p, ContainsSubstring("Weather in Paris?"));
    CHECK_THAT(*p, ContainsSubstring("sunny"));
  }
  for (const auto& name : ToolCallFormats()) CHECK(ToolCallFormatFromName(name).has_value());
}

namespace {

// A template of our own in the style of Llama 3.1's: `{{-` and `{%-` everywhere, tags ending
// in a newline and indentation that the next tag's "-" strips, a top-level `set` shadowing
// `messages`, tojson(indent=4), `'tool_calls' in message`, and raise_exception.
const char* kLlamaStyleTemplate = R"TEMPLATE({{- bos_token }}
{%- set today = date_string if date_string is defined else "1 Jan 2026" %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_text = messages[0]['content'] | trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_text = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{{- "Today Date: " + today + "\n\n" }}
{{- system_text }}
{%- if tools is not none %}
    {{- "\n\nYou may call these functions:\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if 'tool_calls' in message %}
        {%- if message.tool_calls | length != 1 %}
            {{- raise_exception("one tool call per turn") }}
        {%- endif %}
        {%- set call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {{- '{"name": "' + call.name + '", "parameters": ' + call.arguments | tojson + '}<|eot_id|>' }}
    {%- elif message.role == 'tool' %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" + message.content + "<|eot_id|>" }}
    {%- else %}
        {{- '<|start_header_id|>' + message.role + '<|end_header_id|>\n\n' + message.content | trim + '<|eot_id|>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
)TEMPLATE";

}  // namespace

TEST_CASE("a tokenizer_config.json brings its template and its special tokens; Llama 3.1-style whitespace",
          "[jinja][templates]") {
  nlohmann::json config = {{"bos_token", {{"__type", "AddedToken"}, {"content", "<|begin_of_text|>"}}},
                           {"eos_token", "<|eot_id|>"},
                           {"chat_template", kLlamaStyleTemplate}};
  auto t = LoadJinjaChatTemplate(config.dump(), "tokenizer_config.json", "");
  INFO(t.status().ToString());
  REQUIRE(t.ok());
  CHECK(t->bos_token == "<|begin_of_text|>");
  CHECK(t->eos_token == "<|eot_id|>");
  const std::string tool_indented =
      "{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\",\n"
      "        \"description\": \"Gets the weather\",\n        \"parameters\": {\n            \"properties\": {\n"
      "                \"city\": {\n                    \"description\": \"city name\",\n"
      "                    \"type\": \"string\"\n                },\n                \"days\": {\n"
      "                    \"type\": \"integer\"\n                }\n            },\n            \"required\": [\n"
      "                \"city\"\n            ],\n            \"type\": \"object\"\n        }\n    }\n}";
  auto p = RenderJinjaPrompt(*t, Exchange(), kWeatherTool);
  INFO(p.status().ToString());
  REQUIRE(p.ok());
  CHECK(*p ==
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nToday Date: 1 Jan 2026\n\n"
        "Be brief.\n\nYou may call these functions:\n\n" + tool_indented + "\n\n<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWeather in Paris?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"days\": 3}}<|eot_id|>"
        "<|start_header_id|>ipython<|end_header_id|>\n\nsunny<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nSunny.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nThanks<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // Without tools the template is told `tools` is none.
  auto bare = RenderJinjaPrompt(*t, {{"user", "hi", {}, "", ""}}, {});
  REQUIRE(bare.ok());
  CHECK(*bare == "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nToday Date: 1 Jan 2026\n\n<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  // The template's own refusal comes back as an error, with its place.
  Message two_calls{"assistant", "", {}, "", ""};
  two_calls.tool_calls = {{"s1c0", "a", nlohmann::json::object(), ""}, {"s1c1", "b", nlohmann::json::object(), ""}};
  auto refused = RenderJinjaPrompt(*t, {{"user", "hi", {}, "", ""}, two_calls}, {});
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(refused.status().message(), ContainsSubstring("tokenizer_config.json chat_template:26:"));
  CHECK_THAT(refused.status().message(), ContainsSubstring("the chat template raised an error: one tool call per turn"));
}

TEST_CASE("named templates: default, tool_use when tools are offered, or the one asked for by name", "[jinja][templates]") {
  nlohmann::json config = {{"chat_template", {{{"name", "default"}, {"template", "D{{ messages | length }}"}},
                                              {{"name", "tool_use"}, {"template", "T{{ tools | length }}"}},
                                              {{"name", "rag"}, {"template", "R"}}}}};
  auto t = LoadJinjaChatTemplate(config.dump(), "tokenizer_config.json", "");
  REQUIRE(t.ok());
  std::vector<Message> m = {{"user", "hi", {}, "", ""}};
  CHECK(RenderJinjaPrompt(*t, m, {}).value() == "D1");
  CHECK(RenderJinjaPrompt(*t, m, kWeatherTool).value() == "T1");
  auto rag = LoadJinjaChatTemplate(config.dump(), "tokenizer_config.json", "rag");
  REQUIRE(rag.ok());
  CHECK(RenderJinjaPrompt(*rag, m, kWeatherTool).value() == "R");
  auto missing = LoadJinjaChatTemplate(config.dump(), "tokenizer_config.json", "chat");
  REQUIRE_FALSE(missing.ok());
  CHECK_THAT(missing.status().message(),
             ContainsSubstring("has no chat template named \"chat\"; it has: default, tool_use, rag"));
  nlohmann::json broken = {{"chat_template", {{{"name", "default"}, {"template", "{% for %}"}}}}};
  auto bad = LoadJinjaChatTemplate(broken.dump(), "tokenizer_config.json", "");
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.status().message(), ContainsSubstring("tokenizer_config.json chat_template \"default\":1:8: expected a loop variable"));
}

TEST_CASE("chatTemplate from a file or inline: the tool-call format is detected, a bad template fails at load",
          "[jinja][templates]") {
  testing::TempDir dir;
  const std::string path = dir.path() + "/chat_template.jinja";
  std::ofstream(path) << "{%- for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
                         "{%- if tools %}[TOOL_CALLS]{% endif %}";
  TritonOptions options;
  options.jinja.file = path;
  auto t = ChatTemplateFor(options);
  INFO(t.status().ToString());
  REQUIRE(t.ok());
  CHECK(t->tool_call_format == ToolCallFormat::kMistral);
  CHECK(t->keep_special_tokens);
  CHECK(RenderPrompt(*t, {{"user", "hi", {}, "", ""}}, {}).value() == "[user]hi");

  options.jinja = {};
  options.jinja.inline_text = "{{ messages[0].content }}{% if x %}";
  auto bad = ChatTemplateFor(options);
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.status().message(), ContainsSubstring("triton.chatTemplate"));
  CHECK_THAT(bad.status().message(), ContainsSubstring("chatTemplate.inline:1:29: this block is never closed"));

  options.jinja = {};
  options.jinja.config_map = "qwen-template";
  options.jinja.key = "chat_template.jinja";
  auto unmounted = ChatTemplateFor(options);
  REQUIRE_FALSE(unmounted.ok());
  CHECK_THAT(unmounted.status().message(), ContainsSubstring("/etc/carapace/chat-templates/qwen-template/chat_template.jinja is not there"));

  // A family gives the format and stops; the model's own template replaces the prompt.
  options.jinja = {};
  options.jinja.inline_text = "{% for m in messages %}<{{ m.content }}>{% endfor %}";
  options.family = "deepseek-v3";
  options.stop = std::vector<std::string>{"<eot>"};
  auto own = ChatTemplateFor(options);
  REQUIRE(own.ok());
  CHECK(own->tool_call_format == ToolCallFormat::kDeepSeek);
  CHECK(own->stop == std::vector<std::string>{"<eot>"});
  CHECK(RenderPrompt(*own, {{"user", "hi", {}, "", ""}}, {}).value() == "<hi>");
}

TEST_CASE("a reply's leading <think> block is not its text, wherever the stream splits it", "[jinja][templates]") {
  auto filter = [](const std::string& reply, size_t cut) {
    ReasoningFilter f("<think>", "</think>");
    std::string out = f.Feed(reply.substr(0, cut));
    out += f.Feed(reply.substr(cut));
    return out + f.End();
  };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"<think>\nThe user greets me.\n</think>\n\nHello!", "Hello!"},
      {"\n<think>plan</think>Answer <think> stays", "Answer <think> stays"},
      {"Plain answer.", "Plain answer."},
      {"  <thinking> is a word here", "  <thinking> is a word here"},
      {"<thi", "<thi"},                           // ended before it could be the tag: text
      {"<think>never closed, cut short", ""},     // all reasoning: no text
  };
  for (const auto& [reply, expected] : cases) {
    for (size_t cut = 0; cut <= reply.size(); ++cut) {
      INFO(reply << " split at " << cut);
      CHECK(filter(reply, cut) == expected);
    }
  }
  ReasoningFilter off("", "");
  CHECK(off.Feed("<think>x</think>y") == "<think>x</think>y");

  TritonOptions options;
  options.family = "qwen3";
  CHECK(ChatTemplateFor(options)->reasoning_open == "<think>");
  options.family = "mistral";
  CHECK(ChatTemplateFor(options)->reasoning_open.empty());
}

TEST_CASE("chatTemplate.argumentsAs: string gives templates that concatenate a call's arguments the JSON text",
          "[jinja][templates]") {
  TritonOptions options;
  options.jinja.inline_text =
      "{% for m in messages %}{% for c in m.tool_calls | default([]) %}{{ '```json\\n' + c.function.arguments + '\\n```' }}"
      "{% endfor %}{% endfor %}";
  auto as_mapping = ChatTemplateFor(options);
  REQUIRE(as_mapping.ok());
  auto refused = RenderPrompt(*as_mapping, Exchange(), kWeatherTool);
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(refused.status().message(), ContainsSubstring("unsupported operand type(s) for +: 'str' and 'dict'"));
  options.jinja.arguments_as = "string";
  auto as_string = ChatTemplateFor(options);
  REQUIRE(as_string.ok());
  CHECK(RenderPrompt(*as_string, Exchange(), kWeatherTool).value() == "```json\n{\"city\":\"Paris\",\"days\":3}\n```");
}

TEST_CASE("a tokenizer_config.json's other special tokens reach the template, as Hugging Face passes them",
          "[jinja][templates]") {
  nlohmann::json config = {{"bos_token", "<s>"},
                           {"eos_token", "</s>"},
                           {"unk_token", {{"__type", "AddedToken"}, {"content", "<unk>"}}},
                           {"pad_token", nullptr},
                           {"additional_special_tokens", {"<|tool|>", {{"content", "<|end_tool|>"}}}},
                           {"chat_template", "{{ bos_token }}{{ unk_token }}{{ pad_token is defined }}"
                                             "{{ additional_special_tokens | join(',') }}{{ eos_token }}"}};
  auto t = LoadJinjaChatTemplate(config.dump(), "tokenizer_config.json", "");
  REQUIRE(t.ok());
  CHECK(RenderJinjaPrompt(*t, {{"user", "hi", {}, "", ""}}, {}).value() == "<s><unk>False<|tool|>,<|end_tool|></s>");
}
