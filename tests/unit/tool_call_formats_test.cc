// Tool calls read from the text of models served as plain text (Triton), in the formats of
// Mistral, Qwen3-Coder, DeepSeek and gpt-oss (harmony): each split at every point, malformed
// calls marked and never thrown, stop strings cut, plain answers left as text.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
#include <random>
#include <string>
#include <vector>

#include "tests/support/reply_parsing.h"
#include "worker/model/reply_parser.h"

using namespace carapace;
using carapace::testing::ParseAll;
using Catch::Matchers::ContainsSubstring;

namespace {

const std::vector<ToolSchema> kTools = {
    {"get_weather",
     "Weather of a city",
     {{"type", "object"},
      {"properties",
       {{"city", {{"type", "string"}}},
        {"days", {{"type", "integer"}}},
        {"metric", {{"type", "boolean"}}},
        {"hours", {{"type", "array"}}},
        {"options", {{"type", "object"}}},
        {"ratio", {{"type", "number"}}},
        {"note", {{"type", {"string", "null"}}}}}}}},
    {"get_time", "Time in a zone", {{"type", "object"}, {"properties", {{"tz", {{"type", "string"}}}}}}},
};

struct MalformedCase {
  std::string text;
  std::string why;
};

// Every case gives, as its last call, a malformed one saying `why` with the model's text as
// its arguments, the same however it is split, and counted by the parser.
void CheckMalformed(ToolCallFormat format, const std::vector<MalformedCase>& cases) {
  for (const auto& c : cases) {
    INFO(c.text);
    ModelResponse r = ParseAll(c.text, format, {}, kTools);
    REQUIRE_FALSE(r.tool_calls.empty());
    CHECK_THAT(r.tool_calls.back().malformed, ContainsSubstring(c.why));
    CHECK(r.tool_calls.back().arguments.is_string());
    ReplyParser p(format, {}, kTools);
    ChatStream s;
    p.Feed(c.text, &s);
    p.End(&s);
    CHECK(p.malformed_calls() >= 1);
  }
}

// The text deltas an observer sees when `pieces` arrive one by one.
std::vector<std::string> TextDeltas(ToolCallFormat format, const std::vector<std::string>& pieces) {
  std::vector<std::string> deltas;
  ChatStream s([&](const ChatStreamEvent& e) {
    if (e.kind == ChatStreamEvent::Kind::kText) deltas.push_back(e.text);
  });
  ReplyParser p(format, {});
  for (const auto& piece : pieces) p.Feed(piece, &s);
  return deltas;
}

}  // namespace

TEST_CASE("Mistral calls after [TOOL_CALLS] are read in the v11 style, with call ids, split anywhere", "[model]") {
  ModelResponse r = ParseAll(
      "Checking both.[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\", \"days\": 3}"
      "[TOOL_CALLS]get_time[CALL_ID]a1b2c3d4e[ARGS]{\"tz\": \"UTC\"}</s>[TOOL_CALLS]ignored[ARGS]{}",
      ToolCallFormat::kMistral, {"</s>"});
  CHECK(r.text == "Checking both.");
  REQUIRE(r.tool_calls.size() == 2);
  CHECK(r.tool_calls[0].name == "get_weather");
  CHECK(r.tool_calls[0].arguments == nlohmann::json{{"city", "Paris"}, {"days", 3}});
  CHECK(r.tool_calls[1].name == "get_time");
  CHECK(r.tool_calls[1].arguments == nlohmann::json{{"tz", "UTC"}});
  CHECK(r.tool_calls[1].malformed.empty());

  // The first v11 models wrote the arguments right after the name.
  ModelResponse bare = ParseAll("[TOOL_CALLS]get_time{\"tz\": \"CET\"}", ToolCallFormat::kMistral, {});
  REQUIRE(bare.tool_calls.size() == 1);
  CHECK(bare.tool_calls[0].name == "get_time");
  CHECK(bare.tool_calls[0].arguments == nlohmann::json{{"tz", "CET"}});
  CHECK(bare.text.empty());
}

TEST_CASE("Mistral v0.3 calls are a JSON list after [TOOL_CALLS]; their ids are not used", "[model]") {
  ModelResponse r = ParseAll(
      "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"abc123def\"},\n"
      " {\"name\": \"get_time\", \"arguments\": {\"tz\": \"a}b\"}}]</s>",
      ToolCallFormat::kMistral, {"</s>"});
  CHECK(r.text.empty());
  REQUIRE(r.tool_calls.size() == 2);
  CHECK(r.tool_calls[0].name == "get_weather");
  CHECK(r.tool_calls[0].arguments == nlohmann::json{{"city", "Paris"}});
  CHECK(r.tool_calls[0].id.empty());                                  // the runtime assigns ids
  CHECK(r.tool_calls[1].arguments == nlohmann::json{{"tz", "a}b"}});  // a brace inside a string
}

TEST_CASE("a Mistral answer without [TOOL_CALLS] is text, streamed as it arrives", "[model]") {
  ModelResponse r =
      ParseAll("Lists look like [1, 2] and objects like {\"a\": 1}.</s>", ToolCallFormat::kMistral, {"</s>"});
  CHECK(r.tool_calls.empty());
  CHECK(r.text == "Lists look like [1, 2] and objects like {\"a\": 1}.");
  CHECK(TextDeltas(ToolCallFormat::kMistral, {"Hello wor", "ld [TOOL", "_CALLS]f[ARGS]{}"}) ==
        std::vector<std::string>{"Hello wor", "ld "});
}

TEST_CASE("malformed Mistral calls are marked with the reason and the model's text", "[model]") {
  CheckMalformed(
      ToolCallFormat::kMistral,
      {
          {"[TOOL_CALLS]get_weather[ARGS]{\"city\": }", "arguments of \"get_weather\" are not valid JSON"},
          {"[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"", "arguments of \"get_weather\" are not terminated"},
          {"[TOOL_CALLS][ARGS]{\"city\": \"Paris\"}", "has no name"},
          {"[TOOL_CALLS]get_weather", "has no [ARGS]"},
          {"[TOOL_CALLS]get_weather[ARGS]\"Paris\"", "must be a JSON object"},
          {"[TOOL_CALLS][{\"arguments\": {}}]", "has no \"name\""},
          {"[TOOL_CALLS][{\"name\": \"get_time\", \"arguments\": {}}, oops]", "expected a JSON tool call"},
          {"[TOOL_CALLS][{\"name\": \"get_time\"", "not terminated"},
          {"Sure.[TOOL_CALLS]", "not followed by a tool call"},
      });
  // A broken call does not take the next one with it.
  ModelResponse r =
      ParseAll("[TOOL_CALLS]get_weather[ARGS]oops[TOOL_CALLS]get_time[ARGS]{}", ToolCallFormat::kMistral, {});
  REQUIRE(r.tool_calls.size() == 2);
  CHECK_THAT(r.tool_calls[0].malformed, ContainsSubstring("must be a JSON object"));
  CHECK(r.tool_calls[0].arguments == "get_weather[ARGS]oops");
  CHECK(r.tool_calls[1].name == "get_time");
  CHECK(r.tool_calls[1].malformed.empty());
}

TEST_CASE("Qwen3-Coder XML calls take their parameter types from the offered tools' schemas", "[model]") {
  ModelResponse r = ParseAll(
      "Let me check.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
      "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>\nAnd the other one:\n"
      "<tool_call>\n<function=get_weather>\n<parameter=city>\n42\n</parameter>\n<parameter=metric>\nTrue\n</"
      "parameter>\n"
      "<parameter=hours>\n[9, 12]\n</parameter>\n<parameter=options>\n{\"wind\": true}\n</parameter>\n"
      "<parameter=ratio>\n0.5\n</parameter>\n<parameter=note>\nnull\n</parameter>\n</function>\n</tool_call>"
      "<|im_end|>ignored",
      ToolCallFormat::kQwen3Coder, {"<|im_end|>"}, kTools);
  CHECK(r.text == "Let me check.\n\nAnd the other one:\n");
  REQUIRE(r.tool_calls.size() == 2);
  CHECK(r.tool_calls[0].name == "get_weather");
  CHECK(r.tool_calls[0].arguments == nlohmann::json{{"city", "Paris"}, {"days", 3}});
  CHECK(r.tool_calls[0].arguments["days"].is_number_integer());
  const nlohmann::json& a = r.tool_calls[1].arguments;
  CHECK(a["city"] == "42");  // declared a string: stays one
  CHECK(a["metric"] == true);
  CHECK(a["hours"] == nlohmann::json::array({9, 12}));
  CHECK(a["options"] == nlohmann::json{{"wind", true}});
  CHECK(a["ratio"] == 0.5);
  CHECK(a["note"].is_null());
  CHECK(r.tool_calls[1].malformed.empty());
}

TEST_CASE("Qwen3-Coder values are raw text: one newline around them is layout, the rest is kept", "[model]") {
  ModelResponse r = ParseAll(
      "<tool_call>\n<function=get_weather>\n<parameter=city>\n\n  two\n lines \n\n</parameter>\n"
      "<parameter=days>\n2.0\n</parameter></function></tool_call>",
      ToolCallFormat::kQwen3Coder, {}, kTools);
  REQUIRE(r.tool_calls.size() == 1);
  CHECK(r.tool_calls[0].arguments["city"] == "\n  two\n lines \n");
  CHECK(r.tool_calls[0].arguments["days"] == 2);
  CHECK(r.tool_calls[0].arguments["days"].is_number_integer());

  // A tool not offered, or a parameter without a schema: JSON where it reads as JSON.
  ModelResponse untyped = ParseAll(
      "<tool_call><function=other><parameter=n>42</parameter><parameter=s>\nhello world\n</parameter>"
      "<parameter=j>{\"a\": [1]}</parameter></function></tool_call>",
      ToolCallFormat::kQwen3Coder, {}, kTools);
  REQUIRE(untyped.tool_calls.size() == 1);
  CHECK(untyped.tool_calls[0].arguments == nlohmann::json{{"n", 42}, {"s", "hello world"}, {"j", {{"a", {1}}}}});

  // A model that leaves out </parameter> and </function>: each value ends at the next tag.
  ModelResponse loose =
      ParseAll("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n<parameter=days>\n3\n</tool_call>",
               ToolCallFormat::kQwen3Coder, {}, kTools);
  REQUIRE(loose.tool_calls.size() == 1);
  CHECK(loose.tool_calls[0].arguments == nlohmann::json{{"city", "Paris"}, {"days", 3}});
}

TEST_CASE("a Qwen3-Coder answer with tags of its own stays text", "[model]") {
  ModelResponse r = ParseAll("Use <b>bold</b>, <tool> and <function> tags.", ToolCallFormat::kQwen3Coder, {}, kTools);
  CHECK(r.tool_calls.empty());
  CHECK(r.text == "Use <b>bold</b>, <tool> and <function> tags.");
}

TEST_CASE("malformed Qwen3-Coder calls name the parameter whose value does not fit its type", "[model]") {
  CheckMalformed(
      ToolCallFormat::kQwen3Coder,
      {
          {"<tool_call><function=get_weather><parameter=days>three</parameter></function></tool_call>",
           "the parameter \"days\" of \"get_weather\" must be an integer, not \"three\""},
          {"<tool_call><function=get_weather><parameter=days>2.5</parameter></function></tool_call>",
           "\"days\" of \"get_weather\" must be an integer"},
          {"<tool_call><function=get_weather><parameter=metric>yes</parameter></function></tool_call>",
           "\"metric\" of \"get_weather\" must be a boolean"},
          {"<tool_call><function=get_weather><parameter=hours>{\"a\": 1}</parameter></function></tool_call>",
           "\"hours\" of \"get_weather\" must be an array"},
          {"<tool_call><function=get_weather><parameter=options>[1, </parameter></function></tool_call>",
           "\"options\" of \"get_weather\" must be an object"},
          {"<tool_call><function=get_weather><parameter=ratio>half</parameter></function></tool_call>",
           "\"ratio\" of \"get_weather\" must be a number"},
          {"<tool_call><function=><parameter=city>Paris</parameter></function></tool_call>", "has no name"},
          {"<tool_call>{\"name\": \"get_weather\"}</tool_call>", "does not start with <function=NAME>"},
          {"<tool_call><function=get_weather>Paris</function></tool_call>", "expected <parameter=NAME>"},
          {"<tool_call><function=get_weather><parameter=>x</parameter></function></tool_call>", "has no name"},
          {"<tool_call><function=get_time></function><function=get_time></function></tool_call>",
           "one function per <tool_call>"},
          {"<tool_call>\n<function=get_weather>\n<parameter=city>\nParis", "not closed with </tool_call>"},
      });
}

TEST_CASE("DeepSeek V3 calls: the type, the name and fenced JSON, in a block after the text", "[model]") {
  ModelResponse r = ParseAll(
      "Let me look.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
      "{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n"
      "{\"tz\": \"UTC\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>ignored",
      ToolCallFormat::kDeepSeek, {"<｜end▁of▁sentence｜>"});
  CHECK(r.text == "Let me look.\n");
  REQUIRE(r.tool_calls.size() == 2);
  CHECK(r.tool_calls[0].name == "get_weather");
  CHECK(r.tool_calls[0].arguments == nlohmann::json{{"city", "Paris"}});
  CHECK(r.tool_calls[1].name == "get_time");
  CHECK(r.tool_calls[1].arguments == nlohmann::json{{"tz", "UTC"}});
}

TEST_CASE("DeepSeek V3.1 calls: the name, then the JSON, with or without the block tags", "[model]") {
  for (std::string block : {"<｜tool▁calls▁begin｜>", ""}) {
    INFO(block);
    ModelResponse r =
        ParseAll("Two calls." + block +
                     "<｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}<｜tool▁call▁end｜>"
                     "<｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{}<｜tool▁call▁end｜>" +
                     (block.empty() ? "" : "<｜tool▁calls▁end｜>") + "<｜end▁of▁sentence｜>",
                 ToolCallFormat::kDeepSeek, {"<｜end▁of▁sentence｜>"});
    CHECK(r.text == "Two calls.");
    REQUIRE(r.tool_calls.size() == 2);
    CHECK(r.tool_calls[0].name == "get_weather");
    CHECK(r.tool_calls[0].arguments == nlohmann::json{{"city", "Paris"}});
    CHECK(r.tool_calls[1].name == "get_time");
    CHECK(r.tool_calls[1].arguments == nlohmann::json::object());
  }
}

TEST_CASE("a DeepSeek answer without calls is text, streamed up to a possible tag", "[model]") {
  ModelResponse r = ParseAll("Full-width ｜bars｜ and <｜tags｜> are text.", ToolCallFormat::kDeepSeek, {});
  CHECK(r.tool_calls.empty());
  CHECK(r.text == "Full-width ｜bars｜ and <｜tags｜> are text.");
  CHECK(TextDeltas(ToolCallFormat::kDeepSeek, {"Let me", " look.<｜tool▁ca"}) ==
        std::vector<std::string>{"Let me", " look."});
}

TEST_CASE("malformed DeepSeek calls are marked with the reason and the model's text", "[model]") {
  CheckMalformed(
      ToolCallFormat::kDeepSeek,
      {
          {"<｜tool▁call▁begin｜>get_weather{\"city\": \"Paris\"}<｜tool▁call▁end｜>", "has no <｜tool▁sep｜>"},
          {"<｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": <｜tool▁call▁end｜>",
           "arguments of \"get_weather\" are not valid JSON"},
          {"<｜tool▁call▁begin｜><｜tool▁sep｜>{}<｜tool▁call▁end｜>", "has no name"},
          {"<｜tool▁call▁begin｜>function<｜tool▁sep｜>\n```json\n{}\n```<｜tool▁call▁end｜>", "has no name"},
          {"<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time<｜tool▁call▁end｜>",
           "arguments of \"get_time\" are not valid JSON"},
          {"<｜tool▁call▁begin｜>get_time<｜tool▁sep｜>[\"UTC\"]<｜tool▁call▁end｜>",
           "arguments of \"get_time\" must be a JSON object"},
          {"<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{\"tz\": \"UTC\"}",
           "not closed with <｜tool▁call▁end｜>"},
      });
}

TEST_CASE("harmony: reasoning is dropped, a preamble is text, a message to functions.NAME is a call", "[model]") {
  const std::string reply =
      "<|channel|>analysis<|message|>Need the weather in two places.<|end|>"
      "<|start|>assistant<|channel|>commentary<|message|>Checking both cities.<|end|>"
      "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
      "{\"city\": \"Paris\"}<|call|>"
      "<|start|>assistant to=functions.get_time<|channel|>commentary json<|message|>{\"tz\": \"UTC\"}<|call|>";
  // A server that does not stop at <|call|> lets the model go on with another call.
  ModelResponse r = ParseAll(reply, ToolCallFormat::kHarmony, {});
  CHECK(r.text == "Checking both cities.");
  REQUIRE(r.tool_calls.size() == 2);
  CHECK(r.tool_calls[0].name == "get_weather");
  CHECK(r.tool_calls[0].arguments == nlohmann::json{{"city", "Paris"}});
  CHECK(r.tool_calls[1].name == "get_time");  // the recipient stood before the channel
  CHECK(r.tool_calls[1].arguments == nlohmann::json{{"tz", "UTC"}});

  // One that does stops after the first, and may remove the stop string itself: the message
  // cut off by the end of the stream is complete.
  ModelResponse stopped = ParseAll(reply, ToolCallFormat::kHarmony, {"<|call|>", "<|return|>"});
  REQUIRE(stopped.tool_calls.size() == 1);
  CHECK(stopped.tool_calls[0].arguments == nlohmann::json{{"city", "Paris"}});
  ModelResponse cut = ParseAll(reply.substr(0, reply.find("<|call|>")), ToolCallFormat::kHarmony, {});
  REQUIRE(cut.tool_calls.size() == 1);
  CHECK(cut.tool_calls[0].arguments == nlohmann::json{{"city", "Paris"}});

  // The model imagining the tool's answer ends the reply.
  ModelResponse imagined = ParseAll(
      "<|channel|>commentary to=functions.get_time<|message|>{}<|call|><|start|>functions.get_time to=assistant"
      "<|channel|>commentary<|message|>{\"time\": \"noon\"}<|end|><|start|>assistant<|channel|>final<|message|>Noon.",
      ToolCallFormat::kHarmony, {});
  REQUIRE(imagined.tool_calls.size() == 1);
  CHECK(imagined.tool_calls[0].name == "get_time");
  CHECK(imagined.text.empty());
}

TEST_CASE("harmony: the final answer streams as it arrives, and ends at <|return|> or a stop string", "[model]") {
  ModelResponse r = ParseAll(
      "<|channel|>analysis<|message|>Simple arithmetic.<|end|><|start|>assistant<|channel|>final<|message|>"
      "2 + 2 = 4. <|tags|> of my own stay.<|return|><|start|>assistant<|channel|>final<|message|>ignored",
      ToolCallFormat::kHarmony, {});
  CHECK(r.tool_calls.empty());
  CHECK(r.text == "2 + 2 = 4. <|tags|> of my own stay.");
  ModelResponse stop =
      ParseAll("<|channel|>final<|message|>Hi.<|return|>more", ToolCallFormat::kHarmony, {"<|return|>"});
  CHECK(stop.text == "Hi.");
  // Another tool's call (a built-in one) keeps its whole recipient as the name.
  ModelResponse browse = ParseAll("<|channel|>analysis to=browser.search<|message|>{\"query\": \"weather\"}<|call|>",
                                  ToolCallFormat::kHarmony, {});
  REQUIRE(browse.tool_calls.size() == 1);
  CHECK(browse.tool_calls[0].name == "browser.search");
  // A reply that ignores the format altogether is still the answer.
  CHECK(ParseAll("Just text.", ToolCallFormat::kHarmony, {}).text == "Just text.");
  CHECK(ParseAll("<|channel|>analysis<|message|>Thinking, cut off", ToolCallFormat::kHarmony, {}).text.empty());

  CHECK(TextDeltas(ToolCallFormat::kHarmony,
                   {"<|channel|>analysis<|message|>hidden<|end|><|start|>assistant<|channel|>final<|message|>Hel",
                    "lo <|e", "nd|>"}) == std::vector<std::string>{"Hel", "lo "});
}

TEST_CASE("malformed harmony calls are marked with the reason and the model's text", "[model]") {
  CheckMalformed(ToolCallFormat::kHarmony,
                 {
                     {"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": <|call|>",
                      "arguments of \"get_weather\" are not valid JSON"},
                     {"<|channel|>commentary to=functions.get_weather<|message|>[\"Paris\"]<|call|>",
                      "arguments of \"get_weather\" must be a JSON object"},
                     {"<|channel|>commentary to=functions. <|message|>{}<|call|>", "has no name"},
                     {"<|channel|>commentary to=functions.get_weather <|constrain|>js",
                      "call of \"get_weather\" was cut off before its arguments"},
                 });
}

TEST_CASE("replies made of any format's markers read the same however they are split, and never throw", "[model]") {
  const std::vector<std::string> pieces = {
      "<tool_call>", "</tool_call>", "<function=f>", "</function>", "<parameter=n>", "</parameter>", "[TOOL_CALLS]",
      "[ARGS]", "[CALL_ID]", "[", "]", "{", "}", "\"", "\\", ",", "\n", " ", "f", "3", "null", "<｜tool▁calls▁begin｜>",
      "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>", "function", "```json", "<|start|>", "assistant",
      "<|channel|>", "analysis", "final", "commentary", " to=functions.f", "<|constrain|>", "<|message|>", "<|end|>",
      "<|call|>", "<|return|>", "{\"name\": \"f\", \"arguments\": {\"n\": 1}}", "{\"n\": 1}", "</s>", "<|", "｜", "text"};
  std::mt19937 random(20250101);
  for (auto format : {ToolCallFormat::kHermes, ToolCallFormat::kLlama3, ToolCallFormat::kMistral,
                      ToolCallFormat::kQwen3Coder, ToolCallFormat::kDeepSeek, ToolCallFormat::kHarmony}) {
    for (int i = 0; i < 60; ++i) {
      std::string reply;
      for (int n = random() % 30; n > 0; --n) reply += pieces[random() % pieces.size()];
      INFO(ToolCallFormatName(format) << ": " << reply);
      ParseAll(reply, format, {"</s>"}, kTools);
    }
  }
}

TEST_CASE("formats go by their names in template files, and a Jinja template shows which it teaches", "[model]") {
  for (auto f : {ToolCallFormat::kHermes, ToolCallFormat::kLlama3, ToolCallFormat::kMistral,
                 ToolCallFormat::kQwen3Coder, ToolCallFormat::kDeepSeek, ToolCallFormat::kHarmony}) {
    CHECK(ToolCallFormatFromName(ToolCallFormatName(f)) == f);
  }
  CHECK(ToolCallFormatName(ToolCallFormat::kQwen3Coder) == "qwen3-coder");
  CHECK(ToolCallFormatFromName("deepseek") == ToolCallFormat::kDeepSeek);
  CHECK_FALSE(ToolCallFormatFromName("chatml").has_value());
  CHECK_FALSE(ToolCallFormatFromName("").has_value());

  CHECK(DetectToolCallFormat("{%- if message.tool_calls %}[TOOL_CALLS][{{ message.tool_calls|tojson }}]") ==
        ToolCallFormat::kMistral);
  CHECK(DetectToolCallFormat("<tool_call>\n<function={{ tool_call.name }}>\n<parameter={{ name }}>\n") ==
        ToolCallFormat::kQwen3Coder);
  CHECK(DetectToolCallFormat("<tool_call>\n{\"name\": \"{{ tool_call.name }}\", \"arguments\": ...}\n</tool_call>") ==
        ToolCallFormat::kHermes);
  CHECK(DetectToolCallFormat("{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>'}}") ==
        ToolCallFormat::kDeepSeek);
  CHECK(DetectToolCallFormat("{{- \"<|start|>assistant<|channel|>final<|message|>\" }}") == ToolCallFormat::kHarmony);
  CHECK(DetectToolCallFormat("<|start_header_id|>ipython<|end_header_id|> {\"name\": ..., \"parameters\": ...}") ==
        ToolCallFormat::kLlama3);
  CHECK_FALSE(DetectToolCallFormat("<|start_header_id|>{{ message.role }}<|end_header_id|>").has_value());
  CHECK_FALSE(DetectToolCallFormat("<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>").has_value());
}
