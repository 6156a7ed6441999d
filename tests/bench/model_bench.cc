// carapace-bench-model: what the model client path costs, against raw transport floors
// measured in the same run on loopback, with the same server doubles on the other end.
//
//   triton: raw gRPC ModelStreamInfer messages/s   vs  the triton backend's streamed tokens/s
//           (template rendering, tensor building, reply parsing, stream events, retry layer)
//   triton: time to first token, raw gRPC call     vs  the backend
//   openai: raw HTTP (a socket, SSE events counted) vs  the openai backend, the same two ways
//   reply parsing: each tool-call format        vs  Hermes (ChatML), the same reply in each
//   prompt rendering: each family's Jinja template vs  the built-in ChatML template, the same
//           100-message conversation
//
// Usage: carapace-bench-model [--tokens N] [--calls N] [--replies N]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <prometheus/registry.h>

#include "tests/bench/bench_stats.h"
#include "common/log.h"
#include "inference/grpc_service.grpc.pb.h"
#include "tests/support/fake_openai.h"
#include "tests/support/fake_triton.h"
#include "worker/model/model_families.h"
#include "worker/model/reply_parser.h"
#include "worker/model/resilient_model.h"
#include "common/process_setup.h"

using namespace carapace;
using Clock = std::chrono::steady_clock;

using carapace::bench::Ms;
using carapace::bench::Percentile;

namespace {


std::vector<std::string> Tokens(int n) { return std::vector<std::string>(static_cast<size_t>(n), "tok "); }

// The full client path: the endpoint behind the retry/breaker/metrics layer, as a run uses it.
std::unique_ptr<ModelBackend> Client(const std::string& backend, const std::string& endpoint) {
  ModelEndpointSpec spec;
  spec.backend = backend;
  spec.name = "llm";
  spec.endpoint = endpoint;
  spec.timeout_seconds = 60;
  ModelRegistry registry;
  RegisterBuiltinModels(&registry);
  auto client = registry.CreateBackend(spec, 8, "bench");
  if (!client.ok()) {
    std::fprintf(stderr, "%s\n", client.status().ToString().c_str());
    std::exit(1);
  }
  std::vector<ModelEndpoint> endpoints;
  endpoints.push_back({spec.Describe(), backend, "llm", std::move(*client)});
  static prometheus::Registry* metrics = new prometheus::Registry();
  return std::make_unique<ResilientModel>(std::move(endpoints), ResilienceOptions{}, metrics);
}

// Streams one reply through the backend; returns (total ms, ms to first token, tokens seen).
struct Timing {
  double total_ms = 0;
  double first_ms = 0;
  int deltas = 0;
};

Timing ThroughBackend(ModelBackend& model) {
  std::vector<Message> messages = {{"system", "You are brief.", {}, "", ""}, {"user", "Count.", {}, "", ""}};
  Timing t;
  auto start = Clock::now();
  ChatStream stream([&](const ChatStreamEvent& e) {
    if (e.kind != ChatStreamEvent::Kind::kText) return;
    if (t.deltas++ == 0) t.first_ms = Ms(Clock::now() - start);
  });
  Status s = model.Chat({1, &messages, {}}, &stream);
  t.total_ms = Ms(Clock::now() - start);
  if (!s.ok()) {
    std::fprintf(stderr, "backend call failed: %s\n", s.ToString().c_str());
    std::exit(1);
  }
  return t;
}

// The gRPC floor: the same ModelStreamInfer call with the generated stub and nothing else.
Timing RawGrpc(inference::GRPCInferenceService::Stub& stub) {
  inference::ModelInferRequest req;
  req.set_model_name("llm");
  auto* in = req.add_inputs();
  in->set_name("text_input");
  in->set_datatype("BYTES");
  in->add_shape(1);
  in->mutable_contents()->add_bytes_contents("<|im_start|>user\nCount.<|im_end|>\n<|im_start|>assistant\n");
  (*req.mutable_parameters())["triton_enable_empty_final_response"].set_bool_param(true);
  Timing t;
  auto start = Clock::now();
  grpc::ClientContext ctx;
  auto stream = stub.ModelStreamInfer(&ctx);
  stream->Write(req);
  stream->WritesDone();
  inference::ModelStreamInferResponse r;
  while (stream->Read(&r)) {
    if (r.infer_response().outputs_size() == 0) continue;  // the empty final response
    if (t.deltas++ == 0) t.first_ms = Ms(Clock::now() - start);
  }
  stream->Finish();
  t.total_ms = Ms(Clock::now() - start);
  return t;
}

// The HTTP floor: one request over a plain socket kept open between requests (as the
// backend's client keeps its connections), SSE events counted as they arrive.
int Connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::perror("connect");
    std::exit(1);
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

Timing RawHttp(int fd) {
  Timing t;
  auto start = Clock::now();
  const std::string body = R"({"model":"llm","stream":true,"messages":[{"role":"user","content":"Count."}]})";
  const std::string req = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) std::exit(1);
  char buf[16384];
  std::string tail;
  int events = 0;
  bool done = false;
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    tail.append(buf, static_cast<size_t>(n));
    size_t at;
    while (!done && (at = tail.find("\n\n")) != std::string::npos) {
      // The first event is the role chunk; the second carries the first token, as the
      // backend counts it.
      if (++events == 2) t.first_ms = Ms(Clock::now() - start);
      done = tail.compare(at - 6, 6, "[DONE]") == 0;
      tail.erase(0, at + 2);
    }
    if (done && tail.find("0\r\n\r\n") != std::string::npos) break;  // the last chunk
  }
  t.deltas = std::max(0, events - 4);  // role, finish, usage and [DONE] carry no token
  t.total_ms = Ms(Clock::now() - start);
  return t;
}

void Report(const char* what, const std::vector<Timing>& raw_stream, const std::vector<Timing>& client_stream,
            const std::vector<Timing>& raw_first, const std::vector<Timing>& client_first) {
  auto rate = [](const std::vector<Timing>& v) {
    double tokens = 0, ms = 0;
    for (const auto& t : v) tokens += t.deltas, ms += t.total_ms;
    return tokens / (ms / 1000.0);
  };
  auto firsts = [](const std::vector<Timing>& v) {
    std::vector<double> out;
    for (const auto& t : v) out.push_back(t.first_ms);
    return out;
  };
  const double raw_rate = rate(raw_stream), client_rate = rate(client_stream);
  const double raw_p50 = Percentile(firsts(raw_first), 0.5), client_p50 = Percentile(firsts(client_first), 0.5);
  const double raw_p99 = Percentile(firsts(raw_first), 0.99), client_p99 = Percentile(firsts(client_first), 0.99);
  std::printf("%s streaming: raw %.0f msgs/s, backend %.0f tokens/s, ratio %.2f (aim >= 0.8)\n", what, raw_rate,
              client_rate, client_rate / raw_rate);
  std::printf("%s time to first token: raw p50 %.3f ms p99 %.3f ms; backend p50 %.3f ms p99 %.3f ms; "
              "overhead p50 %.3f ms (aim < 0.5 ms)\n",
              what, raw_p50, raw_p99, client_p50, client_p99, client_p50 - raw_p50);
}

// One reply in one tool-call format, as the bench parses it.
struct FormatReply {
  ToolCallFormat format;
  std::vector<std::string> stops;
  std::string text;
};

// A reply of about 400 bytes of text and two calls in each format that can hold both (a
// Llama 3 reply that calls tools is nothing but the calls: left out).
std::vector<FormatReply> FormatReplies() {
  std::string prose;
  while (prose.size() < 400) prose += "The forecast for both cities depends on the coast and the hills. ";
  const std::string args1 = R"({"city": "Paris", "days": 3})", args2 = R"({"tz": "Europe/Paris"})";
  return {
      {ToolCallFormat::kHermes, {"<|im_end|>"},
       prose + "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " + args1 + "}\n</tool_call>\n" +
           "<tool_call>\n{\"name\": \"get_time\", \"arguments\": " + args2 + "}\n</tool_call><|im_end|>"},
      {ToolCallFormat::kMistral, {"</s>"},
       prose + "[TOOL_CALLS]get_weather[ARGS]" + args1 + "[TOOL_CALLS]get_time[ARGS]" + args2 + "</s>"},
      {ToolCallFormat::kQwen3Coder, {"<|im_end|>"},
       prose + "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n"
               "</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=get_time>\n<parameter=tz>\n"
               "Europe/Paris\n</parameter>\n</function>\n</tool_call><|im_end|>"},
      {ToolCallFormat::kDeepSeek, {"<｜end▁of▁sentence｜>"},
       prose + "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n" + args1 +
           "\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n" + args2 +
           "\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>"},
      // A server that stops at <|call|> ends the reply after one call; this one does not.
      {ToolCallFormat::kHarmony, {"<|return|>"},
       "<|channel|>commentary<|message|>" + prose +
           "<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>" +
           args1 +
           "<|call|><|start|>assistant<|channel|>commentary to=functions.get_time <|constrain|>json<|message|>" +
           args2 + "<|call|>"},
  };
}

// Nanoseconds to parse `reply` once, fed in 4-byte deltas as a token stream brings it, over
// `replies` replies.
double ParseNsPerReply(const FormatReply& reply, const std::vector<ToolSchema>& tools, int replies) {
  auto start = Clock::now();
  for (int i = 0; i < replies; ++i) {
    ChatStream out;
    ReplyParser parser(reply.format, reply.stops, tools);
    for (size_t at = 0; at < reply.text.size(); at += 4) parser.Feed(std::string_view(reply.text).substr(at, 4), &out);
    parser.End(&out);
    if (out.response().tool_calls.size() != 2 || parser.malformed_calls() != 0 || out.response().text.size() < 400) {
      std::fprintf(stderr, "the %s reply did not parse as two calls and its text\n",
                   std::string(ToolCallFormatName(reply.format)).c_str());
      std::exit(1);
    }
  }
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count() / replies;
}

void ReportReplyParsing(int replies, int rounds) {
  const std::vector<ToolSchema> tools = {
      {"get_weather",
       "",
       {{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}, {"days", {{"type", "integer"}}}}}}},
      {"get_time", "", {{"type", "object"}, {"properties", {{"tz", {{"type", "string"}}}}}}}};
  const std::vector<FormatReply> cases = FormatReplies();
  for (const auto& c : cases) ParseNsPerReply(c, tools, std::max(1, replies / 10));  // warm up
  std::vector<std::vector<double>> ns(cases.size());
  for (int round = 0; round < rounds; ++round) {  // interleaved, so drift hits every format alike
    for (size_t i = 0; i < cases.size(); ++i) ns[i].push_back(ParseNsPerReply(cases[i], tools, replies));
  }
  const double hermes = Percentile(ns[0], 0.5);
  std::printf("reply parsing: 2 calls and ~400 bytes of text in 4-byte deltas, median of %d rounds x %d replies\n",
              rounds, replies);
  for (size_t i = 0; i < cases.size(); ++i) {
    const double median = Percentile(ns[i], 0.5);
    std::printf("reply parsing %-12s %6.0f ns/reply (%zu bytes), ratio %.2f to hermes\n",
                std::string(ToolCallFormatName(cases[i].format)).c_str(), median, cases[i].text.size(),
                median / hermes);
  }
}

// A conversation of `n` messages as an agent's looks: a system prompt, then turns of a
// question, a tool call, its result of a few hundred bytes, and an answer.
std::vector<Message> AgentConversation(size_t n) {
  std::vector<Message> m = {{"system", "You keep notes for the team and answer briefly.", {}, "", ""}};
  for (int turn = 0; m.size() < n; ++turn) {
    const std::string id = "s" + std::to_string(turn) + "c0";
    m.push_back({"user", "What does note " + std::to_string(turn) + " say about the release?", {}, "", ""});
    Message call{"assistant", "", {}, "", ""};
    call.tool_calls.push_back({id, "notes", {{"op", "read"}, {"path", "note-" + std::to_string(turn) + ".md"}}, ""});
    m.push_back(call);
    std::string result = "{\"content\": \"";
    while (result.size() < 300) result += "The release moves to Thursday after the load test. ";
    m.push_back({"tool", result + "\"}", {}, id, "notes"});
    m.push_back({"assistant", "Note " + std::to_string(turn) + " says the release moves to Thursday.", {}, "", ""});
  }
  m.resize(n);
  if (m.back().role == "assistant" && !m.back().tool_calls.empty()) m.pop_back();
  return m;
}

void ReportPromptRendering(int rounds) {
  const std::vector<Message> conversation = AgentConversation(100);
  const std::vector<ToolSchema> tools = {
      {"notes", "Reads and writes notes",
       {{"type", "object"},
        {"properties", {{"op", {{"type", "string"}, {"enum", {"read", "write"}}}}, {"path", {{"type", "string"}}}}},
        {"required", {"op", "path"}}}}};
  std::vector<std::pair<std::string, ChatTemplate>> templates;
  for (const std::string family : {"chatml", "qwen3", "qwen3-coder", "mistral", "deepseek-v3", "gpt-oss"}) {
    TritonOptions options;
    options.family = family;
    options.template_variables = {{"current_date", "2026-12-05"}};
    auto t = ChatTemplateFor(options);
    if (!t.ok()) {
      std::fprintf(stderr, "%s: %s\n", family.c_str(), t.status().ToString().c_str());
      std::exit(1);
    }
    templates.emplace_back(family, std::move(*t));
  }
  auto render_us = [&](const ChatTemplate& t, int renders) {
    size_t bytes = 0;
    auto start = Clock::now();
    for (int i = 0; i < renders; ++i) {
      auto p = RenderPrompt(t, conversation, tools);
      if (!p.ok()) {
        std::fprintf(stderr, "%s\n", p.status().ToString().c_str());
        std::exit(1);
      }
      bytes = p->size();
    }
    return std::make_pair(std::chrono::duration<double, std::micro>(Clock::now() - start).count() / renders, bytes);
  };
  for (const auto& [name, t] : templates) render_us(t, 20);  // warm up
  std::vector<std::vector<double>> us(templates.size());
  std::vector<size_t> sizes(templates.size());
  for (int round = 0; round < rounds; ++round) {
    for (size_t i = 0; i < templates.size(); ++i) {
      auto [time, bytes] = render_us(templates[i].second, 200);
      us[i].push_back(time);
      sizes[i] = bytes;
    }
  }
  const double chatml = Percentile(us[0], 0.5);
  std::printf("prompt rendering: %zu messages, 1 tool, median of %d rounds x 200 renders\n", conversation.size(), rounds);
  for (size_t i = 0; i < templates.size(); ++i) {
    const double median = Percentile(us[i], 0.5);
    std::printf("prompt rendering %-12s %7.1f us/prompt (%zu bytes, %s), ratio %.2f to chatml\n", templates[i].first.c_str(),
                median, sizes[i], templates[i].second.jinja ? "jinja" : "built in", median / chatml);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int tokens = 20000, calls = 300, rounds = 5, replies = 2000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--tokens") == 0) tokens = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--calls") == 0) calls = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--replies") == 0) replies = std::atoi(argv[i + 1]);
  }
  SetUpProcess();  // as carapace and carapace-worker do
  log::SetLevel(log::Level::kError);
  std::printf("carapace-bench-model: %d streamed tokens x %d rounds, %d calls for time to first token, loopback\n",
              tokens, rounds, calls);

  testing::FakeTritonServer triton;
  if (!triton.Start()) return 1;
  auto channel = grpc::CreateChannel(triton.target(), grpc::InsecureChannelCredentials());
  auto stub = inference::GRPCInferenceService::NewStub(channel);
  auto triton_client = Client("triton", triton.target());
  std::vector<Timing> raw_stream, client_stream, raw_first, client_first;
  auto push = [&](int n) {
    testing::FakeTritonReply r;
    r.chunks = Tokens(n);
    triton.Push(r);
  };
  push(10), RawGrpc(*stub), push(10), ThroughBackend(*triton_client);  // warm up both
  for (int round = 0; round < rounds; ++round) {  // interleaved, so drift hits both alike
    push(tokens), raw_stream.push_back(RawGrpc(*stub));
    push(tokens), client_stream.push_back(ThroughBackend(*triton_client));
  }
  for (int i = 0; i < calls; ++i) {
    push(4), raw_first.push_back(RawGrpc(*stub));
    push(4), client_first.push_back(ThroughBackend(*triton_client));
  }
  Report("triton", raw_stream, client_stream, raw_first, client_first);

  testing::FakeOpenAiServer openai;
  if (!openai.Start()) return 1;
  const int fd = Connect(std::stoi(openai.base_url().substr(openai.base_url().rfind(':') + 1)));
  auto openai_client = Client("openai", openai.base_url());
  raw_stream.clear(), client_stream.clear(), raw_first.clear(), client_first.clear();
  auto push_http = [&](int n) {
    testing::FakeCompletion c;
    c.content = Tokens(n);
    openai.Push(c);
  };
  const int http_tokens = tokens / 4;
  push_http(10), RawHttp(fd), push_http(10), ThroughBackend(*openai_client);
  for (int round = 0; round < rounds; ++round) {
    push_http(http_tokens), raw_stream.push_back(RawHttp(fd));
    push_http(http_tokens), client_stream.push_back(ThroughBackend(*openai_client));
  }
  for (int i = 0; i < calls; ++i) {
    push_http(4), raw_first.push_back(RawHttp(fd));
    push_http(4), client_first.push_back(ThroughBackend(*openai_client));
  }
  Report("openai", raw_stream, client_stream, raw_first, client_first);

  ReportReplyParsing(replies, rounds);
  ReportPromptRendering(rounds);
  return 0;
}
