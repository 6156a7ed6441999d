// Traces over OTLP (docs/tracing.md), end to end: the real `carapace` CLI runs agents against
// the OpenAI-compatible double, the http tool's ledger and the stateless MCP double, and
// exports to the OTLP receiver double (tests/support/otlp_receiver.h), which refuses
// malformed spans as the protocol says.
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <signal.h>

#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
#include <nlohmann/json.hpp>

#include "tests/support/carapace_cli.h"
#include "tests/support/child_process.h"
#include "tests/support/fake_openai.h"
#include "tests/support/fake_triton.h"
#include "tests/support/ledger_server.h"
#include "tests/support/otlp_receiver.h"
#include "tests/support/stateless_mcp_server.h"
#include "tests/support/wait.h"
#include "tests/support/worker_process.h"

using Catch::Matchers::ContainsSubstring;
using carapace::testing::ChildProcess;
using carapace::testing::CommandResult;
using carapace::testing::FakeCompletion;
using carapace::testing::FakeOpenAiServer;
using carapace::testing::LedgerServer;
using carapace::testing::OtlpReceiver;
using carapace::testing::ReceivedSpan;
using carapace::testing::StatelessMcpServer;
using carapace::testing::TempDir;
using json = nlohmann::json;

namespace {

constexpr char kApiKey[] = "sk-tracing-test-key-0123456789";

// An agent on the OpenAI double that calls the ledger over http, then MCP's add, then answers.
std::string Spec(const FakeOpenAiServer& model, const LedgerServer& ledger, const StatelessMcpServer& mcp,
                 const std::string& http_extra = "") {
  const std::string host = "127.0.0.1:" + std::to_string(ledger.port());
  return "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: traced}\nspec:\n"
         "  goal: check the stock, then add two numbers (the key is " + std::string(kApiKey) + ")\n"
         "  model:\n    backend: openai\n    name: m\n    endpoint: \"" + model.base_url() + "\"\n"
         "    apiKey: {valueFrom: {env: CARAPACE_TEST_TRACE_KEY}}\n"
         "  tools:\n"
         "    - {name: stock, kind: http, effect: read_only" + http_extra + ", http: {allowedHosts: [\"" + host + "\"]}}\n"
         "    - {name: calc, kind: mcp, mcp: {url: \"" + mcp.url() + "\"}}\n";
}

void Script(FakeOpenAiServer& model, const LedgerServer& ledger, int second_call_delay_ms = 0) {
  FakeCompletion http_call;
  http_call.tool_calls = {{{"index", 0}, {"id", "c1"}, {"type", "function"},
                           {"function", {{"name", "stock"}, {"arguments", json{{"method", "GET"}, {"url", ledger.url() + "/stock"}}.dump()}}}}};
  model.Push(http_call);
  FakeCompletion mcp_call;
  mcp_call.tool_calls = {{{"index", 0}, {"id", "c2"}, {"type", "function"},
                          {"function", {{"name", "add"}, {"arguments", "{\"a\": 2, \"b\": 40}"}}}}};
  mcp_call.delay_ms = second_call_delay_ms;
  model.Push(mcp_call);
  FakeCompletion answer;
  answer.content = {"in stock; ", "the sum is 42"};
  model.Push(answer);
}

std::map<std::string, std::string> TraceEnv(const OtlpReceiver& receiver) {
  return {{"OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()},
          {"OTEL_BSP_SCHEDULE_DELAY", "50"},
          {"CARAPACE_TEST_TRACE_KEY", kApiKey}};
}

CommandResult Carapace(const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
  std::vector<std::string> argv = {CARAPACE_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess child(argv, env);
  return child.Wait(60000);
}

using carapace::testing::Events;

const ReceivedSpan* Find(const std::vector<ReceivedSpan>& spans, const std::string& name) {
  for (const auto& s : spans) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

size_t Count(const std::vector<ReceivedSpan>& spans, const std::string& prefix) {
  size_t n = 0;
  for (const auto& s : spans) n += s.name.rfind(prefix, 0) == 0;
  return n;
}

std::string Traceparent(const ReceivedSpan& s) { return "00-" + s.trace_id + "-" + s.span_id + "-01"; }

bool TurnDone(const std::vector<ReceivedSpan>& spans) { return Count(spans, "invoke_agent ") >= 1; }

// The services one traced agent calls, started: the model, the http tool's ledger, the MCP
// server, and the OTLP receiver its spans go to.
struct TracedServices {
  TempDir tmp;
  FakeOpenAiServer model{kApiKey};
  LedgerServer ledger;
  StatelessMcpServer mcp;
  OtlpReceiver receiver;
  TracedServices() {
    REQUIRE(model.Start());
    REQUIRE(ledger.Start());
    REQUIRE(mcp.Start());
    REQUIRE(receiver.Start());
  }
};

}  // namespace

TEST_CASE("a turn is one trace: its model and tool calls under the turn, continued into every service it calls",
          "[tracing]") {
  TracedServices services;
  auto& [tmp, model, ledger, mcp, receiver] = services;
  Script(model, ledger);
  const std::string spec = tmp.Write("a.yaml", Spec(model, ledger, mcp));

  CommandResult r = Carapace({"run", spec, "--state-dir", tmp.Sub("s")}, TraceEnv(receiver));
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  // The CLI flushes before it exits: everything is there once it has.
  REQUIRE(receiver.WaitFor(TurnDone, std::chrono::milliseconds(5000)));
  const std::vector<ReceivedSpan> spans = receiver.spans();
  CHECK(receiver.refusals().empty());

  const ReceivedSpan* turn = Find(spans, "invoke_agent traced");
  REQUIRE(turn != nullptr);
  CHECK(turn->parent_span_id.empty());
  CHECK(turn->Attr("gen_ai.operation.name") == "invoke_agent");
  CHECK(turn->Attr("carapace.phase") == "Succeeded");
  CHECK(turn->attributes.value("carapace.turn", 0) == 1);
  CHECK(turn->resource.at("service.name") == "carapace");
  CHECK(turn->resource.at("carapace.agentrun.name") == "traced");
  CHECK(turn->status_code != 2);

  // Every span of the run is in the turn's trace, a child of the turn's span.
  for (const auto& s : spans) {
    INFO(s.name);
    CHECK(s.trace_id == turn->trace_id);
    if (&s != turn) CHECK(s.parent_span_id == turn->span_id);
    CHECK(s.start_unix_nano >= turn->start_unix_nano);
    CHECK(s.end_unix_nano <= turn->end_unix_nano);
  }
  CHECK(Count(spans, "chat m") == 3);
  CHECK(Count(spans, "execute_tool ") == 2);
  CHECK(Count(spans, "checkpoint") >= 3);  // one per step at least

  // Model calls: GenAI conventions, and the traceparent each request carried is its span.
  std::vector<ReceivedSpan> chats;
  for (const auto& s : spans) {
    if (s.name == "chat m") chats.push_back(s);
  }
  std::sort(chats.begin(), chats.end(), [](const auto& a, const auto& b) { return a.start_unix_nano < b.start_unix_nano; });
  const auto requests = model.requests();
  REQUIRE(requests.size() == 3);
  for (size_t i = 0; i < chats.size(); ++i) {
    INFO("chat " << i);
    CHECK(chats[i].kind == 3);  // CLIENT
    CHECK(chats[i].Attr("gen_ai.operation.name") == "chat");
    CHECK(chats[i].Attr("gen_ai.request.model") == "m");
    CHECK(chats[i].attributes.value("gen_ai.usage.input_tokens", 0) == 11);  // the double's usage chunk
    CHECK(chats[i].attributes.value("gen_ai.usage.output_tokens", 0) == 7);
    CHECK(chats[i].attributes.contains("carapace.model.time_to_first_token_ms"));
    CHECK(requests[i].traceparent == Traceparent(chats[i]));
  }
  CHECK(chats[0].attributes["gen_ai.response.finish_reasons"] == json::array({"tool_calls"}));
  CHECK(chats[2].attributes["gen_ai.response.finish_reasons"] == json::array({"stop"}));

  // Tool calls: the http request and the MCP call carried their own span's traceparent.
  const ReceivedSpan* stock = Find(spans, "execute_tool stock");
  const ReceivedSpan* add = Find(spans, "execute_tool add");
  REQUIRE(stock != nullptr);
  REQUIRE(add != nullptr);
  CHECK(stock->Attr("carapace.tool.effect") == "read_only");
  CHECK(stock->Attr("carapace.tool.outcome") == "ok");
  CHECK(stock->Attr("carapace.tool.idempotency_key").size() == 32);
  CHECK(stock->Attr("gen_ai.tool.call.id") == "s1c0");
  REQUIRE(ledger.entries().size() == 1);
  CHECK(ledger.entries()[0].traceparent == Traceparent(*stock));
  bool mcp_traced = false;
  for (const auto& seen : mcp.requests()) {
    if (seen.method == "tools/call") mcp_traced = seen.traceparent == Traceparent(*add);
  }
  CHECK(mcp_traced);

  // The event log names the trace and the spans: from a trace to its events and back.
  const json events = Events(tmp.Sub("s"));
  std::set<std::string> model_spans, tool_spans;
  for (const auto& e : events) {
    const json& d = e["data"];
    INFO(e.dump());
    if (e["type"] != "history_trimmed") CHECK(d.value("traceId", "") == turn->trace_id);
    if (e["type"] == "model_response") model_spans.insert(d.value("spanId", ""));
    if (e["type"] == "tool_intent" || e["type"] == "tool_result") tool_spans.insert(d.value("spanId", ""));
  }
  CHECK(model_spans == std::set<std::string>{chats[0].span_id, chats[1].span_id, chats[2].span_id});
  CHECK(tool_spans == std::set<std::string>{stock->span_id, add->span_id});

  // Nothing secret and, without the opt-in, no prompt or reply text in any span.
  for (const auto& s : spans) {
    const std::string all = s.attributes.dump() + s.status_message;
    CHECK(all.find(kApiKey) == std::string::npos);
    CHECK(all.find("check the stock") == std::string::npos);
    CHECK(all.find("the sum is 42") == std::string::npos);
  }
}

TEST_CASE("prompts and replies go into spans only when the user opts in, redacted all the same", "[tracing]") {
  TracedServices services;
  auto& [tmp, model, ledger, mcp, receiver] = services;
  Script(model, ledger);
  const std::string spec = tmp.Write("a.yaml", Spec(model, ledger, mcp));
  auto env = TraceEnv(receiver);
  env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "true";
  env["OTEL_SERVICE_NAME"] = "my-agents";
  CommandResult r = Carapace({"run", spec, "--state-dir", tmp.Sub("s")}, env);
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  REQUIRE(receiver.WaitFor(TurnDone, std::chrono::milliseconds(5000)));
  std::string last_output, first_input;
  for (const auto& s : receiver.spans()) {
    CHECK(s.resource.at("service.name") == "my-agents");
    const std::string all = s.attributes.dump();
    CHECK(all.find(kApiKey) == std::string::npos);
    if (s.name == "chat m") {
      if (first_input.empty()) first_input = s.Attr("gen_ai.input.messages");
      if (s.Attr("gen_ai.output.messages").find("the sum is 42") != std::string::npos) last_output = s.Attr("gen_ai.output.messages");
    }
  }
  CHECK_THAT(first_input, ContainsSubstring("check the stock"));
  CHECK_THAT(first_input, ContainsSubstring("[REDACTED]"));  // the key in the goal
  CHECK_THAT(last_output, ContainsSubstring("in stock; the sum is 42"));
}

TEST_CASE("a turn cut by kill -9 and an approval stays one trace; the approval waited on is a span", "[tracing]") {
  TracedServices services;
  auto& [tmp, model, ledger, mcp, receiver] = services;
  Script(model, ledger, 5000);  // the second model call is slow: the process is killed in it
  const std::string spec = tmp.Write("a.yaml", Spec(model, ledger, mcp, ", requireApproval: true"));
  const auto env = TraceEnv(receiver);

  // First process: the model's first call waits for a person.
  CommandResult waiting = Carapace({"run", spec, "--state-dir", tmp.Sub("s")}, env);
  INFO(waiting.out << waiting.err);
  REQUIRE(waiting.exit_code == 5);
  REQUIRE(Carapace({"approve", "--state-dir", tmp.Sub("s"), "--call", "s1c0"}, env).exit_code == 0);

  // Second process: killed while the second model call is slow. That call's reply is lost
  // with it; the third process asks again and gets the answer.
  ChildProcess killed({CARAPACE_BIN, "run", spec, "--state-dir", tmp.Sub("s")}, env);
  for (int i = 0; i < 1000 && ledger.entries().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(ledger.entries().size() == 1);
  // Let the export queue send what the tool call made (its schedule is 50 ms), then kill.
  REQUIRE(receiver.WaitFor([](const auto& spans) { return Count(spans, "execute_tool stock") == 1; }));
  killed.Kill(SIGKILL);
  killed.Wait();
  CHECK(Count(receiver.spans(), "invoke_agent ") == 0);  // no process has ended the turn yet

  // Third process: finishes the turn.
  CommandResult done = Carapace({"run", spec, "--state-dir", tmp.Sub("s")}, env);
  INFO(done.out << done.err);
  REQUIRE(done.exit_code == 0);
  REQUIRE(receiver.WaitFor(TurnDone, std::chrono::milliseconds(5000)));
  const auto spans = receiver.spans();
  CHECK(receiver.refusals().empty());
  REQUIRE(Count(spans, "invoke_agent ") == 1);  // sent once, by the process that ended the turn
  const ReceivedSpan* turn = Find(spans, "invoke_agent traced");
  for (const auto& s : spans) {
    INFO(s.name);
    CHECK(s.trace_id == turn->trace_id);  // three processes, one trace
    if (&s != turn) CHECK(s.parent_span_id == turn->span_id);
  }
  const ReceivedSpan* approval = Find(spans, "await_approval stock");
  REQUIRE(approval != nullptr);
  CHECK(approval->attributes.value("carapace.approval.approved", false));
  CHECK(approval->Attr("carapace.approval.reason") == "approval_required");
  CHECK(approval->Attr("gen_ai.tool.call.id") == "s1c0");
  // The turn's span covers the whole turn, from the first process's start.
  CHECK(turn->start_unix_nano <= approval->start_unix_nano);
  CHECK(Count(spans, "chat m") == 2);  // the killed process's call never ended, so never left
}

TEST_CASE("with the receiver down a run goes on: spans are dropped and counted, nothing waits", "[tracing]") {
  TempDir tmp;
  FakeOpenAiServer model(kApiKey);
  LedgerServer ledger;
  StatelessMcpServer mcp;
  REQUIRE(model.Start());
  REQUIRE(ledger.Start());
  REQUIRE(mcp.Start());
  Script(model, ledger);
  const std::string spec = tmp.Write("a.yaml", Spec(model, ledger, mcp));
  // Port 1 (tcpmux): nothing listens there, and no other test's receiver can take it.
  std::map<std::string, std::string> env = {{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"},
                                            {"OTEL_BSP_SCHEDULE_DELAY", "50"},
                                            {"CARAPACE_TEST_TRACE_KEY", kApiKey}};
  CommandResult r = Carapace({"run", spec, "--state-dir", tmp.Sub("s")}, env);
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, ContainsSubstring("the sum is 42"));
  CHECK_THAT(r.err, ContainsSubstring("spans were not exported"));
}

TEST_CASE("OTEL_* settings Carapace cannot honour are warned about, naming the variable, and never stop the agent",
          "[tracing]") {
  TempDir tmp;
  OtlpReceiver receiver;
  REQUIRE(receiver.Start());
  const std::string spec = tmp.Write("a.yaml",
                                 "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: t}\nspec:\n"
                                 "  goal: g\n  model:\n    backend: scripted\n    script:\n      - text: done\n");
  struct Case {
    std::map<std::string, std::string> env;
    std::string says;
    bool exports;  // what is left of the settings still sends spans
  };
  const std::string ep = receiver.endpoint();
  const std::vector<Case> cases = {
      // The OpenTelemetry Operator injects http/protobuf by default: without gRPC nothing is
      // sent, and the agent runs all the same.
      {{{"OTEL_EXPORTER_OTLP_ENDPOINT", ep}, {"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"}},
       "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf is not supported", false},
      {{{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4317"}},
       "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=collector:4317: must be an http:// or https:// URL", false},
      {{{"OTEL_EXPORTER_OTLP_ENDPOINT", ep}, {"OTEL_TRACES_SAMPLER", "sometimes"}},
       "OTEL_TRACES_SAMPLER=sometimes is not one of", true},
      {{{"OTEL_EXPORTER_OTLP_ENDPOINT", ep}, {"OTEL_TRACES_SAMPLER", "traceidratio"}, {"OTEL_TRACES_SAMPLER_ARG", "2"}},
       "OTEL_TRACES_SAMPLER_ARG=2: must be a number from 0 to 1", true},
      {{{"OTEL_EXPORTER_OTLP_ENDPOINT", ep}, {"OTEL_BSP_MAX_QUEUE_SIZE", "lots"}},
       "OTEL_BSP_MAX_QUEUE_SIZE=lots: must be a whole number", true},
      {{{"OTEL_EXPORTER_OTLP_ENDPOINT", ep}, {"OTEL_TRACES_EXPORTER", "otlp,zipkin"}},
       "OTEL_TRACES_EXPORTER: zipkin is not supported", true},
  };
  int n = 0;
  for (const auto& c : cases) {
    INFO(c.says);
    const size_t before = receiver.SpansNamed("invoke_agent t").size();
    CommandResult r = Carapace({"run", spec, "--state-dir", tmp.Sub("s" + std::to_string(n++))}, c.env);
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.err, ContainsSubstring(c.says));
    if (c.exports) {
      CHECK(receiver.WaitFor([&](const auto&) { return receiver.SpansNamed("invoke_agent t").size() == before + 1; }));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      CHECK(receiver.SpansNamed("invoke_agent t").size() == before);
    }
  }
  // Off (disabled, or the exporter none): the run goes on, its events name no trace.
  for (const auto& env : std::vector<std::map<std::string, std::string>>{
           {{"OTEL_SDK_DISABLED", "TRUE"}, {"OTEL_EXPORTER_OTLP_ENDPOINT", ep}},
           {{"OTEL_TRACES_EXPORTER", "none"}, {"OTEL_EXPORTER_OTLP_ENDPOINT", ep}}}) {
    const std::string dir = tmp.Sub("off" + std::to_string(n++));
    CommandResult off = Carapace({"run", spec, "--state-dir", dir}, env);
    CHECK(off.exit_code == 0);
    CHECK(off.err.find("tracing") == std::string::npos);
    for (const auto& e : Events(dir)) CHECK_FALSE(e["data"].contains("traceId"));
  }
  CHECK(receiver.refusals().empty());
}

TEST_CASE("the worker: each message is a turn and a trace of its own, a compaction asked for while idle is traced, "
          "and /metrics counts the spans",
          "[tracing]") {
  namespace v1 = carapace::worker::v1;
  TempDir tmp;
  OtlpReceiver receiver;
  REQUIRE(receiver.Start());
  FakeOpenAiServer summarizer;  // spec.context.summaryModel writes the summary
  REQUIRE(summarizer.Start());
  FakeCompletion summary;
  summary.content = {"a summary of the talk"};
  summarizer.Push(summary);
  const std::string spec = tmp.Write("w.yaml",
                                 "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: lively}\nspec:\n"
                                 "  goal: say one\n  model:\n    backend: scripted\n    script:\n"
                                 "      - text: one\n      - text: two\n"
                                 "  context:\n    summaryModel: {backend: openai, name: summarizer, endpoint: \"" +
                                     summarizer.base_url() + "\"}\n");
  carapace::testing::WorkerProcess w(WORKER_BIN, spec, tmp.Sub("s"), tmp.path());
  w.SetEnv({{"OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()}, {"OTEL_BSP_SCHEDULE_DELAY", "50"}});
  REQUIRE(w.Start());
  auto idle_after = [&](int64_t turns) {
    return carapace::testing::WaitFor([&] {
      const v1::RunStatus s = w.Status();
      return s.phase() == v1::PHASE_IDLE && s.turns() >= turns && s.inbox_depth() == 0;
    });
  };
  REQUIRE(idle_after(1));
  {
    v1::SendMessageRequest req;
    req.set_text("say two");
    v1::SendMessageResponse out;
    auto ctx = w.Context();
    REQUIRE(w.stub().SendMessage(ctx.get(), req, &out).ok());
  }
  REQUIRE(idle_after(2));
  {
    v1::RunStatus out;
    auto ctx = w.Context();
    REQUIRE(w.stub().Compact(ctx.get(), v1::CompactRequest(), &out).ok());
  }
  REQUIRE(carapace::testing::WaitFor([&] { return w.Status().compactions() >= 1; }));

  REQUIRE(receiver.WaitFor([](const auto& spans) { return Count(spans, "invoke_agent ") == 2 && Count(spans, "compaction") == 1; }));
  const auto turns = receiver.SpansNamed("invoke_agent lively");
  REQUIRE(turns.size() == 2);
  CHECK(turns[0].trace_id != turns[1].trace_id);  // a trace per turn
  std::set<int64_t> numbers;
  for (const auto& t : turns) {
    numbers.insert(t.attributes.value("carapace.turn", int64_t{0}));
    CHECK(t.Attr("carapace.phase") == "Idle");
    CHECK(t.resource.at("service.name") == "carapace-worker");
    CHECK(t.resource.at("carapace.agentrun.name") == "lively");
  }
  CHECK(numbers == std::set<int64_t>{1, 2});
  const ReceivedSpan compaction = receiver.SpansNamed("compaction").at(0);
  CHECK(compaction.parent_span_id.empty());  // idle: no turn to belong to
  CHECK(compaction.Attr("carapace.compaction.reason") == "requested");
  for (const auto& t : turns) CHECK(compaction.trace_id != t.trace_id);
  // The summary's call names the model that wrote it, not the agent's.
  const auto summaries = receiver.SpansNamed("chat summarizer");
  REQUIRE(summaries.size() == 1);
  CHECK(summaries[0].Attr("gen_ai.request.model") == "summarizer");
  CHECK(summaries[0].Attr("carapace.model.purpose") == "summary");
  CHECK(summaries[0].Attr("gen_ai.provider.name") == "openai");
  size_t turn_chats = 0;
  for (const auto& chat : receiver.SpansNamed("chat ")) {
    if (chat.name != "chat ") continue;  // the agent's scripted model has no name
    ++turn_chats;
    CHECK(chat.Attr("gen_ai.provider.name") == "scripted");
  }
  CHECK(turn_chats == 2);

  const auto [code, metrics] = carapace::testing::HttpGet(w.http_port(), "/metrics");
  REQUIRE(code == 200);
  CHECK_THAT(metrics, ContainsSubstring("carapace_trace_spans_exported_total"));
  CHECK_THAT(metrics, ContainsSubstring("carapace_trace_spans_dropped_total{reason=\"export_failed\"} 0"));
  w.Stop();
}

TEST_CASE("a Triton model call carries its span's traceparent as gRPC metadata", "[tracing]") {
  TempDir tmp;
  carapace::testing::FakeTritonServer triton;
  REQUIRE(triton.Start());
  OtlpReceiver receiver;
  REQUIRE(receiver.Start());
  carapace::testing::FakeTritonReply reply;
  reply.chunks = {"hel", "lo"};
  triton.Push(reply);
  const std::string spec = tmp.Write("t.yaml",
                                 "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: tri}\nspec:\n"
                                 "  goal: greet\n  model:\n    backend: triton\n    name: llm\n    endpoint: \"" +
                                     triton.target() + "\"\n");
  CommandResult r = Carapace({"run", spec, "--state-dir", tmp.Sub("s")}, TraceEnv(receiver));
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  REQUIRE(receiver.WaitFor(TurnDone, std::chrono::milliseconds(5000)));
  const auto chats = receiver.SpansNamed("chat llm");
  REQUIRE(chats.size() == 1);
  CHECK(chats[0].Attr("gen_ai.provider.name") == "triton");
  const auto requests = triton.requests();
  REQUIRE(requests.size() == 1);
  CHECK(requests[0].traceparent == Traceparent(chats[0]));
}
