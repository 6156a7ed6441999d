// The model backends against their doubles over loopback: Triton/KServe v2 gRPC and the
// OpenAI-compatible HTTP API. Whole runs with tool calls, streamed fragments, malformed calls,
// server errors before and after the first token, deadlines, failover, a bad API key, the
// circuit breaker, embeddings, health checks, TLS, metrics checked by promtool, and
// `carapace run` on the examples.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>

#include <grpcpp/support/status.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "tests/support/child_process.h"
#include "tests/support/fake_openai.h"
#include "tests/support/fake_triton.h"
#include "tests/support/worker_process.h"
#include "worker/model/resilient_model.h"
#include "worker/runtime/run_loader.h"
#include "worker/cli/status_view.h"
#include "worker/runtime/runner.h"

using namespace carapace;
using carapace::testing::FakeCompletion;
using carapace::testing::FakeOpenAiServer;
using carapace::testing::FakeTritonReply;
using carapace::testing::FakeTritonServer;
using carapace::testing::RunCommand;
using carapace::testing::TempDir;
using Catch::Matchers::ContainsSubstring;
using nlohmann::json;

namespace {

std::string Manifest(const std::string& model, const std::string& extra = "") {
  return "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: m}\nspec:\n"
         "  instructions: You keep notes.\n  goal: Write hello to a.txt.\n"
         "  tools: [{name: notes, kind: workspace}]\n  model:\n" +
         model + extra;
}

std::string TritonModel(const std::string& target, const std::string& more = "", int timeout = 5) {
  return "    backend: triton\n    name: llm\n    endpoint: \"" + target + "\"\n    timeoutSeconds: " + std::to_string(timeout) + "\n" +
         "    retry: {maxAttempts: 3, initialBackoffMs: 1, maxBackoffMs: 5}\n" + more;
}

std::string OpenAiModel(const std::string& url, const std::string& more = "", int timeout = 5) {
  return "    backend: openai\n    name: llm\n    endpoint: \"" + url + "\"\n    timeoutSeconds: " + std::to_string(timeout) + "\n" +
         "    retry: {maxAttempts: 3, initialBackoffMs: 1, maxBackoffMs: 5}\n" + more;
}

struct Outcome {
  Status status;
  RunState state;
  std::vector<Event> events;
  std::vector<Event> Of(const std::string& type) const {
    std::vector<Event> out;
    for (const auto& e : events) if (e.type == type) out.push_back(e);
    return out;
  }
};

// Runs the manifest to its end in a fresh state dir, with model metrics in `metrics`.
Outcome Run(const std::string& yaml, const std::string& dir, prometheus::Registry* metrics = nullptr) {
  Outcome o;
  auto run = ParseAgentRun(yaml, "test.yaml");
  if (!run.ok()) {
    o.status = run.status();
    return o;
  }
  ModelRegistry models;
  RegisterBuiltinModels(&models);
  models.set_metrics(metrics);
  ToolRegistry tools;
  RegisterBuiltinTools(&tools);
  auto store = RunStore::Open(dir, RunStore::OpenMode::kCreateIfMissing);
  REQUIRE(store.ok());
  auto runner = Runner::Create(store->get(), *run, models, tools);
  if (!runner.ok()) {
    o.status = runner.status();
    return o;
  }
  auto phase = (*runner)->Run();
  o.status = phase.status();
  o.state = (*runner)->state();
  auto events = ReadAllEvents(**store);
  REQUIRE(events.ok());
  o.events = *events;
  return o;
}

const std::string kWriteCall = R"(<tool_call>
{"name": "notes", "arguments": {"op": "write", "path": "a.txt", "content": "hello"}}
</tool_call>)";

// Splits text into pieces of n bytes, as a server streams tokens.
std::vector<std::string> Pieces(const std::string& text, size_t n) {
  std::vector<std::string> out;
  for (size_t i = 0; i < text.size(); i += n) out.push_back(text.substr(i, n));
  return out;
}

FakeTritonReply Reply(const std::string& text, size_t piece = 7) {
  FakeTritonReply r;
  r.chunks = Pieces(text, piece);
  return r;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

double MetricValue(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

}  // namespace

TEST_CASE("triton: a multi-step run with streamed tool calls through ModelStreamInfer", "[model][triton]") {
  FakeTritonServer server;
  REQUIRE(server.Start());
  server.Push(Reply("I will write it.\n" + kWriteCall));
  server.Push(Reply("I wrote hello to a.txt.<|im_end|>"));
  TempDir dir;
  prometheus::Registry metrics;
  Outcome o = Run(Manifest(TritonModel(server.target(), "    maxTokens: 64\n    temperature: 0.5\n")), dir.Sub("s"), &metrics);
  INFO(o.status.ToString() << " " << o.state.reason);
  REQUIRE(o.status.ok());
  CHECK(o.state.phase == Phase::kSucceeded);
  CHECK(o.state.result == "I wrote hello to a.txt.");
  CHECK(ReadFile(dir.Sub("s") + "/workspace/a.txt") == "hello");

  auto requests = server.requests();
  REQUIRE(requests.size() == 2);
  CHECK(requests[0].streaming_rpc);
  CHECK(requests[0].stream);
  CHECK(requests[0].empty_final);
  CHECK(requests[0].sampling["max_tokens"] == 64);
  CHECK(requests[0].sampling["temperature"] == 0.5);
  CHECK(requests[0].sampling["stop"][0] == "<|im_end|>");
  CHECK_THAT(requests[0].prompt, ContainsSubstring("<|im_start|>system\nYou keep notes."));
  CHECK_THAT(requests[0].prompt, ContainsSubstring("\"name\":\"notes\""));
  // The second prompt carries the call and its result back to the model.
  CHECK_THAT(requests[1].prompt, ContainsSubstring("<tool_call>\n{\"arguments\":{\"content\":\"hello\",\"op\":\"write\",\"path\":\"a.txt\"},\"name\":\"notes\"}\n</tool_call>"));
  CHECK_THAT(requests[1].prompt, ContainsSubstring("<tool_response>"));

  auto responses = o.Of("model_response");
  REQUIRE(responses.size() == 2);
  CHECK(responses[0].data["answeredBy"] == "triton llm@" + server.target());
  CHECK(responses[0].data["text"] == "I will write it.\n");
  CHECK(responses[0].data["completionTokens"].get<int64_t>() > 0);
  CHECK(o.state.used.tokens > 0);  // estimated usage feeds the token budget
}

TEST_CASE("triton: unary ModelInfer with the tensorrtllm preset and the Llama 3 template", "[model][triton]") {
  FakeTritonServer server;
  REQUIRE(server.Start());
  server.Push(Reply("<|python_tag|>{\"name\": \"notes\", \"parameters\": {\"op\": \"write\", \"path\": \"a.txt\", \"content\": \"hi\"}}<|eom_id|>"));
  server.Push(Reply("Done.<|eot_id|>"));
  TempDir dir;
  Outcome o = Run(Manifest(TritonModel(server.target(), "    maxTokens: 99\n    topP: 0.5\n    triton: {preset: tensorrtllm, template: llama3, stream: false}\n")),
                  dir.Sub("s"));
  INFO(o.status.ToString() << " " << o.state.reason);
  REQUIRE(o.state.phase == Phase::kSucceeded);
  CHECK(o.state.result == "Done.");
  CHECK(ReadFile(dir.Sub("s") + "/workspace/a.txt") == "hi");
  auto requests = server.requests();
  REQUIRE(requests.size() == 2);
  CHECK_FALSE(requests[0].streaming_rpc);
  CHECK_FALSE(requests[0].stream);
  CHECK(requests[0].sampling["max_tokens"] == 99);  // a separate INT32 tensor
  CHECK(requests[0].sampling["top_p"] == 0.5);
  CHECK(requests[0].prompt.rfind("<|begin_of_text|><|start_header_id|>system", 0) == 0);
  CHECK_THAT(requests[1].prompt, ContainsSubstring("<|start_header_id|>ipython<|end_header_id|>"));
}

TEST_CASE("openai: a multi-step run with streamed text and tool-call fragments", "[model][openai]") {
  FakeOpenAiServer server("sk-test-0123456789");
  REQUIRE(server.Start());
  ::setenv("CARAPACE_TEST_OPENAI_KEY", "sk-test-0123456789", 1);
  FakeCompletion first;
  first.content = {"I will ", "write it."};
  first.tool_calls = {{{"index", 0}, {"id", "call_1"}, {"type", "function"}, {"function", {{"name", "notes"}, {"arguments", ""}}}},
                      {{"index", 0}, {"function", {{"arguments", "{\"op\": \"write\", "}}}},
                      {{"index", 0}, {"function", {{"arguments", "\"path\": \"a.txt\", \"content\": \"hello\"}"}}}}};
  server.Push(first);
  FakeCompletion second;
  second.content = {"Wrote ", "hello."};
  server.Push(second);
  TempDir dir;
  prometheus::Registry metrics;
  Outcome o = Run(Manifest(OpenAiModel(server.base_url(), "    apiKey: {valueFrom: {env: CARAPACE_TEST_OPENAI_KEY}}\n    maxTokens: 32\n")),
                  dir.Sub("s"), &metrics);
  INFO(o.status.ToString() << " " << o.state.reason);
  REQUIRE(o.state.phase == Phase::kSucceeded);
  CHECK(o.state.result == "Wrote hello.");
  CHECK(ReadFile(dir.Sub("s") + "/workspace/a.txt") == "hello");
  auto requests = server.requests();
  REQUIRE(requests.size() == 2);
  CHECK(requests[0].path == "/v1/chat/completions");
  CHECK(requests[0].authorization == "Bearer sk-test-0123456789");
  CHECK(requests[0].body["stream"] == true);
  CHECK(requests[0].body["max_tokens"] == 32);
  CHECK(requests[0].body["tool_choice"] == "auto");
  CHECK(requests[0].body["tools"][0]["function"]["name"] == "notes");
  CHECK(requests[1].body["messages"][2]["tool_calls"][0]["function"]["name"] == "notes");
  CHECK(requests[1].body["messages"][3]["role"] == "tool");
  // Usage as the server reported it: 11 + 7 per call.
  CHECK(o.state.used.tokens == 36);
  // Each reply says when its first output came and what it took.
  for (const auto& e : o.Of("model_response")) {
    CHECK(e.data["firstTokenMs"].get<int64_t>() >= 0);
    CHECK(e.data["retries"] == 0);
    CHECK(e.data["answeredBy"] == "openai llm@" + server.base_url());
  }
  // The key is a secret: nowhere in the event log.
  for (const auto& e : o.events) CHECK(e.ToJson().dump().find("sk-test-0123456789") == std::string::npos);
}

TEST_CASE("a malformed tool call goes back to the model as an error and the run goes on", "[model][triton]") {
  FakeTritonServer server;
  REQUIRE(server.Start());
  server.Push(Reply("<tool_call>{\"name\": \"notes\", \"arguments\": {\"op\": \"write\", </tool_call>"));
  server.Push(Reply(kWriteCall));
  server.Push(Reply("Fixed it."));
  TempDir dir;
  prometheus::Registry metrics;
  Outcome o = Run(Manifest(TritonModel(server.target())), dir.Sub("s"), &metrics);
  INFO(o.status.ToString() << " " << o.state.reason);
  REQUIRE(o.state.phase == Phase::kSucceeded);
  auto results = o.Of("tool_result");
  REQUIRE(results.size() == 2);
  CHECK(results[0].data["ok"] == false);
  CHECK_THAT(results[0].data["error"].get<std::string>(), ContainsSubstring("malformed tool call: the tool call is not valid JSON"));
  CHECK(results[1].data["ok"] == true);
  // The model saw its broken call and the error.
  CHECK_THAT(server.requests()[1].prompt, ContainsSubstring("malformed tool call"));
  CHECK(o.state.used.tool_calls == 1);  // the broken call ran nothing
  std::string text = prometheus::TextSerializer().Serialize(metrics.Collect());
  CHECK(MetricValue(text, "carapace_model_malformed_tool_calls_total{backend=\"triton\",model=\"llm\"}") == 1);
}

TEST_CASE("errors before the first token are retried; a stream cut after tokens is asked again whole", "[model]") {
  SECTION("triton") {
    FakeTritonServer server;
    REQUIRE(server.Start());
    FakeTritonReply unavailable;
    unavailable.fail_code = static_cast<int>(grpc::StatusCode::UNAVAILABLE);
    FakeTritonReply busy;
    busy.fail_code = static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED);
    server.Push(unavailable);
    server.Push(busy);
    server.Push(Reply(kWriteCall));
    FakeTritonReply cut = Reply("This reply breaks off half way", 5);
    cut.cut_after = 2;
    server.Push(cut);
    FakeTritonReply unfinished = Reply("This reply never says it is complete", 5);
    unfinished.no_final = true;  // a clean close without the final response is a cut too
    server.Push(unfinished);
    server.Push(Reply("All done."));
    TempDir dir;
    prometheus::Registry metrics;
    Outcome o = Run(Manifest(TritonModel(server.target())), dir.Sub("s"), &metrics);
    INFO(o.status.ToString() << " " << o.state.reason);
    REQUIRE(o.state.phase == Phase::kSucceeded);
    CHECK(o.state.result == "All done.");  // nothing of the broken reply leaked in
    CHECK(server.requests().size() == 6);
    std::string text = prometheus::TextSerializer().Serialize(metrics.Collect());
    CHECK(MetricValue(text, "carapace_model_retries_total{backend=\"triton\",model=\"llm\"}") == 2);
    CHECK(MetricValue(text, "carapace_model_requests_total{backend=\"triton\",model=\"llm\",outcome=\"unavailable\"}") == 1);
    CHECK(MetricValue(text, "carapace_model_requests_total{backend=\"triton\",model=\"llm\",outcome=\"resource_exhausted\"}") == 1);
    CHECK(MetricValue(text, "carapace_model_requests_total{backend=\"triton\",model=\"llm\",outcome=\"aborted\"}") == 2);
    CHECK(MetricValue(text, "carapace_model_requests_total{backend=\"triton\",model=\"llm\",outcome=\"ok\"}") == 2);
  }
  SECTION("openai") {
    FakeOpenAiServer server;
    REQUIRE(server.Start());
    FakeCompletion unavailable;
    unavailable.status = 503;
    FakeCompletion limited;
    limited.status = 429;
    server.Push(unavailable);
    server.Push(limited);
    FakeCompletion cut;
    cut.content = {"This ", "reply ", "breaks ", "off"};
    cut.cut_after = 2;
    server.Push(cut);
    FakeCompletion good;
    good.content = {"All ", "done."};
    server.Push(good);
    TempDir dir;
    Outcome o = Run(Manifest(OpenAiModel(server.base_url())), dir.Sub("s"));
    INFO(o.status.ToString() << " " << o.state.reason);
    REQUIRE(o.state.phase == Phase::kSucceeded);
    CHECK(o.state.result == "All done.");
    CHECK(server.requests().size() == 4);
  }
}

TEST_CASE("a call past its deadline is asked again twice, then the turn waits to try again, with the reason", "[model]") {
  // The model layer does not retry a deadline (that would double the wait); the runtime asks
  // again whole, as for a reply that broke off. After three slow replies the turn waits out
  // what looks like an outage (docs/long-life.md): the run never fails for it.
  SECTION("triton") {
    FakeTritonServer server;
    REQUIRE(server.Start());
    for (int i = 0; i < 3; ++i) {
      FakeTritonReply slow = Reply("too late");
      slow.delay_ms = 1200;
      server.Push(slow);
    }
    TempDir dir;
    Outcome o = Run(Manifest(TritonModel(server.target(), "", 1)), dir.Sub("s"));
    CHECK(o.state.phase == Phase::kRunning);
    CHECK(o.state.model_failures == 1);
    CHECK_THAT(o.state.model_error, ContainsSubstring("Deadline Exceeded"));
    CHECK(o.Of(event_type::kModelUnavailable).size() == 1);
    CHECK(server.requests().size() == 3);
  }
  SECTION("openai: a server that trickles tokens cannot hold the call past its deadline") {
    FakeOpenAiServer server;
    REQUIRE(server.Start());
    for (int i = 0; i < 3; ++i) {
      FakeCompletion slow;
      slow.content = std::vector<std::string>(40, "tok ");
      slow.chunk_delay_ms = 50;  // 2 s in all, each gap far below cpprest's own timeout
      server.Push(slow);
    }
    TempDir dir;
    Outcome o = Run(Manifest(OpenAiModel(server.base_url(), "", 1)), dir.Sub("s"));
    CHECK(o.state.phase == Phase::kRunning);
    CHECK_THAT(o.state.model_error, ContainsSubstring("timed out"));
    CHECK(server.requests().size() == 3);
  }
}

TEST_CASE("an endpoint that cannot answer fails over to the next, and the answer says who gave it", "[model]") {
  FakeOpenAiServer backup;
  REQUIRE(backup.Start());
  FakeCompletion call;
  call.tool_calls = {{{"index", 0}, {"id", "c1"}, {"function", {{"name", "notes"}, {"arguments", "{\"op\":\"write\",\"path\":\"a.txt\",\"content\":\"x\"}"}}}}};
  backup.Push(call);
  FakeCompletion done;
  done.content = {"ok"};
  backup.Push(done);
  const std::string dead = "127.0.0.1:" + std::to_string(testing::FreePort());
  TempDir dir;
  prometheus::Registry metrics;
  // A breaker that stays closed here, so each step retries the dead endpoint in full.
  Outcome o = Run(Manifest(TritonModel(dead, "    circuitBreaker: {failureThreshold: 100}\n    fallbacks:\n      - {backend: openai, name: backup, endpoint: \"" +
                                                 backup.base_url() + "\"}\n")),
                  dir.Sub("s"), &metrics);
  INFO(o.status.ToString() << " " << o.state.reason);
  REQUIRE(o.state.phase == Phase::kSucceeded);
  auto responses = o.Of("model_response");
  REQUIRE(responses.size() == 2);
  CHECK(responses[0].data["answeredBy"] == "openai backup@" + backup.base_url());
  std::string text = prometheus::TextSerializer().Serialize(metrics.Collect());
  CHECK(MetricValue(text, "carapace_model_fallbacks_total{backend=\"triton\",model=\"llm\"}") == 2);
  CHECK(MetricValue(text, "carapace_model_retries_total{backend=\"triton\",model=\"llm\"}") == 4);
}

TEST_CASE("a bad API key holds the turn (Degraded) with a clear reason and no retry storm", "[model][openai]") {
  FakeOpenAiServer server("sk-right-key-123456");
  REQUIRE(server.Start());
  FakeCompletion answer;
  answer.content = {"answered with the right key"};
  server.Push(answer);
  ::setenv("CARAPACE_TEST_WRONG_KEY", "sk-wrong-key-654321", 1);
  ::setenv("CARAPACE_TEST_RIGHT_KEY", "sk-right-key-123456", 1);
  TempDir dir;
  Outcome o = Run(Manifest(OpenAiModel(server.base_url(), "    apiKey: {valueFrom: {env: CARAPACE_TEST_WRONG_KEY}}\n")), dir.Sub("s"));
  CHECK(o.state.phase == Phase::kDegraded);
  CHECK(o.state.degraded_cause == "model_refused");
  CHECK_THAT(o.state.reason, ContainsSubstring("HTTP 401: Incorrect API key provided."));
  CHECK_THAT(o.state.reason, ContainsSubstring("check spec.model.apiKey"));
  CHECK(server.requests().size() == 1);  // not retried
  for (const auto& e : o.events) CHECK(e.ToJson().dump().find("sk-wrong-key-654321") == std::string::npos);

  // A fallback has its own key: a refused key moves on to it, once.
  Outcome f = Run(Manifest(OpenAiModel(server.base_url(), "    apiKey: {valueFrom: {env: CARAPACE_TEST_WRONG_KEY}}\n    fallbacks:\n"
                                                          "      - {backend: openai, name: llm, endpoint: \"" + server.base_url() +
                                                          "\", apiKey: {valueFrom: {env: CARAPACE_TEST_RIGHT_KEY}}}\n")),
                  dir.Sub("f"));
  CHECK(f.state.phase == Phase::kSucceeded);
  CHECK(f.state.result == "answered with the right key");
  CHECK(server.requests().size() == 3);
}

TEST_CASE("a missing API key or template file is reported when the run starts, with the field", "[model]") {
  TempDir dir;
  ::unsetenv("CARAPACE_TEST_NO_SUCH_KEY");
  Outcome o = Run(Manifest(OpenAiModel("http://127.0.0.1:1/v1", "    apiKey: {valueFrom: {env: CARAPACE_TEST_NO_SUCH_KEY}}\n")), dir.Sub("a"));
  CHECK(o.status.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(o.status.message(), ContainsSubstring("spec.model.apiKey: environment variable CARAPACE_TEST_NO_SUCH_KEY is not set"));
  Outcome t = Run(Manifest(TritonModel("127.0.0.1:1", "    triton: {templateFile: /nonexistent/t.yaml}\n")), dir.Sub("b"));
  CHECK(t.status.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(t.status.message(), ContainsSubstring("spec.model.triton.templateFile"));
  Outcome f = Run(Manifest(TritonModel("127.0.0.1:1", "    fallbacks: [{backend: triton, name: x, endpoint: \"127.0.0.1:2\", tls: {caFile: /nonexistent/ca.pem}}]\n")), dir.Sub("c"));
  CHECK_THAT(f.status.message(), ContainsSubstring("spec.model.fallbacks[0].tls.caFile: cannot read /nonexistent/ca.pem"));
}

TEST_CASE("the circuit breaker skips an endpoint that keeps failing", "[model]") {
  FakeTritonServer primary;
  REQUIRE(primary.Start());
  FakeOpenAiServer backup;
  REQUIRE(backup.Start());
  for (int i = 0; i < 5; ++i) {
    FakeTritonReply down;
    down.fail_code = static_cast<int>(grpc::StatusCode::UNAVAILABLE);
    primary.Push(down);
    FakeCompletion ok;
    ok.content = {"backup answer"};
    backup.Push(ok);
  }
  auto run = ParseAgentRun(Manifest(TritonModel(primary.target(),
                                                "    circuitBreaker: {failureThreshold: 2, openSeconds: 60}\n    fallbacks:\n"
                                                "      - {backend: openai, name: b, endpoint: \"" + backup.base_url() + "\"}\n")),
                           "t.yaml");
  REQUIRE(run.ok());
  run->spec.model.retry.max_attempts = 1;
  ModelRegistry models;
  RegisterBuiltinModels(&models);
  auto model = models.Create(*run);
  REQUIRE(model.ok());
  std::vector<Message> messages = {{"user", "hi", {}, "", ""}};
  for (int i = 0; i < 4; ++i) {
    auto r = (*model)->Complete({1, &messages, {}});
    REQUIRE(r.ok());
    CHECK(r->text == "backup answer");
  }
  CHECK(primary.requests().size() == 2);  // after two failures the breaker opened
  CHECK(backup.requests().size() == 4);
}

TEST_CASE("embeddings over Triton (FP32 raw output) and OpenAI /embeddings", "[model]") {
  FakeTritonServer triton;
  REQUIRE(triton.Start());
  FakeOpenAiServer openai;
  REQUIRE(openai.Start());
  const std::vector<std::string> texts = {"paper order", "invoice 42"};
  for (const std::string& backend : {std::string("triton"), std::string("openai")}) {
    INFO(backend);
    const std::string endpoint = backend == "triton" ? triton.target() : openai.base_url();
    auto run = ParseAgentRun("apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: e}\nspec:\n  goal: g\n"
                             "  model: {backend: scripted, script: [{text: x}]}\n"
                             "  embedding: {backend: " + backend + ", name: embedder, endpoint: \"" + endpoint + "\", dimensions: 8}\n",
                             "t.yaml");
    REQUIRE(run.ok());
    ModelRegistry models;
    RegisterBuiltinModels(&models);
    auto embedder = models.CreateEmbedder(*run);
    REQUIRE(embedder.ok());
    auto vectors = (*embedder)->Embed(texts);
    INFO(vectors.status().ToString());
    REQUIRE(vectors.ok());
    REQUIRE(vectors->size() == 2);
    CHECK((*vectors)[0] == testing::FakeEmbedding("paper order", 8));
    CHECK((*vectors)[1] == testing::FakeEmbedding("invoice 42", 8));
  }
  // A service whose vectors do not have the spec's width is a configuration error, named.
  auto run = ParseAgentRun("apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: e}\nspec:\n  goal: g\n"
                           "  model: {backend: scripted, script: [{text: x}]}\n"
                           "  embedding: {backend: triton, name: embedder, endpoint: \"" + triton.target() + "\", dimensions: 16}\n",
                           "t.yaml");
  REQUIRE(run.ok());
  ModelRegistry models;
  RegisterBuiltinModels(&models);
  auto wrong = (*models.CreateEmbedder(*run))->Embed(texts);
  CHECK_THAT(wrong.status().message(), ContainsSubstring("spec.embedding.dimensions is 16"));
}

TEST_CASE("the context window is learned from a Triton model's config parameters; a KServe server without "
          "ModelConfig, or a config naming none, leaves it unknown",
          "[model][triton][context]") {
  ModelRegistry models;
  RegisterBuiltinModels(&models);
  auto learned = [&](FakeTritonServer* server) -> std::optional<int64_t> {
    REQUIRE(server->Start());
    ModelEndpointSpec t;
    t.backend = "triton";
    t.name = "llm";
    t.endpoint = server->target();
    auto backend = models.CreateBackend(t, 8, "spec.model");
    REQUIRE(backend.ok());
    CHECK((*backend)->ContextWindow() == std::nullopt);  // nothing asked yet
    Status health = (*backend)->CheckHealth();
    CHECK(health.ok());
    return (*backend)->ContextWindow();
  };
  FakeTritonServer vllm;
  vllm.SetConfigParameter("max_model_len", "4096");
  CHECK(learned(&vllm) == 4096);
  FakeTritonServer trtllm;
  trtllm.SetConfigParameter("max_seq_len", "32768");
  trtllm.SetConfigParameter("max_beam_width", "1");
  CHECK(learned(&trtllm) == 32768);
  FakeTritonServer unnamed;
  unnamed.SetConfigParameter("max_model_len", "${max_model_len}");  // an unfilled template, as shipped
  CHECK(learned(&unnamed) == std::nullopt);
  FakeTritonServer kserve;
  kserve.SetConfigParameter("max_model_len", "4096");
  kserve.ActAsKServe();
  CHECK(learned(&kserve) == std::nullopt);
}

TEST_CASE("health checks ask ServerReady and ModelReady, or GET /models", "[model]") {
  FakeTritonServer triton;
  REQUIRE(triton.Start());
  FakeOpenAiServer openai;
  REQUIRE(openai.Start());
  ModelRegistry models;
  RegisterBuiltinModels(&models);
  ModelEndpointSpec t;
  t.backend = "triton";
  t.name = "llm";
  t.endpoint = triton.target();
  auto tb = models.CreateBackend(t, 8, "spec.model");
  REQUIRE(tb.ok());
  CHECK((*tb)->CheckHealth().ok());
  triton.set_ready(false);
  CHECK_THAT((*tb)->CheckHealth().message(), ContainsSubstring("not ready"));
  t.name = "other";
  triton.set_ready(true);
  CHECK_THAT((*models.CreateBackend(t, 8, "spec.model"))->CheckHealth().message(), ContainsSubstring("model other is not ready"));
  ModelEndpointSpec o;
  o.backend = "openai";
  o.name = "llm";
  o.endpoint = openai.base_url();
  CHECK((*models.CreateBackend(o, 8, "spec.model"))->CheckHealth().ok());
  o.endpoint = "http://127.0.0.1:" + std::to_string(testing::FreePort()) + "/v1";
  CHECK((*models.CreateBackend(o, 8, "spec.model"))->CheckHealth().code() == StatusCode::kUnavailable);
}

TEST_CASE("triton over TLS with a CA file and a client certificate", "[model][triton]") {
  TempDir dir;
  auto sh = [&](const std::string& cmd) {
    auto r = RunCommand({"/bin/sh", "-c", "cd " + dir.path() + " && " + cmd});
    INFO(cmd << "\n" << r.err);
    REQUIRE(r.exit_code == 0);
  };
  // A throwaway CA that signs a server certificate for localhost and a client certificate.
  sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=test-ca 2>/dev/null");
  sh("openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null");
  sh("printf 'subjectAltName=DNS:localhost\\n' > san.ext && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key "
     "-CAcreateserial -out server.pem -days 1 -extfile san.ext 2>/dev/null");
  sh("openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=worker 2>/dev/null");
  sh("openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 1 2>/dev/null");
  testing::FakeTritonTls tls{ReadFile(dir.Sub("server.pem")), ReadFile(dir.Sub("server.key")), ReadFile(dir.Sub("ca.pem"))};
  FakeTritonServer server;
  REQUIRE(server.Start(&tls));
  server.Push(Reply("over TLS"));
  const std::string target = "localhost:" + server.target().substr(server.target().find(':') + 1);
  const std::string files = "    tls: {caFile: " + dir.Sub("ca.pem") + ", certFile: " + dir.Sub("client.pem") +
                            ", keyFile: " + dir.Sub("client.key") + "}\n";
  Outcome o = Run(Manifest(TritonModel(target, files)), dir.Sub("s"));
  INFO(o.status.ToString() << " " << o.state.reason);
  CHECK(o.state.phase == Phase::kSucceeded);
  CHECK(o.state.result == "over TLS");
  // Without the client certificate the server refuses the connection.
  server.Push(Reply("never"));
  Outcome refused = Run(Manifest(TritonModel(target, "    tls: {caFile: " + dir.Sub("ca.pem") + "}\n    retry: {maxAttempts: 1}\n")),
                        dir.Sub("t"));
  // A refused handshake is the endpoint's trouble (UNAVAILABLE): the turn waits to try again.
  CHECK(refused.state.phase == Phase::kRunning);
  CHECK(refused.state.model_failures == 1);
}

TEST_CASE("the model metrics pass promtool check metrics", "[model][metrics]") {
  FakeTritonServer server;
  REQUIRE(server.Start());
  server.Push(Reply(kWriteCall));
  server.Push(Reply("done"));
  TempDir dir;
  prometheus::Registry metrics;
  Outcome o = Run(Manifest(TritonModel(server.target())), dir.Sub("s"), &metrics);
  REQUIRE(o.state.phase == Phase::kSucceeded);
  const std::string text = prometheus::TextSerializer().Serialize(metrics.Collect());
  for (const char* name : {"carapace_model_requests_total", "carapace_model_request_duration_seconds",
                           "carapace_model_time_to_first_token_seconds", "carapace_model_tokens_total",
                           "carapace_model_retries_total", "carapace_model_fallbacks_total"}) {
    INFO(name);
    CHECK_THAT(text, ContainsSubstring(std::string("# TYPE ") + name));
  }
  CHECK(MetricValue(text, "carapace_model_requests_total{backend=\"triton\",model=\"llm\",outcome=\"ok\"}") == 2);
  CHECK(MetricValue(text, "carapace_model_time_to_first_token_seconds_count{backend=\"triton\",model=\"llm\"}") == 2);
  CHECK(MetricValue(text, "carapace_model_tokens_total{backend=\"triton\",direction=\"prompt\",model=\"llm\"}") > 0);
  // No call failed, yet the error outcomes are there at 0: the first failure of a process
  // is then a rise from 0 that rate() sees, not a series appearing at 1.
  for (const char* outcome : {"unavailable", "deadline_exceeded", "permission_denied", "resource_exhausted", "not_found",
                              "invalid_argument"}) {
    INFO(outcome);
    CHECK(MetricValue(text, std::string("carapace_model_requests_total{backend=\"triton\",model=\"llm\",outcome=\"") +
                                outcome + "\"}") == 0);
  }
  std::ofstream(dir.Sub("metrics.txt")) << text;
  auto check = RunCommand({"/bin/sh", "-c", std::string(PROMTOOL_BIN) + " check metrics < " + dir.Sub("metrics.txt")});
  INFO(check.out << check.err);
  CHECK(check.exit_code == 0);
}

TEST_CASE("carapace run works end to end on the triton and openai examples", "[model][cli]") {
  TempDir dir;
  auto example = [&](const std::string& name, const std::string& from, const std::string& to) {
    std::string text = ReadFile(std::string(CARAPACE_SOURCE_DIR) + "/examples/" + name);
    size_t at = text.find(from);
    REQUIRE(at != std::string::npos);
    text.replace(at, from.size(), to);
    std::ofstream(dir.Sub(name)) << text;
    return dir.Sub(name);
  };
  FakeTritonServer triton("qwen2.5-7b-instruct");
  REQUIRE(triton.Start());
  triton.Push(Reply(kWriteCall));
  triton.Push(Reply("I wrote hello to a.txt."));
  auto t = RunCommand({CARAPACE_BIN, "run", example("triton-agent.yaml", "127.0.0.1:8001", triton.target()), "--state-dir", dir.Sub("t")});
  INFO(t.out << t.err);
  CHECK(t.exit_code == 0);
  CHECK_THAT(t.out, ContainsSubstring("I wrote hello to a.txt."));
  CHECK_THAT(t.out, ContainsSubstring("model triton qwen2.5-7b-instruct@" + triton.target() + ": first token "));
  CHECK(ReadFile(dir.Sub("t") + "/workspace/a.txt") == "hello");

  FakeOpenAiServer openai("sk-example-key-42");
  REQUIRE(openai.Start());
  FakeCompletion call;
  call.tool_calls = {{{"index", 0}, {"id", "c1"}, {"function", {{"name", "notes"}, {"arguments", "{\"op\":\"write\",\"path\":\"a.txt\",\"content\":\"hi\"}"}}}}};
  openai.Push(call);
  FakeCompletion done;
  done.content = {"I wrote hi."};
  openai.Push(done);
  const std::string spec = example("openai-agent.yaml", "http://127.0.0.1:8000/v1", openai.base_url());
  auto o = RunCommand({"/usr/bin/env", "OPENAI_API_KEY=sk-example-key-42", CARAPACE_BIN, "run", spec, "--state-dir", dir.Sub("o")});
  INFO(o.out << o.err);
  CHECK(o.exit_code == 0);
  CHECK_THAT(o.out, ContainsSubstring("I wrote hi."));
  CHECK(o.err.find("sk-example-key-42") == std::string::npos);
  CHECK(o.out.find("sk-example-key-42") == std::string::npos);
}

namespace {
// A reply the vLLM backend stopped at max_tokens: its finish_reason says "length".
FakeTritonReply CutAtMaxTokens(const std::string& text) {
  FakeTritonReply r = Reply(text);
  r.finish_reason = "length";
  return r;
}
}  // namespace

TEST_CASE("triton: a reply the vLLM backend cut at max_tokens is not an answer; older servers are not sent the input",
          "[model][triton][cut]") {
  SECTION("the model declares return_finish_reason: asked for it, and a cut reply is asked again") {
    FakeTritonServer server;
    server.DeclareFinishReason();
    REQUIRE(server.Start());
    server.Push(CutAtMaxTokens("I will write the file <tool_call>\n{\"name\": \"no"));
    server.Push(Reply("All written."));
    TempDir dir;
    Outcome o = Run(Manifest(TritonModel(server.target())), dir.Sub("s"));
    INFO(o.status.ToString() << " " << o.state.reason);
    CHECK(o.state.phase == Phase::kSucceeded);
    CHECK(o.state.result == "All written.");
    CHECK(o.Of(event_type::kModelReplyCut).size() == 1);
    REQUIRE(server.requests().size() == 2);
    CHECK(server.requests()[0].return_finish_reason);
  }
  SECTION("cut twice: the run fails, never succeeds with the fragment") {
    FakeTritonServer server;
    server.DeclareFinishReason();
    REQUIRE(server.Start());
    server.Push(CutAtMaxTokens("The answer is"));
    server.Push(CutAtMaxTokens("The answer is"));
    TempDir dir;
    Outcome o = Run(Manifest(TritonModel(server.target())), dir.Sub("s"));
    CHECK(o.state.phase == Phase::kFailed);
    CHECK_THAT(o.state.reason, ContainsSubstring("cut short twice (finish_reason \"length\")"));
  }
  SECTION("unary ModelInfer too") {
    FakeTritonServer server;
    server.DeclareFinishReason();
    REQUIRE(server.Start());
    server.Push(CutAtMaxTokens("The answer is"));
    server.Push(Reply("The answer is 42."));
    TempDir dir;
    Outcome o = Run(Manifest(TritonModel(server.target(), "    triton: {stream: false}\n")), dir.Sub("s"));
    CHECK(o.state.phase == Phase::kSucceeded);
    CHECK(o.state.result == "The answer is 42.");
  }
  SECTION("a model that does not declare it (before r24.12) is not sent the input, which it would refuse") {
    FakeTritonServer server;
    REQUIRE(server.Start());
    server.Push(Reply("Done."));
    TempDir dir;
    Outcome o = Run(Manifest(TritonModel(server.target())), dir.Sub("s"));
    CHECK(o.state.phase == Phase::kSucceeded);
    REQUIRE(server.requests().size() == 1);
    CHECK_FALSE(server.requests()[0].return_finish_reason_sent);
  }
}

TEST_CASE("triton: the vLLM backend's token counts are used when the model declares them, estimated otherwise, "
          "and never sent to a model that would refuse them",
          "[model][triton][tokens]") {
  ModelRegistry models;
  RegisterBuiltinModels(&models);
  const std::vector<Message> prompt = {{"system", "You are terse.", {}, "", ""},
                                       {"user", "Count the tokens of this question, please.", {}, "", ""}};
  auto complete = [&](FakeTritonServer* server, bool stream) -> ModelResponse {
    ModelEndpointSpec t;
    t.backend = "triton";
    t.name = "llm";
    t.endpoint = server->target();
    t.triton.stream = stream;
    auto backend = models.CreateBackend(t, 8, "spec.model");
    REQUIRE(backend.ok());
    auto reply = (*backend)->Complete(ModelRequest{1, &prompt, {}});
    INFO(reply.status().ToString());
    REQUIRE(reply.ok());
    return *reply;
  };
  const std::string answer = "Nine tokens, give or take a few of them.";
  for (bool stream : {true, false}) {
    DYNAMIC_SECTION((stream ? "ModelStreamInfer" : "unary ModelInfer")) {
      FakeTritonServer counting;
      counting.DeclareTokenCounts();
      REQUIRE(counting.Start());
      counting.Push(Reply(answer));
      ModelResponse counted = complete(&counting, stream);
      REQUIRE(counting.requests().size() == 1);
      const testing::FakeTritonRequest asked = counting.requests()[0];
      CHECK(asked.return_num_input_tokens);
      CHECK(asked.return_num_output_tokens);
      // The server's own counts, not the 4-bytes-a-token estimate; a stream's per-response
      // counts summed (each chunk of Reply() is counted on its own, so the sum differs from
      // counting the whole text).
      CHECK(counted.prompt_tokens == FakeTritonServer::CountTokens(asked.prompt));
      CHECK(counted.prompt_tokens != EstimateTokens(asked.prompt.size()));
      int64_t expected_output = 0;
      if (stream) {
        for (const auto& chunk : Reply(answer).chunks) expected_output += FakeTritonServer::CountTokens(chunk);
      } else {
        expected_output = FakeTritonServer::CountTokens(answer);
      }
      CHECK(counted.completion_tokens == expected_output);
      CHECK(counted.text == answer);
      CHECK_FALSE(counted.tokens_estimated);

      // A model whose config does not declare them (before the vLLM backend offered them,
      // or another backend) is not sent the inputs (Triton would refuse the request), and
      // the counts are estimated.
      FakeTritonServer older;
      REQUIRE(older.Start());
      older.Push(Reply(answer));
      ModelResponse estimated = complete(&older, stream);
      REQUIRE(older.requests().size() == 1);
      CHECK_FALSE(older.requests()[0].token_counts_sent);
      CHECK(estimated.prompt_tokens == EstimateTokens(older.requests()[0].prompt.size()));
      CHECK(estimated.text == answer);
      CHECK(estimated.tokens_estimated);
    }
  }
  SECTION("a run records which it was, and `status` says when counts are estimated") {
    FakeTritonServer counting;
    counting.DeclareTokenCounts();
    REQUIRE(counting.Start());
    counting.Push(Reply("Counted."));
    TempDir dir;
    Outcome counted = Run(Manifest(TritonModel(counting.target())), dir.Sub("counted"));
    REQUIRE(counted.state.phase == Phase::kSucceeded);
    CHECK_FALSE(counted.state.tokens_estimated);
    REQUIRE(counted.Of(event_type::kModelResponse).size() == 1);
    CHECK(counted.Of(event_type::kModelResponse)[0].data["promptTokens"] ==
          FakeTritonServer::CountTokens(counting.requests()[0].prompt));
    FakeTritonServer older;
    REQUIRE(older.Start());
    older.Push(Reply("Estimated."));
    Outcome estimated = Run(Manifest(TritonModel(older.target())), dir.Sub("estimated"));
    REQUIRE(estimated.state.phase == Phase::kSucceeded);
    CHECK(estimated.state.tokens_estimated);
    CHECK(estimated.Of(event_type::kModelResponse)[0].data.value("tokensEstimated", false));
    RunIdentity id;
    id.name = "estimated";
    const BudgetSpec budget;
    CHECK_THAT(LongLifeLines(BuildRunStatus(id, estimated.state, &budget)), ContainsSubstring("token counts estimated"));
    CHECK_THAT(LongLifeLines(BuildRunStatus(id, counted.state, &budget)), !ContainsSubstring("token counts estimated"));
  }
}

namespace {

// Runs the notes agent with `triton` settings against a double that gives `replies`;
// checks that it wrote `content` to a.txt and answered `result`; returns what it was asked.
std::vector<carapace::testing::FakeTritonRequest> RunFamily(const std::string& triton, const std::vector<std::string>& replies,
                                                            const std::string& content, const std::string& result) {
  FakeTritonServer server;
  REQUIRE(server.Start());
  for (const auto& r : replies) server.Push(Reply(r));
  TempDir dir;
  Outcome o = Run(Manifest(TritonModel(server.target(), "    triton: " + triton + "\n")), dir.Sub("s"));
  INFO(o.status.ToString() << " " << o.state.reason);
  REQUIRE(o.state.phase == Phase::kSucceeded);
  CHECK(o.state.result == result);
  CHECK(ReadFile(dir.Sub("s") + "/workspace/a.txt") == content);
  auto requests = server.requests();
  REQUIRE(requests.size() == replies.size());
  return requests;
}

}  // namespace

TEST_CASE("triton: model families end to end: Qwen3-Coder's XML calls, Qwen3's reasoning, Mistral's [TOOL_CALLS] "
          "with special tokens kept, gpt-oss's harmony channels",
          "[model][triton][families]") {
  SECTION("qwen3-coder") {
    auto requests = RunFamily("{family: qwen3-coder}",
                              {"I will write it.\n<tool_call>\n<function=notes>\n<parameter=op>\nwrite\n</parameter>\n"
                               "<parameter=path>\na.txt\n</parameter>\n<parameter=content>\nhello\n</parameter>\n</function>\n</tool_call>",
                               "Written."},
                              "hello", "Written.");
    CHECK_THAT(requests[0].prompt, ContainsSubstring("<tools>\n<function>\n<name>notes</name>"));
    // The call goes back to the model the way it wrote it, and the result as a tool_response.
    CHECK_THAT(requests[1].prompt, ContainsSubstring("<function=notes>\n<parameter=content>\nhello\n</parameter>"));
    CHECK_THAT(requests[1].prompt, ContainsSubstring("<|im_start|>user\n<tool_response>\n"));
    CHECK(requests[0].sampling["stop"] == json({"<|im_end|>", "<|endoftext|>"}));
    CHECK_FALSE(requests[0].sampling.contains("skip_special_tokens"));
  }
  SECTION("qwen3: the reasoning before the answer is not the answer") {
    RunFamily("{family: qwen3}",
              {"<think>\nThe user wants a file.\n</think>\n\n<tool_call>\n{\"name\": \"notes\", \"arguments\": "
               "{\"op\": \"write\", \"path\": \"a.txt\", \"content\": \"q\"}}\n</tool_call>",
               "<think>\nDone; say so.\n</think>\n\nWritten.<|im_end|>"},
              "q", "Written.");
  }
  SECTION("mistral") {
    auto requests = RunFamily(
        "{family: mistral}",
        {"[TOOL_CALLS] [{\"name\": \"notes\", \"arguments\": {\"op\": \"write\", \"path\": \"a.txt\", \"content\": \"hi\"}}]</s>",
         "Done.</s>"},
        "hi", "Done.");
    // vLLM would drop [TOOL_CALLS] from the text otherwise.
    CHECK(requests[0].sampling["skip_special_tokens"] == false);
    CHECK(requests[0].prompt.rfind("<s>[AVAILABLE_TOOLS] [{\"type\": \"function\"", 0) == 0);
    CHECK_THAT(requests[1].prompt, ContainsSubstring("[TOOL_RESULTS] {\"content\": "));
  }
  SECTION("gpt-oss") {
    auto requests = RunFamily(
        "{family: gpt-oss, templateVariables: {reasoning_effort: high}}",
        {"<|channel|>analysis<|message|>The user wants a note.<|end|><|start|>assistant<|channel|>commentary "
         "to=functions.notes <|constrain|>json<|message|>{\"op\": \"write\", \"path\": \"a.txt\", \"content\": \"oss\"}",
         "<|channel|>analysis<|message|>Done, say so.<|end|><|start|>assistant<|channel|>final<|message|>Noted."},
        "oss", "Noted.");  // the analysis channel is never the answer
    CHECK_THAT(requests[0].prompt, ContainsSubstring("Reasoning: high"));
    CHECK_THAT(requests[0].prompt, ContainsSubstring("type notes = (_: {"));
    CHECK_THAT(requests[1].prompt, ContainsSubstring("<|start|>functions.notes to=assistant<|channel|>commentary<|message|>"));
    CHECK(requests[0].sampling["stop"] == json({"<|return|>", "<|call|>"}));
  }
}

TEST_CASE("triton: a chat template that refuses the conversation holds the turn with its message and place",
          "[model][triton][families]") {
  FakeTritonServer server;
  REQUIRE(server.Start());
  server.Push(Reply("never asked"));
  TempDir dir;
  const std::string model = TritonModel(server.target(),
                                        "    triton:\n      chatTemplate:\n        inline: |\n"
                                        "          {%- for m in messages %}{{ m.content }}{% endfor %}\n"
                                        "          {%- if tools %}{{ raise_exception('this model takes no tools') }}{% endif %}\n");
  Outcome o = Run(Manifest(model), dir.Sub("s"));
  CHECK(o.state.phase == Phase::kDegraded);
  CHECK(o.state.degraded_cause == "model_refused");
  CHECK_THAT(o.state.reason, ContainsSubstring("the chat template refused the conversation: chatTemplate.inline:2:"));
  CHECK_THAT(o.state.reason, ContainsSubstring("this model takes no tools"));
  CHECK(server.requests().empty());  // nothing was sent

  // A template the worker cannot render is refused when the run starts, with its place.
  const std::string unknown = TritonModel(server.target(), "    triton: {chatTemplate: {inline: \"{{ messages | frobnicate }}\"}}\n");
  Outcome bad = Run(Manifest(unknown), dir.Sub("bad"));
  CHECK_FALSE(bad.status.ok());
  CHECK_THAT(bad.status.message(), ContainsSubstring("chatTemplate.inline:1:15: unknown filter 'frobnicate'"));
}

TEST_CASE("triton: renamed additional outputs, and an output length sent unasked (TensorRT-LLM) are read; Triton "
          "refuses outputs a model does not declare",
          "[model][triton][tokens]") {
  ModelRegistry models;
  RegisterBuiltinModels(&models);
  const std::vector<Message> prompt = {{"user", "Say something long.", {}, "", ""}};
  auto complete = [&](FakeTritonServer* server, const std::string& count_name, int64_t max_tokens) {
    ModelEndpointSpec t;
    t.backend = "triton";
    t.name = "llm";
    t.endpoint = server->target();
    t.max_tokens = max_tokens;
    if (!count_name.empty()) t.triton.tensors.num_output_tokens = count_name;
    auto backend = models.CreateBackend(t, 8, "spec.model");
    REQUIRE(backend.ok());
    return (*backend)->Complete(ModelRequest{1, &prompt, {}});
  };
  const std::string text = "twelve bytes" + std::string(24, '.');  // 36 bytes: 12 tokens by the double's count
  SECTION("an output length named in tensors.numOutputTokens is asked for and summed over the stream") {
    FakeTritonServer server;
    server.DeclareOutputLength("output_lengths");
    REQUIRE(server.Start());
    server.Push(Reply(text, 6));
    auto reply = complete(&server, "output_lengths", 1024);
    REQUIRE(reply.ok());
    CHECK(reply->completion_tokens == 12);
    CHECK(reply->finish_reason == "stop");
    REQUIRE(server.requests().size() == 1);
    CHECK(server.requests()[0].outputs == std::vector<std::string>{"text_output", "output_lengths"});
  }
  SECTION("a reply that used every allowed token is cut short, though the server gives no reason") {
    FakeTritonServer server;
    server.DeclareOutputLength("output_lengths");
    REQUIRE(server.Start());
    server.Push(Reply(text, 6));
    auto reply = complete(&server, "output_lengths", 12);
    REQUIRE(reply.ok());
    CHECK(reply->finish_reason == "length");
  }
  SECTION("a model that does not declare the output is not asked for it (Triton would refuse the request)") {
    FakeTritonServer server;
    REQUIRE(server.Start());
    server.Push(Reply(text, 6));
    auto reply = complete(&server, "output_lengths", 1024);
    REQUIRE(reply.ok());
    CHECK(reply->tokens_estimated);
    CHECK(server.requests()[0].outputs == std::vector<std::string>{"text_output"});
  }
}

TEST_CASE("carapace validate loads each triton endpoint's chat template as the worker will, before it is deployed",
          "[model][cli][families]") {
  TempDir dir;
  auto manifest = [&](const std::string& name, const std::string& triton) {
    std::ofstream(dir.Sub(name)) << Manifest(TritonModel("triton:8001", "    triton: " + triton + "\n"));
    return dir.Sub(name);
  };
  std::ofstream(dir.Sub("bad.jinja")) << "{% for m in messages %}\n{{ m.content | frobnicate }}\n{% endfor %}";
  auto bad = RunCommand({CARAPACE_BIN, "validate", manifest("bad.yaml", "{chatTemplate: {file: " + dir.Sub("bad.jinja") + "}}")});
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, ContainsSubstring("spec.model: triton.chatTemplate: " + dir.Sub("bad.jinja") + ":2:16: unknown filter 'frobnicate'"));

  auto good = RunCommand({CARAPACE_BIN, "validate", manifest("good.yaml", "{family: gpt-oss}")});
  INFO(good.out << good.err);
  CHECK(good.exit_code == 0);
  CHECK_THAT(good.out, ContainsSubstring("valid AgentRun"));

  auto mounted = RunCommand({CARAPACE_BIN, "validate",
                             manifest("cm.yaml", "{chatTemplate: {configMap: {name: tok, key: tokenizer_config.json}}}")});
  CHECK(mounted.exit_code == 0);
  CHECK_THAT(mounted.out, ContainsSubstring("is read from ConfigMap \"tok\" in the cluster; not checked here"));
}

TEST_CASE("each reply records its time to first token, tokens per second and retries; inspect sums them up per model",
          "[model][triton][figures]") {
  FakeTritonServer server;
  server.DeclareTokenCounts();
  REQUIRE(server.Start());
  FakeTritonReply refused;
  refused.fail_code = static_cast<int>(grpc::StatusCode::UNAVAILABLE);
  server.Push(refused);  // the first request fails: one retry
  FakeTritonReply call = Reply(kWriteCall, 12);
  call.delay_ms = 60;
  call.chunk_delay_ms = 5;
  server.Push(call);
  FakeTritonReply answer = Reply("I wrote hello to a.txt, as you asked.", 4);
  answer.delay_ms = 30;
  answer.chunk_delay_ms = 5;
  server.Push(answer);
  TempDir dir;
  Outcome o = Run(Manifest(TritonModel(server.target())), dir.Sub("s"));
  INFO(o.status.ToString() << " " << o.state.reason);
  REQUIRE(o.state.phase == Phase::kSucceeded);
  auto responses = o.Of("model_response");
  REQUIRE(responses.size() == 2);
  const json& first = responses[0].data;
  CHECK(first["retries"] == 1);
  CHECK(first["firstTokenMs"].get<int64_t>() >= 60);
  // The double's tokens over the time the chunks took after the first.
  REQUIRE(first.contains("tokensPerSecond"));
  CHECK(first["tokensPerSecond"].get<double>() > 0);
  CHECK(first["tokensPerSecond"].get<double>() < 1000.0 * first["completionTokens"].get<double>() / 5);
  CHECK(responses[1].data["retries"] == 0);
  CHECK(responses[1].data["firstTokenMs"].get<int64_t>() >= 30);

  auto inspect = RunCommand({CARAPACE_BIN, "inspect", "--state-dir", dir.Sub("s")});
  INFO(inspect.out << inspect.err);
  REQUIRE(inspect.exit_code == 0);
  CHECK_THAT(inspect.out, ContainsSubstring("model:   triton llm@" + server.target() + "  2 replies, first token "));
  CHECK_THAT(inspect.out, ContainsSubstring(" ms mean, "));
  CHECK_THAT(inspect.out, ContainsSubstring("tokens/s mean, 1 retries"));
  // Kept over the run's life: the state and its reload agree.
  const auto& figures = o.state.model_figures.at("triton llm@" + server.target());
  CHECK(figures.replies == 2);
  CHECK(figures.retries == 1);
  CHECK(figures.first_token_ms_total >= 90);
}
