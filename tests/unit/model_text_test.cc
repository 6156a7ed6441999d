// The text side of the model backends: chat templates, tool calls parsed from streamed text,
// OpenAI tool-call fragments, server-sent events, and the retry and breaker arithmetic.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <fstream>
#include <set>

#include "common/json_text.h"
#include "common/sse.h"
#include "tests/support/child_process.h"
#include "tests/support/reply_parsing.h"
#include "worker/model/chat_template.h"
#include "worker/model/openai_backend.h"
#include "worker/model/reply_parser.h"
#include "worker/model/resilient_model.h"

using namespace carapace;
using Catch::Matchers::ContainsSubstring;
using carapace::testing::ParseAll;

namespace {

std::vector<Message> Conversation() {
  Message assistant{"assistant", "Let me look.", {}, "", ""};
  assistant.tool_calls.push_back({"s1c0", "read_file", {{"path", "a.txt"}}, ""});
  return {{"system", "Be brief.", {}, "", ""},
          {"user", "What is in a.txt?", {}, "", ""},
          assistant,
          {"tool", "{\"content\":\"hello\"}", {}, "s1c0", "read_file"}};
}

const std::vector<ToolSchema> kTools = {{"read_file", "Reads a file", {{"type", "object"}}}};

}  // namespace

TEST_CASE("ChatML renders roles, tools and earlier tool calls in the Hermes format", "[model]") {
  auto t = BuiltinChatTemplate("chatml");
  REQUIRE(t.ok());
  std::string p = RenderPrompt(*t, Conversation(), kTools).value();
  CHECK(p.rfind("<|im_start|>system\nBe brief.\n\n# Tools", 0) == 0);
  CHECK_THAT(p, ContainsSubstring("<tools>\n{\"function\":{\"description\":\"Reads a file\",\"name\":\"read_file\""));
  CHECK_THAT(p, ContainsSubstring("<|im_start|>user\nWhat is in a.txt?<|im_end|>\n"));
  CHECK_THAT(p, ContainsSubstring("<|im_start|>assistant\nLet me look.\n<tool_call>\n{\"arguments\":{\"path\":\"a.txt\"},\"name\":\"read_file\"}\n</tool_call><|im_end|>\n"));
  CHECK_THAT(p, ContainsSubstring("<|im_start|>user\n<tool_response>\n{\"content\":\"hello\"}\n</tool_response><|im_end|>\n"));
  CHECK(p.size() > 24);
  CHECK(p.substr(p.size() - 22) == "<|im_start|>assistant\n");
}

TEST_CASE("Llama 3 renders headers, ipython results and JSON calls", "[model]") {
  auto t = BuiltinChatTemplate("llama3");
  REQUIRE(t.ok());
  std::string p = RenderPrompt(*t, Conversation(), kTools).value();
  CHECK(p.rfind("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.", 0) == 0);
  CHECK_THAT(p, ContainsSubstring("Respond in the format {\"name\": function name, \"parameters\""));
  CHECK_THAT(p, ContainsSubstring("<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\":\"read_file\",\"parameters\":{\"path\":\"a.txt\"}}<|eot_id|>"));
  CHECK_THAT(p, ContainsSubstring("<|start_header_id|>ipython<|end_header_id|>\n\n{\"content\":\"hello\"}<|eot_id|>"));
  CHECK(p.substr(p.size() - 47) == "<|start_header_id|>assistant<|end_header_id|>\n\n");
  CHECK_THAT(BuiltinChatTemplate("mistral").status().message(), ContainsSubstring("built in: chatml, llama3"));
}

TEST_CASE("a template file gives the parts for any other model, and a bad one names the field", "[model]") {
  testing::TempDir dir;
  const std::string path = dir.path() + "/zephyr.yaml";
  std::ofstream(path) << "roles:\n  system: {prefix: \"<|system|>\\n\", suffix: \"</s>\\n\"}\n"
                         "  user: {prefix: \"<|user|>\\n\", suffix: \"</s>\\n\"}\n"
                         "  assistant: {prefix: \"<|assistant|>\\n\", suffix: \"</s>\\n\"}\n"
                         "  tool: {prefix: \"<|user|>\\nResult: \", suffix: \"</s>\\n\"}\n"
                         "generationPrompt: \"<|assistant|>\\n\"\nstop: [\"</s>\"]\ntoolCallFormat: hermes\n";
  auto t = LoadChatTemplateFile(path);
  INFO(t.status().ToString());
  REQUIRE(t.ok());
  std::vector<Message> m = {{"user", "hi", {}, "", ""}};
  CHECK(RenderPrompt(*t, m, {}).value() == "<|user|>\nhi</s>\n<|assistant|>\n");
  CHECK(t->stop == std::vector<std::string>{"</s>"});

  std::ofstream(path) << "roles:\n  user: {prefix: a}\ngenerationPrompt: x\ntoolsPrompt: no placeholder\nstop: [\"\"]\n";
  auto bad = LoadChatTemplateFile(path);
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.status().message(), ContainsSubstring("roles.system: is required"));
  CHECK_THAT(bad.status().message(), ContainsSubstring("toolsPrompt: must contain {tools}"));
  CHECK_THAT(bad.status().message(), ContainsSubstring("stop: must not contain an empty string"));
}

TEST_CASE("Hermes tool calls are parsed from text streamed in any pieces", "[model]") {
  const std::string text =
      "I will read both.\n<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.txt\"}}\n</tool_call>\n"
      "<tool_call>{\"name\": \"read_file\", \"arguments\": \"{\\\"path\\\": \\\"b.txt\\\"}\"}</tool_call><|im_end|>ignored";
  ModelResponse r = ParseAll(text, ToolCallFormat::kHermes, {"<|im_end|>"});
  CHECK(r.text == "I will read both.\n\n");
  REQUIRE(r.tool_calls.size() == 2);
  CHECK(r.tool_calls[0].name == "read_file");
  CHECK(r.tool_calls[0].arguments == nlohmann::json{{"path", "a.txt"}});
  CHECK(r.tool_calls[1].arguments == nlohmann::json{{"path", "b.txt"}});  // arguments given as a JSON string
  CHECK(r.tool_calls[0].malformed.empty());
}

TEST_CASE("text streams out as it arrives; only a possible tag is held back", "[model]") {
  ChatStream s;
  std::vector<std::string> deltas;
  ChatStream observed([&](const ChatStreamEvent& e) {
    if (e.kind == ChatStreamEvent::Kind::kText) deltas.push_back(e.text);
  });
  ReplyParser p(ToolCallFormat::kHermes, {"<|im_end|>"});
  p.Feed("Hello wor", &observed);
  p.Feed("ld <tool", &observed);
  CHECK(deltas == std::vector<std::string>{"Hello wor", "ld "});
  p.Feed("kit> is a word", &observed);  // not a tag after all
  p.End(&observed);
  CHECK(observed.response().text == "Hello world <toolkit> is a word");
}

TEST_CASE("malformed tool calls come back marked, with the model's text, and never throw", "[model]") {
  struct Case {
    std::string text;
    ToolCallFormat format;
    std::string why;
  };
  const std::vector<Case> cases = {
      {"<tool_call>{\"name\": \"read_file\", \"arguments\": {\"path\": </tool_call>", ToolCallFormat::kHermes, "not valid JSON"},
      {"<tool_call>{\"arguments\": {}}</tool_call>", ToolCallFormat::kHermes, "has no \"name\""},
      {"<tool_call>[1, 2]</tool_call>", ToolCallFormat::kHermes, "must be a JSON object"},
      {"<tool_call>{\"name\": \"x\", \"arguments\": [1]}</tool_call>", ToolCallFormat::kHermes, "arguments of \"x\" must be a JSON object"},
      {"<tool_call>{\"name\": \"x\", \"arguments\": {}}", ToolCallFormat::kHermes, "not closed with </tool_call>"},
      {"<|python_tag|>{\"name\": \"x\", \"parameters\": {", ToolCallFormat::kLlama3, "not terminated"},
      {"{\"name\": \"x\", \"parameters\": {}} and then some text", ToolCallFormat::kLlama3, "expected a JSON tool call"},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    ModelResponse r = ParseAll(c.text, c.format, {});
    REQUIRE_FALSE(r.tool_calls.empty());
    CHECK_THAT(r.tool_calls.back().malformed, ContainsSubstring(c.why));
    CHECK(r.tool_calls.back().arguments.is_string());
  }
}

TEST_CASE("Llama 3 calls are the whole reply; a plain answer or a JSON answer stays text", "[model]") {
  ModelResponse calls = ParseAll("<|python_tag|>{\"name\": \"a\", \"parameters\": {\"x\": 1}}; {\"name\": \"b\", \"parameters\": {}}<|eom_id|>",
                                 ToolCallFormat::kLlama3, {"<|eot_id|>", "<|eom_id|>"});
  REQUIRE(calls.tool_calls.size() == 2);
  CHECK(calls.tool_calls[0].name == "a");
  CHECK(calls.tool_calls[0].arguments == nlohmann::json{{"x", 1}});
  CHECK(calls.tool_calls[1].name == "b");
  CHECK(calls.text.empty());

  ModelResponse text = ParseAll("  The answer is 42.<|eot_id|>", ToolCallFormat::kLlama3, {"<|eot_id|>"});
  CHECK(text.tool_calls.empty());
  CHECK(text.text == "  The answer is 42.");
  ModelResponse json = ParseAll("{\"answer\": 42}", ToolCallFormat::kLlama3, {});
  CHECK(json.tool_calls.empty());
  CHECK(json.text == "{\"answer\": 42}");
}

TEST_CASE("OpenAI tool-call fragments join by index, and by id where a server reuses an index", "[model]") {
  ToolCallFragments f;
  f.Add({{"index", 0}, {"id", "call_a"}, {"type", "function"}, {"function", {{"name", "read_file"}, {"arguments", ""}}}});
  f.Add({{"index", 0}, {"function", {{"arguments", "{\"pa"}}}});
  f.Add({{"index", 1}, {"id", "call_b"}, {"function", {{"name", "list"}, {"arguments", "{}"}}}});
  f.Add({{"index", 0}, {"function", {{"arguments", "th\": \"a\"}"}}}});
  // A server that numbers every call 0: a new id starts a new call.
  f.Add({{"index", 0}, {"id", "call_c"}, {"function", {{"name", "write"}, {"arguments", "{\"x\":"}}}});
  f.Add({{"index", 0}, {"function", {{"arguments", "1}"}}}});
  f.Add({{"index", 2}, {"id", "call_d"}, {"function", {{"name", "broken"}, {"arguments", "{\"x\": "}}}});
  auto calls = f.Finish();
  REQUIRE(calls.size() == 4);
  CHECK(calls[0].name == "read_file");
  CHECK(calls[0].arguments == nlohmann::json{{"path", "a"}});
  CHECK(calls[1].name == "list");
  CHECK(calls[2].name == "write");
  CHECK(calls[2].arguments == nlohmann::json{{"x", 1}});
  CHECK_THAT(calls[3].malformed, ContainsSubstring("arguments of \"broken\" are not a JSON object"));
  CHECK(calls[3].arguments == "{\"x\": ");
}

TEST_CASE("messages go to the OpenAI API with tool calls and results linked by id", "[model]") {
  nlohmann::json m = OpenAiMessages(Conversation());
  REQUIRE(m.size() == 4);
  CHECK(m[2]["tool_calls"][0]["id"] == "s1c0");
  CHECK(m[2]["tool_calls"][0]["function"]["arguments"] == "{\"path\":\"a.txt\"}");
  CHECK(m[3]["role"] == "tool");
  CHECK(m[3]["tool_call_id"] == "s1c0");
  // Servers parse earlier calls' arguments: a malformed one goes back as {}.
  std::vector<Message> bad = Conversation();
  bad[2].tool_calls[0].arguments = "{\"path\": ";
  bad[2].tool_calls[0].malformed = "not valid JSON";
  CHECK(OpenAiMessages(bad)[2]["tool_calls"][0]["function"]["arguments"] == "{}");
}

TEST_CASE("server-sent events decode the same whatever the network splits", "[model]") {
  const std::string body = ": comment\ndata: {\"a\":1}\n\ndata: two\r\ndata: lines\r\n\r\nevent: x\ndata: [DONE]\n\n";
  const std::vector<std::string> expected = {"{\"a\":1}", "two\nlines", "[DONE]"};
  CHECK(ParseSseData(body) == std::optional<std::vector<std::string>>(expected));
  for (size_t cut = 0; cut <= body.size(); ++cut) {
    SseDecoder d;
    auto events = d.Feed(body.substr(0, cut));
    for (auto& e : d.Feed(body.substr(cut))) events.push_back(e);
    for (auto& e : d.Finish()) events.push_back(e);
    INFO("split at " << cut);
    CHECK(events == expected);
  }
}

TEST_CASE("an event or a line over the limit stops the decoder, holding no more than the limit", "[model][limits]") {
  SseDecoder d(1024);
  CHECK(d.Feed("data: small\n\n") == std::vector<std::string>{"small"});
  // A line that never ends, fed in pieces: refused once it passes the limit.
  for (int i = 0; i < 100 && !d.overflowed(); ++i) d.Feed("data: " + std::string(100, 'x'));
  CHECK(d.overflowed());
  CHECK(d.Feed("\n\ndata: later\n\n").empty());  // nothing more is decoded
  // Many short lines that make one long event.
  SseDecoder e(1024);
  for (int i = 0; i < 200 && !e.overflowed(); ++i) e.Feed("data: " + std::string(10, 'y') + "\n");
  CHECK(e.overflowed());
  CHECK_FALSE(ParseSseData("data: " + std::string(2000, 'z') + "\n\n", 1024).has_value());
}

TEST_CASE("JSON from a peer nested past the limit is refused before it is parsed", "[model][limits]") {
  CHECK(JsonNestingDepth("{\"a\": [1, {\"b\": \"[[[[\"}]}") == 3);  // brackets in strings do not count
  CHECK(JsonNestingDepth("\"\\\"[\"") == 0);                        // nor after an escaped quote
  CHECK(ParsePeerJson(std::string(100, '[') + std::string(100, ']')).is_array());
  CHECK(ParsePeerJson(std::string(129, '[') + std::string(129, ']')).is_discarded());
  CHECK(ParsePeerJson(std::string(100000, '[')).is_discarded());  // would cost the stack to dump or compare
  CHECK(ParsePeerJson("{\"a\":1}") == nlohmann::json{{"a", 1}});
  CHECK(ParsePeerJson("not json").is_discarded());
}

TEST_CASE("the circuit breaker opens after repeated failures and lets one trial through later", "[model]") {
  using namespace std::chrono_literals;
  CircuitBreaker b(3, 10s);
  auto t0 = CircuitBreaker::Clock::now();
  b.Failure(t0);
  b.Failure(t0);
  CHECK(b.Allow(t0));
  b.Failure(t0);
  CHECK_FALSE(b.Allow(t0 + 5s));
  CHECK(b.open(t0 + 5s));
  CHECK(b.Allow(t0 + 11s));        // half-open: one trial
  CHECK_FALSE(b.Allow(t0 + 11s));  // and only one
  b.Failure(t0 + 12s);             // the trial failed: open again
  CHECK_FALSE(b.Allow(t0 + 13s));
  CHECK(b.Allow(t0 + 23s));
  b.Success();
  CHECK(b.Allow(t0 + 23s));
  CHECK(b.Allow(t0 + 23s));
}

TEST_CASE("backoff grows exponentially, is capped, and is jittered", "[model]") {
  ResilienceOptions o;
  o.retry = RetrySpec{5, 100, 1000};
  ResilientModel m({}, o, nullptr);
  std::set<int64_t> seen;
  for (int i = 0; i < 200; ++i) {
    auto d1 = m.Backoff(1).count();
    auto d3 = m.Backoff(3).count();
    auto d9 = m.Backoff(9).count();
    CHECK(d1 <= 100);
    CHECK(d3 <= 400);
    CHECK(d9 <= 1000);
    seen.insert(d3);
  }
  CHECK(seen.size() > 20);  // full jitter, not a fixed delay
}
