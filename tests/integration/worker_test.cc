// carapace-worker end to end: the real process, its control API over gRPC on loopback, its
// HTTP probes and metrics. Messages handled in order, WatchEvents resumed from a sequence
// number, SIGTERM mid-turn and restart, kill -9 while messages are acknowledged, auth, bad
// requests, heartbeats that call no model, the crash-loop breaker, and promtool on /metrics.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <thread>

#include <sstream>

#include <prometheus/registry.h>

#include "tests/support/child_process.h"
#include "tests/support/fake_openai.h"
#include "tests/support/small_volume.h"
#include "tests/support/socket_io.h"
#include "tests/support/worker_process.h"
#include "worker/runtime/run_loader.h"
#include "worker/server/agent_service.h"

using namespace carapace;
using carapace::testing::FakeCompletion;
using carapace::testing::FakeOpenAiServer;
using carapace::testing::HttpGet;
using carapace::testing::CommandResult;
using carapace::testing::RunCommand;
using carapace::testing::ConnectToLoopbackPort;
using carapace::testing::TempDir;
using carapace::testing::SmallVolume;
using carapace::testing::WorkerProcess;
using Catch::Matchers::ContainsSubstring;
namespace v1 = carapace::worker::v1;

namespace {

std::string Scripted(const std::vector<std::string>& replies, const std::string& extra = "") {
  std::string s = "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: svc}\nspec:\n  goal: start\n"
                  "  model:\n    backend: scripted\n    script:\n";
  for (const auto& r : replies) s += "      - text: \"" + r + "\"\n";
  return s + extra;
}

std::string OpenAi(const std::string& url, const std::string& extra = "") {
  return "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: svc}\nspec:\n  goal: start\n"
         "  model:\n    backend: openai\n    name: llm\n    endpoint: \"" + url + "\"\n    timeoutSeconds: 30\n" + extra;
}

// Polls GetStatus until `done` holds; fails the test after `timeout_ms`.
v1::RunStatus WaitFor(WorkerProcess& w, const std::function<bool(const v1::RunStatus&)>& done, int timeout_ms = 20000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  v1::RunStatus s;
  while (std::chrono::steady_clock::now() < deadline) {
    s = w.Status();
    if (done(s)) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FAIL("timed out waiting; last status: " << s.ShortDebugString());
  return s;
}

bool IdleAfter(const v1::RunStatus& s, int64_t turns) { return s.phase() == v1::PHASE_IDLE && s.turns() >= turns && s.inbox_depth() == 0; }

std::vector<v1::EventEntry> Events(WorkerProcess& w, uint64_t from = 1) {
  auto ctx = w.Context();
  v1::WatchEventsRequest req;
  req.set_from_seq(from);
  auto reader = w.stub().WatchEvents(ctx.get(), req);
  std::vector<v1::EventEntry> out;
  v1::EventEntry e;
  while (reader->Read(&e)) out.push_back(e);
  REQUIRE(reader->Finish().ok());
  return out;
}

uint64_t Send(WorkerProcess& w, const std::string& text) {
  v1::SendMessageRequest req;
  req.set_text(text);
  v1::SendMessageResponse out;
  auto ctx = w.Context();
  grpc::Status st = w.stub().SendMessage(ctx.get(), req, &out);
  INFO(st.error_message());
  REQUIRE(st.ok());
  return out.seq();
}

nlohmann::json Data(const v1::EventEntry& e) { return nlohmann::json::parse(e.data_json()); }

// Chat calls the model double received (its health checks, GET /models, are not counted).
size_t ChatCalls(const FakeOpenAiServer& model) {
  size_t n = 0;
  for (const auto& r : model.requests()) n += r.path == "/v1/chat/completions";
  return n;
}

}  // namespace

TEST_CASE("messages queue durably and are handled in order, one turn at a time", "[worker]") {
  TempDir dir;
  const std::string spec = dir.Write("spec.yaml", Scripted({"ready", "one", "two", "three"}));
  WorkerProcess w(WORKER_BIN, spec, dir.Sub("state"), dir.path());
  REQUIRE(w.Start());
  WaitFor(w, [](auto& s) { return IdleAfter(s, 1); });
  const uint64_t a = Send(w, "first");
  const uint64_t b = Send(w, "second");
  const uint64_t c = Send(w, "third");
  CHECK(a < b);
  CHECK(b < c);
  v1::RunStatus s = WaitFor(w, [](auto& s) { return IdleAfter(s, 4); });
  CHECK(s.result() == "three");
  CHECK(s.step() == 4);
  std::vector<uint64_t> taken;
  std::vector<std::string> replies;
  for (const auto& e : Events(w)) {
    if (e.type() == "turn_started") taken.push_back(Data(e)["messageSeq"]);
    if (e.type() == "model_response") replies.push_back(Data(e)["text"]);
  }
  CHECK(taken == std::vector<uint64_t>{a, b, c});
  CHECK(replies == std::vector<std::string>{"ready", "one", "two", "three"});
  CHECK(w.Stop().exit_code == 0);
}

TEST_CASE("WatchEvents from a sequence number: a client that reconnects misses nothing", "[worker]") {
  TempDir dir;
  const std::string spec = dir.Write("spec.yaml", Scripted({"r0", "r1", "r2", "r3", "r4", "r5"}));
  WorkerProcess w(WORKER_BIN, spec, dir.Sub("state"), dir.path());
  REQUIRE(w.Start());
  WaitFor(w, [](auto& s) { return IdleAfter(s, 1); });

  // Follow the log while messages are being handled; drop the stream after 7 events.
  std::vector<v1::EventEntry> seen;
  {
    auto ctx = w.Context("", true);
    v1::WatchEventsRequest req;
    req.set_from_seq(1);
    req.set_follow(true);
    auto reader = w.stub().WatchEvents(ctx.get(), req);
    Send(w, "m1");
    v1::EventEntry e;
    while (seen.size() < 7 && reader->Read(&e)) seen.push_back(e);
    ctx->TryCancel();
    reader->Finish();
  }
  REQUIRE(seen.size() == 7);
  Send(w, "m2");
  Send(w, "m3");
  WaitFor(w, [](auto& s) { return IdleAfter(s, 4); });
  for (const auto& e : Events(w, seen.back().seq() + 1)) seen.push_back(e);
  std::vector<v1::EventEntry> all = Events(w);
  REQUIRE(seen.size() == all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    CHECK(seen[i].seq() == i + 1);
    CHECK(seen[i].type() == all[i].type());
  }
  // A follower sees new events as they are stored.
  auto ctx = w.Context("", true);
  v1::WatchEventsRequest req;
  req.set_from_seq(all.size() + 1);
  req.set_follow(true);
  auto reader = w.stub().WatchEvents(ctx.get(), req);
  const uint64_t m4 = Send(w, "m4");
  v1::EventEntry next;
  REQUIRE(reader->Read(&next));
  CHECK(next.seq() == m4);
  CHECK(next.type() == "message_received");
  ctx->TryCancel();
  reader->Finish();
}

TEST_CASE("the control API refuses a missing or wrong token, and bad requests say why", "[worker]") {
  TempDir dir;
  const std::string spec = dir.Write("spec.yaml", Scripted({"ready"}));
  WorkerProcess w(WORKER_BIN, spec, dir.Sub("state"), dir.path());
  REQUIRE(w.Start());
  v1::RunStatus out;
  {
    grpc::ClientContext none;
    CHECK(w.stub().GetStatus(&none, v1::GetStatusRequest(), &out).error_code() == grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    auto wrong = w.Context("not-the-token-0123456789abcdef");
    v1::SendMessageRequest req;
    req.set_text("let me in");
    v1::SendMessageResponse r;
    CHECK(w.stub().SendMessage(wrong.get(), req, &r).error_code() == grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    auto wrong = w.Context("x");
    auto reader = w.stub().WatchEvents(wrong.get(), v1::WatchEventsRequest());
    v1::EventEntry e;
    CHECK_FALSE(reader->Read(&e));
    CHECK(reader->Finish().error_code() == grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    auto ctx = w.Context();
    v1::SendMessageResponse r;
    grpc::Status st = w.stub().SendMessage(ctx.get(), v1::SendMessageRequest(), &r);
    CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(st.error_message() == "text is empty");
  }
  {
    auto ctx = w.Context();
    v1::SendMessageRequest req;
    req.set_text(std::string(70000, 'x'));
    v1::SendMessageResponse r;
    grpc::Status st = w.stub().SendMessage(ctx.get(), req, &r);
    CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(st.error_message() == "text is 70000 bytes; at most 65536");
  }
  {
    auto ctx = w.Context();
    v1::SendMessageRequest req;
    req.set_text("pretend to be the schedule");
    req.set_from("cron:report");
    v1::SendMessageResponse r;
    grpc::Status st = w.stub().SendMessage(ctx.get(), req, &r);
    CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(st.error_message(), ContainsSubstring("the prefix \"cron:\" is reserved"));
  }
  {
    auto ctx = w.Context();
    v1::DecisionRequest req;
    req.set_call_id("s9c9");
    grpc::Status st = w.stub().Approve(ctx.get(), req, &out);
    CHECK(st.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
    CHECK_THAT(st.error_message(), ContainsSubstring("not waiting for approval"));
  }
  {
    // Text that is not UTF-8 is refused by name, not lost in a parse error (INTERNAL).
    auto ctx = w.Context();
    v1::SendMessageRequest req;
    req.set_text("caf\xe9 \xff");
    v1::SendMessageResponse r;
    grpc::Status st = w.stub().SendMessage(ctx.get(), req, &r);
    CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(st.error_message() == "text is not valid UTF-8");
    auto ctx2 = w.Context();
    req.set_text("fine");
    req.set_from("\xc3\x28");
    st = w.stub().SendMessage(ctx2.get(), req, &r);
    CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(st.error_message(), ContainsSubstring("from must be valid UTF-8"));
    auto ctx3 = w.Context();
    v1::DecisionRequest decision;
    decision.set_call_id("s1\xff");
    st = w.stub().Approve(ctx3.get(), decision, &out);
    CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(st.error_message(), ContainsSubstring("call_id must be valid UTF-8"));
    auto ctx4 = w.Context();
    v1::CancelRequest cancel;
    cancel.set_reason("\xff");
    st = w.stub().Cancel(ctx4.get(), cancel, &out);
    CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(st.error_message(), ContainsSubstring("reason must be valid UTF-8"));
  }
  // Nothing was stored by the refused calls.
  for (const auto& e : Events(w)) CHECK(e.type() != "message_received");
  for (const auto& e : Events(w)) CHECK(e.type() != "cancel_requested");
  // The CLI says the same.
  auto cli = RunCommand({CARAPACE_BIN, "status", "--worker", w.address()});
  CHECK(cli.exit_code == 2);
  CHECK_THAT(cli.err, ContainsSubstring("a valid bearer token is required"));
  auto ok = RunCommand({CARAPACE_BIN, "status", "--worker", w.address(), "--token-file", dir.Sub("token")});
  CHECK(ok.exit_code == 0);
  CHECK_THAT(ok.out, ContainsSubstring("phase:   IDLE"));
  // Every line the worker logged is one JSON object: no library's own error lines.
  carapace::testing::CommandResult stopped = w.Stop();
  std::istringstream log(stopped.err);
  for (std::string line; std::getline(log, line);) {
    INFO(line);
    CHECK(nlohmann::json::parse(line, nullptr, false).is_object());
  }

  // A worker with neither a token nor --insecure-no-auth does not start.
  auto refused = RunCommand({WORKER_BIN, "--spec", spec, "--state-dir", dir.Sub("other")});
  CHECK(refused.exit_code == 2);
  CHECK_THAT(refused.err, ContainsSubstring("the control API needs a token"));
}

TEST_CASE("a heartbeat with nothing to do calls no model", "[worker]") {
  TempDir dir;
  const std::string spec = dir.Write("spec.yaml", Scripted({"ready", "answer"}, "  schedule: {heartbeatSeconds: 1}\n"));
  WorkerProcess w(WORKER_BIN, spec, dir.Sub("state"), dir.path());
  REQUIRE(w.Start());
  v1::RunStatus idle = WaitFor(w, [](auto& s) { return IdleAfter(s, 1); });
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));  // three heartbeats
  v1::RunStatus later = w.Status();
  CHECK(later.phase() == v1::PHASE_IDLE);
  CHECK(later.last_event_seq() == idle.last_event_seq());  // nothing happened, nothing recorded
  CHECK(later.budget().tokens() == idle.budget().tokens());
  auto [code, metrics] = HttpGet(w.http_port(), "/metrics");
  REQUIRE(code == 200);
  CHECK_THAT(metrics, ContainsSubstring("carapace_model_requests_total{backend=\"scripted\",model=\"scripted\",outcome=\"ok\"} 1\n"));
  // A message does wake it.
  Send(w, "question");
  CHECK(WaitFor(w, [](auto& s) { return IdleAfter(s, 2); }).result() == "answer");
}

TEST_CASE("cron occurrences missed while the worker was down come as one message", "[worker]") {
  TempDir dir;
  auto run = ParseAgentRun(Scripted({"ready", "report done"}, "  schedule:\n    cron: [{name: report, schedule: \"* * * * *\", prompt: \"write the report\"}]\n"),
                           "t.yaml");
  REQUIRE(run.ok());
  {
    // The cron last fired three hours ago: 180 occurrences were missed.
    auto agent = AgentService::Open(*run, dir.Sub("state"), nullptr);
    REQUIRE(agent.ok());
    Event e;
    e.type = event_type::kMessageReceived;
    e.data = {{"text", "write the report"}, {"from", "cron:report"}, {"cron", "report"},
              {"scheduledForMs", WallNowMillis() - 3 * 3600 * 1000}, {"occurrences", 1}};
    REQUIRE(AppendExternalEvent(const_cast<RunStore*>(&(*agent)->store()), e).ok());
  }
  prometheus::Registry metrics;
  auto agent = AgentService::Open(*run, dir.Sub("state"), &metrics);
  REQUIRE(agent.ok());
  (*agent)->Start();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while ((*agent)->Snapshot().turns() < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  (*agent)->Shutdown(std::chrono::seconds(5));
  auto events = ReadAllEvents((*agent)->store());
  REQUIRE(events.ok());
  // The seeded one, then one for all that were missed (and, if a minute turned during the
  // test, one for that minute).
  std::vector<int64_t> occurrences;
  for (const auto& e : *events) {
    if (e.type == event_type::kMessageReceived && e.data.value("from", "") == "cron:report") {
      occurrences.push_back(e.data.value("occurrences", int64_t{0}));
    }
  }
  REQUIRE(occurrences.size() >= 2);
  CHECK(occurrences.size() <= 3);
  CHECK(occurrences[1] >= 180);
  CHECK(occurrences[1] <= 182);
  if (occurrences.size() == 3) CHECK(occurrences[2] == 1);
}

TEST_CASE("SIGTERM mid-turn: the model call finishes within the grace, or is recorded as interrupted; restart resumes", "[worker]") {
  FakeOpenAiServer model;
  REQUIRE(model.Start());
  FakeCompletion first;
  first.content = {"ready"};
  model.Push(first);
  TempDir dir;
  const std::string spec = dir.Write("spec.yaml", OpenAi(model.base_url()));

  SECTION("within the grace") {
    FakeCompletion slow;
    slow.content = {"slow answer"};
    slow.delay_ms = 800;
    model.Push(slow);
    WorkerProcess w(WORKER_BIN, spec, dir.Sub("state"), dir.path(), {"--grace-seconds", "5"});
    REQUIRE(w.Start());
    WaitFor(w, [](auto& s) { return IdleAfter(s, 1); });
    Send(w, "take your time");
    WaitFor(w, [](auto& s) { return s.turns() == 2; });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the call is in flight
    auto stopped = w.Stop(SIGTERM);
    CHECK(stopped.exit_code == 0);
    CHECK_THAT(stopped.err, ContainsSubstring("\"inTime\":true"));
    WorkerProcess again(WORKER_BIN, spec, dir.Sub("state"), dir.path());
    REQUIRE(again.Start());
    v1::RunStatus s = WaitFor(again, [](auto& s) { return IdleAfter(s, 2); });
    CHECK(s.result() == "slow answer");
    CHECK(ChatCalls(model) == 2);  // the answer that came in the grace was kept
  }
  SECTION("past the grace") {
    FakeCompletion hung;
    hung.content = {"too late"};
    hung.delay_ms = 4000;
    model.Push(hung);
    FakeCompletion retry;
    retry.content = {"asked again"};
    model.Push(retry);
    WorkerProcess w(WORKER_BIN, spec, dir.Sub("state"), dir.path(), {"--grace-seconds", "1"});
    REQUIRE(w.Start());
    WaitFor(w, [](auto& s) { return IdleAfter(s, 1); });
    Send(w, "this one hangs");
    WaitFor(w, [](auto& s) { return s.turns() == 2; });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto stopped = w.Stop(SIGTERM);
    CHECK(stopped.exit_code == 0);
    CHECK_THAT(stopped.err, ContainsSubstring("shutdown grace ran out"));
    WorkerProcess again(WORKER_BIN, spec, dir.Sub("state"), dir.path());
    REQUIRE(again.Start());
    v1::RunStatus s = WaitFor(again, [](auto& s) { return IdleAfter(s, 2); });
    CHECK(s.result() == "asked again");
    bool interrupted = false;
    for (const auto& e : Events(again)) interrupted = interrupted || e.type() == "interrupted";
    CHECK(interrupted);
  }
}

TEST_CASE("kill -9 while messages are being acknowledged never loses an acknowledged message", "[worker][crash]") {
  TempDir dir;
  std::vector<std::string> replies(200, "ok");
  const std::string spec = dir.Write("spec.yaml", Scripted(replies));
  std::set<std::string> acknowledged;
  std::mt19937 rng(std::random_device{}());
  int n = 0;
  for (int round = 0; round < 4; ++round) {
    WorkerProcess w(WORKER_BIN, spec, dir.Sub("state"), dir.path());
    REQUIRE(w.Start());
    std::atomic<bool> stop{false};
    std::thread sender([&] {
      while (!stop) {
        const std::string text = "message " + std::to_string(n++);
        v1::SendMessageRequest req;
        req.set_text(text);
        v1::SendMessageResponse out;
        auto ctx = w.Context();
        if (w.stub().SendMessage(ctx.get(), req, &out).ok()) acknowledged.insert(text);
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 300));
    w.child()->Kill(SIGKILL);
    stop = true;
    sender.join();
    w.Kill();
  }
  REQUIRE(acknowledged.size() > 10);
  WorkerProcess w(WORKER_BIN, spec, dir.Sub("state"), dir.path());
  REQUIRE(w.Start());
  std::set<std::string> stored;
  for (const auto& e : Events(w)) {
    if (e.type() == "message_received") stored.insert(Data(e)["text"].get<std::string>());
  }
  for (const auto& text : acknowledged) {
    INFO(text);
    CHECK(stored.count(text) == 1);
  }
}

TEST_CASE("pause, resume and cancel", "[worker]") {
  TempDir dir;
  const std::string spec = dir.Write("spec.yaml", Scripted({"ready", "after resume"}));
  WorkerProcess w(WORKER_BIN, spec, dir.Sub("state"), dir.path());
  REQUIRE(w.Start());
  WaitFor(w, [](auto& s) { return IdleAfter(s, 1); });
  v1::RunStatus out;
  auto ctx = w.Context();
  REQUIRE(w.stub().Pause(ctx.get(), v1::PauseRequest(), &out).ok());
  CHECK(out.phase() == v1::PHASE_PAUSED);  // the reply shows what the call did, not the phase before
  WaitFor(w, [](auto& s) { return s.phase() == v1::PHASE_PAUSED; });
  Send(w, "queued while paused");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  v1::RunStatus paused = w.Status();
  CHECK(paused.phase() == v1::PHASE_PAUSED);
  CHECK(paused.inbox_depth() == 1);  // kept, not taken
  auto resume = RunCommand({CARAPACE_BIN, "resume", "--worker", w.address(), "--token-file", dir.Sub("token")});
  CHECK(resume.exit_code == 0);
  CHECK_THAT(resume.out, !ContainsSubstring("PAUSED"));  // the phase after the resume
  CHECK(WaitFor(w, [](auto& s) { return IdleAfter(s, 2); }).result() == "after resume");
  auto cancel = RunCommand({CARAPACE_BIN, "cancel", "--worker", w.address(), "--token-file", dir.Sub("token"), "--reason", "done here"});
  CHECK(cancel.exit_code == 0);
  v1::RunStatus cancelled = WaitFor(w, [](auto& s) { return s.phase() == v1::PHASE_CANCELLED; });
  CHECK_THAT(cancelled.reason(), ContainsSubstring("done here"));
  auto ctx2 = w.Context();
  v1::SendMessageRequest req;
  req.set_text("too late");
  v1::SendMessageResponse r;
  CHECK(w.stub().SendMessage(ctx2.get(), req, &r).error_code() == grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_CASE("a step that keeps taking the worker down trips the crash-loop breaker until a person resumes", "[worker][crash]") {
  FakeOpenAiServer model;
  REQUIRE(model.Start());
  FakeCompletion ready;
  ready.content = {"ready"};
  model.Push(ready);
  for (int i = 0; i < 3; ++i) {
    FakeCompletion hang;  // the worker dies during each of these calls
    hang.content = {"never seen"};
    hang.delay_ms = 2500;
    model.Push(hang);
  }
  FakeCompletion fixed;
  fixed.content = {"fixed"};
  model.Push(fixed);
  TempDir dir;
  const std::string spec = dir.Write("spec.yaml", OpenAi(model.base_url()));
  {
    WorkerProcess w(WORKER_BIN, spec, dir.Sub("state"), dir.path());
    REQUIRE(w.Start());
    WaitFor(w, [](auto& s) { return IdleAfter(s, 1); });
    Send(w, "this step crashes the worker");
    WaitFor(w, [&](auto&) { return ChatCalls(model) == 2; });
    w.Kill();
  }
  for (size_t restart = 1; restart <= 2; ++restart) {
    WorkerProcess w(WORKER_BIN, spec, dir.Sub("state"), dir.path());
    REQUIRE(w.Start());
    WaitFor(w, [&](auto&) { return ChatCalls(model) == 2 + restart; });
    w.Kill();
  }
  WorkerProcess w(WORKER_BIN, spec, dir.Sub("state"), dir.path());
  REQUIRE(w.Start());
  v1::RunStatus degraded = WaitFor(w, [](auto& s) { return s.phase() == v1::PHASE_DEGRADED; });
  CHECK_THAT(degraded.reason(), ContainsSubstring("restarted 3 times within 5 minutes"));
  auto [code, body] = HttpGet(w.http_port(), "/readyz");
  CHECK(code == 503);
  CHECK_THAT(body, ContainsSubstring("crash loop"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(ChatCalls(model) == 4);  // not re-dispatched
  auto resume = RunCommand({CARAPACE_BIN, "resume", "--worker", w.address(), "--token-file", dir.Sub("token")});
  CHECK(resume.exit_code == 0);
  CHECK_THAT(resume.out, !ContainsSubstring("PAUSED"));  // the phase after the resume
  CHECK(WaitFor(w, [](auto& s) { return IdleAfter(s, 2); }).result() == "fixed");
  CHECK(HttpGet(w.http_port(), "/readyz").first == 200);
}

TEST_CASE("/healthz, /readyz and /metrics; the metrics pass promtool check metrics", "[worker][metrics]") {
  TempDir dir;
  const std::string spec = dir.Write("spec.yaml",
                                 "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: svc}\nspec:\n  goal: start\n"
                                 "  tools: [{name: notes, kind: workspace}]\n  model:\n    backend: scripted\n    script:\n"
                                 "      - toolCalls: [{name: notes, arguments: {op: write, path: a.txt, content: hi}}]\n"
                                 "      - text: done\n");
  WorkerProcess w(WORKER_BIN, spec, dir.Sub("state"), dir.path());
  REQUIRE(w.Start());
  WaitFor(w, [](auto& s) { return IdleAfter(s, 1); });
  CHECK(HttpGet(w.http_port(), "/healthz") == std::make_pair(200, std::string("ok\n")));
  auto [ready_code, ready] = HttpGet(w.http_port(), "/readyz");
  CHECK(ready_code == 200);
  CHECK(nlohmann::json::parse(ready)["model"]["ok"] == true);
  auto [code, text] = HttpGet(w.http_port(), "/metrics");
  REQUIRE(code == 200);
  for (const char* name : {"carapace_agent_steps_total 2", "carapace_agent_step_duration_seconds_count 2",
                           "carapace_checkpoint_write_duration_seconds_count", "carapace_tool_calls_total{outcome=\"ok\",tool=\"notes\"} 1",
                           "carapace_tool_call_duration_seconds_count{tool=\"notes\"} 1", "carapace_agent_phase{phase=\"Idle\"} 1",
                           "carapace_budget_used_ratio{budget=\"steps\"} 0.04", "carapace_recoveries_total 0", "carapace_inbox_depth 0",
                           "carapace_model_requests_total",
                           // Outcomes that did not happen exist at 0 from the start (for rate()):
                           // the tool's, and the model endpoint's errors.
                           "carapace_tool_calls_total{outcome=\"error\",tool=\"notes\"} 0",
                           "carapace_tool_calls_total{outcome=\"unknown\",tool=\"notes\"} 0",
                           "outcome=\"unavailable\"} 0"}) {
    INFO(name);
    CHECK_THAT(text, ContainsSubstring(name));
  }
  std::ofstream(dir.Sub("metrics.txt")) << text;
  auto check = RunCommand({"/bin/sh", "-c", std::string(PROMTOOL_BIN) + " check metrics < " + dir.Sub("metrics.txt")});
  INFO(check.out << check.err);
  CHECK(check.exit_code == 0);
}

TEST_CASE("the worker writes only under its state dir and tmp dir (read-only root, no home)", "[worker]") {
  // Run as root (as CI does), the worker runs as nobody (uid 65534), and only the state and
  // tmp dirs are writable by it: a write anywhere else would fail, not just be noticed.
  const bool as_nobody = ::geteuid() == 0;
  TempDir dir;
  const std::string spec = dir.Write("spec.yaml",
                                 "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: svc}\nspec:\n  goal: start\n"
                                 "  tools: [{name: notes, kind: workspace}]\n  model:\n    backend: scripted\n    script:\n"
                                 "      - toolCalls: [{name: notes, arguments: {op: write, path: a.txt, content: hi}}]\n"
                                 "      - text: done\n");
  for (const char* d : {"cwd", "home", "tmp", "state"}) std::filesystem::create_directories(dir.Sub(d));
  std::ofstream(dir.Sub("token")) << "0123456789abcdef0123456789\n";
  std::string run_as;
  if (as_nobody) {
    namespace fs = std::filesystem;
    fs::permissions(dir.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                    fs::perms::others_read | fs::perms::others_exec);
    for (const char* f : {"token", "spec.yaml"}) fs::permissions(dir.Sub(f), fs::perms::owner_read | fs::perms::owner_write | fs::perms::others_read);
    REQUIRE(::chown(dir.Sub("state").c_str(), 65534, 65534) == 0);
    REQUIRE(::chown(dir.Sub("tmp").c_str(), 65534, 65534) == 0);
    run_as = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
  }
  const int http = testing::FreePort();
  const int grpc_port = testing::FreePort();
  testing::ChildProcess child({"/bin/sh", "-c",
                               "cd " + dir.Sub("cwd") + " && HOME=" + dir.Sub("home") + " exec " + run_as + WORKER_BIN + " --spec " + spec +
                                   " --state-dir " + dir.Sub("state") + " --token-file " + dir.Sub("token") + " --tmp-dir " +
                                   dir.Sub("tmp") + " --grpc-listen 127.0.0.1:" + std::to_string(grpc_port) +
                                   " --http-listen 127.0.0.1:" + std::to_string(http)});
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  bool idle = false;
  while (!idle && std::chrono::steady_clock::now() < deadline) {
    auto [code, body] = HttpGet(http, "/metrics");
    idle = code == 200 && body.find("carapace_agent_phase{phase=\"Idle\"} 1") != std::string::npos;
    if (!idle) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE(idle);
  child.Kill(SIGTERM);
  CHECK(child.Wait(20000).exit_code == 0);
  CHECK(std::filesystem::is_empty(dir.Sub("cwd")));
  CHECK(std::filesystem::is_empty(dir.Sub("home")));
  CHECK(std::filesystem::exists(dir.Sub("state") + "/workspace/a.txt"));
  if (as_nobody) {
    struct stat st {};
    REQUIRE(::stat((dir.Sub("state") + "/workspace/a.txt").c_str(), &st) == 0);
    CHECK(st.st_uid == 65534u);  // it really ran as nobody
  }
}

TEST_CASE("a full inbox refuses more messages instead of growing without end", "[worker]") {
  TempDir dir;
  auto run = ParseAgentRun(Scripted({"ready"}), "t.yaml");
  REQUIRE(run.ok());
  // Not started: nothing takes messages out, so they pile up as they would behind a stuck turn.
  auto agent = AgentService::Open(*run, dir.Sub("state"), nullptr);
  REQUIRE(agent.ok());
  for (int i = 0; i < 10000; ++i) REQUIRE((*agent)->SendMessage("m" + std::to_string(i), "test").ok());
  auto refused = (*agent)->SendMessage("one too many", "test");
  CHECK(refused.status().code() == StatusCode::kResourceExhausted);
  CHECK_THAT(refused.status().message(), ContainsSubstring("the inbox holds 10000 messages"));
  CHECK((*agent)->InboxDepth() == 10000);
}

TEST_CASE("a worker whose model service is down waits and says why; messages wait; the same run goes on when it is back",
          "[worker][outage]") {
  TempDir dir;
  FakeOpenAiServer model;
  REQUIRE(model.Start());
  const int port = model.port();
  model.Stop();  // down before the agent starts, as when agents start before the model service
  const std::string spec = dir.Write("spec.yaml", OpenAi(model.base_url(),
                                                          "    retry: {maxAttempts: 1}\n"
                                                          "    circuitBreaker: {failureThreshold: 1000}\n"
                                                          "  schedule: {heartbeatSeconds: 3600}\n"));
  WorkerProcess w(WORKER_BIN, spec, dir.Sub("state"), dir.path());
  REQUIRE(w.Start());
  v1::RunStatus s = WaitFor(w, [](auto& s) { return s.waiting_for() == "ModelUnavailable"; });
  CHECK(s.phase() == v1::PHASE_RUNNING);
  CHECK_THAT(s.waiting_detail(), ContainsSubstring("Failed to connect"));
  CHECK(s.next_try_at_ms() > 0);
  const std::string run_id = s.run_id();
  // Ready all the same (it works and takes messages), and it says what it waits for.
  auto [code, body] = HttpGet(w.http_port(), "/readyz");
  CHECK(code == 200);
  auto ready = nlohmann::json::parse(body);
  CHECK(ready["waitingFor"] == "ModelUnavailable");
  CHECK(ready.contains("nextTryAt"));
  auto [mcode, metrics] = HttpGet(w.http_port(), "/metrics");
  REQUIRE(mcode == 200);
  CHECK_THAT(metrics, ContainsSubstring("carapace_model_unavailable 1"));
  const uint64_t a = Send(w, "first");
  const uint64_t b = Send(w, "second");

  // The service comes back at the same address: the waiting turn is tried again, then each
  // message in order.
  for (const char* text : {"ready", "one", "two"}) {
    FakeCompletion c;
    c.content = {text};
    model.Push(c);
  }
  REQUIRE(model.Start(port));
  s = WaitFor(w, [](auto& s) { return IdleAfter(s, 3); }, 30000);
  CHECK(s.run_id() == run_id);
  CHECK(s.result() == "two");
  CHECK(s.waiting_for().empty());
  std::vector<uint64_t> taken;
  std::vector<std::string> replies;
  int waits = 0;
  for (const auto& e : Events(w)) {
    if (e.type() == "turn_started") taken.push_back(Data(e)["messageSeq"]);
    if (e.type() == "model_response") replies.push_back(Data(e)["text"]);
    waits += e.type() == "model_unavailable";
    if (e.type() == "run_started") CHECK(Data(e)["runId"] == run_id);
  }
  CHECK(taken == std::vector<uint64_t>{a, b});
  CHECK(replies == std::vector<std::string>{"ready", "one", "two"});
  CHECK(waits >= 1);
  auto [mcode2, metrics2] = HttpGet(w.http_port(), "/metrics");
  CHECK_THAT(metrics2, ContainsSubstring("carapace_model_unavailable 0"));
  CHECK(w.Stop().exit_code == 0);
}

namespace {

int64_t ProcKib(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  }
  return -1;
}

// Sends a request head that never ends, `bytes` long, as fast as the server takes it, then
// reads whatever it answered.
std::string FloodHeader(int port, size_t bytes) {
  const int fd = ConnectToLoopbackPort(port);
  if (fd < 0) return "";
  const std::string start = "GET /metrics HTTP/1.1\r\nX-Flood: ";
  (void)!send(fd, start.data(), start.size(), MSG_NOSIGNAL);
  const std::string chunk(1 << 16, 'a');
  for (size_t sent = 0; sent < bytes;) {
    ssize_t n = send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n <= 0) break;  // refused and closed
    sent += static_cast<size_t>(n);
  }
  const std::string reply = carapace::testing::ReadUntilClosed(fd);
  close(fd);
  return reply;
}

}  // namespace

TEST_CASE("the probe port holds many concurrent oversized requests to its memory bound", "[worker][limits]") {
  TempDir dir;
  const std::string spec = dir.Write("spec.yaml", Scripted({"done"}));
  WorkerProcess w(WORKER_BIN, spec, dir.Sub("state"), dir.path());
  REQUIRE(w.Start());
  REQUIRE(HttpGet(w.http_port(), "/healthz").first == 200);
  const pid_t pid = w.child()->pid();
  const int64_t peak_before = ProcKib(pid, "VmHWM");
  REQUIRE(peak_before > 0);
  // 48 peers at once, each sending a 32 MiB header (1.5 GiB in all; one such request
  // used to cost the worker hundreds of MiB).
  std::vector<std::thread> peers;
  std::atomic<int> refused{0}, answered{0};
  for (int i = 0; i < 48; ++i) {
    peers.emplace_back([&] {
      const std::string reply = FloodHeader(w.http_port(), size_t{32} << 20);
      if (!reply.empty()) ++answered;
      if (reply.rfind("HTTP/1.1 431", 0) == 0 || reply.rfind("HTTP/1.1 503", 0) == 0) ++refused;
    });
  }
  for (auto& t : peers) t.join();
  const int64_t peak_after = ProcKib(pid, "VmHWM");
  INFO("peak RSS before " << peak_before << " KiB, after " << peak_after << " KiB");
  CHECK(refused.load() == answered.load());  // every peer that got an answer was refused, none served
  CHECK(answered.load() > 0);
  // Bound: 128 connections of at most 16 KiB of head each, and the buffers around them.
  CHECK(peak_after - peak_before < 16 * 1024);
  CHECK(HttpGet(w.http_port(), "/healthz").first == 200);
}

TEST_CASE("a control request over the API's message limit is refused RESOURCE_EXHAUSTED, and the worker goes on",
          "[worker][limits]") {
  TempDir dir;
  const std::string spec = dir.Write("spec.yaml", Scripted({"done"}, "  schedule: {heartbeatSeconds: 3600}\n"));
  WorkerProcess w(WORKER_BIN, spec, dir.Sub("state"), dir.path());
  REQUIRE(w.Start());
  v1::SendMessageRequest req;
  req.set_text(std::string(2 << 20, 'a'));  // 2 MiB: over the 1 MiB a control request may be
  v1::SendMessageResponse out;
  auto ctx = w.Context();
  grpc::Status st = w.stub().SendMessage(ctx.get(), req, &out);
  CHECK(st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  INFO(st.error_message());
  CHECK(w.Status().inbox_depth() == 0);  // nothing of it was queued
  CHECK(HttpGet(w.http_port(), "/healthz").first == 200);
}

namespace {

FakeCompletion Says(const std::string& text) {
  FakeCompletion c;
  c.content = {text};
  return c;
}

// Polls /readyz until its body holds `needle` (10 s at most); the last answer.
std::pair<int, std::string> ReadyzSaying(WorkerProcess& w, const std::string& needle) {
  std::pair<int, std::string> readyz = HttpGet(w.http_port(), "/readyz");
  for (int i = 0; i < 500 && readyz.second.find(needle) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    readyz = HttpGet(w.http_port(), "/readyz");
  }
  return readyz;
}

grpc::Status SendRaw(WorkerProcess& w, const std::string& text) {
  v1::SendMessageRequest req;
  req.set_text(text);
  v1::SendMessageResponse out;
  auto ctx = w.Context();
  return w.stub().SendMessage(ctx.get(), req, &out);
}

// The agent's turn waits for a model reply that comes `delay_ms` later; meanwhile the volume
// is filled to below what a write needs, so the reply's write is refused.
void FillWhileTheModelThinks(WorkerProcess& w, FakeOpenAiServer& model, SmallVolume& volume,
                             const std::string& reply, const std::string& message) {
  FakeCompletion slow;
  slow.content = {reply};
  slow.delay_ms = 3000;
  model.Push(slow);
  Send(w, message);
  WaitFor(w, [](auto& s) { return s.phase() == v1::PHASE_RUNNING; });
  REQUIRE(volume.FillLeaving(200 * 1024));  // a write needs its size twice and 1 MiB
}

}  // namespace

TEST_CASE("a full volume is a state: the worker stays up, says so, takes no new work, and carries on by itself "
          "once space is freed; it opens again after a stop or a kill -9 while full",
          "[worker][limits]") {
  TempDir dir;
  SmallVolume volume(dir.Sub("vol"), "16m");
  if (!volume.mounted()) SKIP("mounting a tmpfs needs root");
  FakeOpenAiServer model;
  REQUIRE(model.Start());
  model.Push(Says("hello"));
  const std::string spec = dir.Write("spec.yaml", OpenAi(model.base_url()));
  const std::string state = dir.Sub("vol/agent");
  std::string run_id;
  {
    WorkerProcess w(WORKER_BIN, spec, state, dir.path());
    REQUIRE(w.Start());
    run_id = WaitFor(w, [](auto& s) { return IdleAfter(s, 1); }).run_id();

    FillWhileTheModelThinks(w, model, volume, "written after all", "fill the volume");
    v1::RunStatus s = WaitFor(w, [](auto& s) { return s.waiting_for() == "VolumeFull"; });
    CHECK(s.phase() == v1::PHASE_RUNNING);
    CHECK_THAT(s.waiting_detail(), ContainsSubstring("is full"));
    CHECK_THAT(s.waiting_detail(), ContainsSubstring("nothing was written"));
    // Reported: /readyz, the metric; alive for the kubelet.
    auto [rcode, rbody] = HttpGet(w.http_port(), "/readyz");
    CHECK(rcode == 503);
    auto ready = nlohmann::json::parse(rbody);
    CHECK(ready["store"] == "volume full");
    CHECK(ready["waitingFor"] == "VolumeFull");
    CHECK_THAT(ready.value("reason", ""), ContainsSubstring("is full"));
    CHECK(HttpGet(w.http_port(), "/healthz").first == 200);
    CHECK_THAT(HttpGet(w.http_port(), "/metrics").second, ContainsSubstring("carapace_volume_full 1"));
    // No new work that needs the disk: a message and a control are refused, saying why.
    grpc::Status refused = SendRaw(w, "while full");
    CHECK(refused.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
    CHECK_THAT(refused.error_message(), ContainsSubstring("is full"));
    {
      v1::PauseRequest req;
      v1::RunStatus out;
      auto ctx = w.Context();
      grpc::Status paused = w.stub().Pause(ctx.get(), req, &out);
      CHECK(paused.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
    }
    std::this_thread::sleep_for(std::chrono::seconds(2));
    CHECK(w.child()->Running());

    // Space freed: the turn goes on where it was, with the reply it had.
    volume.Free();
    s = WaitFor(w, [](auto& s) { return IdleAfter(s, 2); });
    CHECK(s.result() == "written after all");
    CHECK(s.waiting_for().empty());
    CHECK(HttpGet(w.http_port(), "/readyz").first == 200);
    CHECK_THAT(HttpGet(w.http_port(), "/metrics").second, ContainsSubstring("carapace_volume_full 0"));
    CHECK(ChatCalls(model) == 2);  // the reply was not asked for again

    // Stopped while full: the stop is clean, and the next start waits for room to open.
    FillWhileTheModelThinks(w, model, volume, "lost with the stop", "stop while full");
    WaitFor(w, [](auto& s) { return s.waiting_for() == "VolumeFull"; });
    CommandResult stopped = w.Stop();
    INFO(stopped.err);
    CHECK(stopped.exit_code == 0);
    // What the stop released (the WAL RocksDB preallocates) is taken too.
    REQUIRE(volume.FillLeaving(200 * 1024));
  }
  {
    WorkerProcess w(WORKER_BIN, spec, state, dir.path());
    REQUIRE(w.Start(20000, /*store_open=*/false));
    auto [rcode, rbody] = ReadyzSaying(w, "is full");
    CHECK(rcode == 503);
    CHECK_THAT(rbody, ContainsSubstring("not open"));
    CHECK_THAT(rbody, ContainsSubstring("is full"));
    CHECK(HttpGet(w.http_port(), "/healthz").first == 200);
    CHECK_THAT(HttpGet(w.http_port(), "/metrics").second, ContainsSubstring("carapace_volume_full 1"));
    std::this_thread::sleep_for(std::chrono::seconds(3));
    REQUIRE(w.child()->Running());
    model.Push(Says("asked again"));  // the reply lost with the stop was never stored
    volume.Free();
    ReadyzSaying(w, "\"phase\"");  // opened: the control API listens
    v1::RunStatus s = WaitFor(w, [](auto& s) { return IdleAfter(s, 3); });
    CHECK(s.run_id() == run_id);
    CHECK(s.result() == "asked again");

    // kill -9 while full: the store opens as it was left.
    FillWhileTheModelThinks(w, model, volume, "lost with the kill", "kill while full");
    WaitFor(w, [](auto& s) { return s.waiting_for() == "VolumeFull"; });
    w.Kill();
  }
  volume.Free();
  model.Push(Says("after the kill"));
  WorkerProcess w(WORKER_BIN, spec, state, dir.path());
  REQUIRE(w.Start());
  v1::RunStatus s = WaitFor(w, [](auto& s) { return IdleAfter(s, 4); });
  CHECK(s.run_id() == run_id);
  CHECK(s.result() == "after the kill");
  std::vector<std::string> replies;
  for (const auto& e : Events(w)) {
    if (e.type() == "model_response") replies.push_back(Data(e)["text"]);
  }
  CHECK(replies == std::vector<std::string>{"hello", "written after all", "asked again", "after the kill"});
}

TEST_CASE("a compaction asked for through the control API or `carapace compact` folds older turns into a summary; "
          "status shows it and the event log keeps every message",
          "[worker][context]") {
  TempDir dir;
  FakeOpenAiServer model;
  REQUIRE(model.Start());
  model.SetMaxModelLen(8192);  // and counts prompts as vLLM would
  // Answers each message; a summary request with the identifiers it was shown.
  model.SetResponder([](const nlohmann::json& body) {
    const auto& messages = body["messages"];
    const std::string system = messages[0].value("content", "");
    FakeCompletion c;
    if (system.rfind("You keep the memory", 0) == 0) {
      std::string ids;
      const std::string all = messages.dump();
      for (size_t at = all.find("ID-"); at != std::string::npos; at = all.find("ID-", at + 3)) ids += all.substr(at, 4) + " ";
      c.content = {"Summary. Identifiers: " + ids};
    } else {
      c.content = {"noted " + messages.back().value("content", "").substr(0, 12)};
    }
    return c;
  });
  const std::string spec = dir.Write("spec.yaml", OpenAi(model.base_url(), "  context: {keepRecentRatio: 0.05}\n"));
  {
    WorkerProcess w(WORKER_BIN, spec, dir.Sub("state"), dir.path());
    REQUIRE(w.Start());
    WaitFor(w, [](auto& s) { return IdleAfter(s, 1); });
    for (int i = 1; i <= 6; ++i) Send(w, "message " + std::to_string(i) + " ID-" + std::to_string(i));
    v1::RunStatus s = WaitFor(w, [](auto& s) { return IdleAfter(s, 7); });
    CHECK(s.compactions() == 0);  // a window of 8192 holds all of it

    v1::RunStatus out;
    auto ctx = w.Context();
    grpc::Status st = w.stub().Compact(ctx.get(), v1::CompactRequest(), &out);
    INFO(st.error_message());
    REQUIRE(st.ok());
    s = WaitFor(w, [](auto& s) { return s.compactions() == 1; });
    CHECK(s.summary_bytes() > 0);
    CHECK(s.phase() == v1::PHASE_IDLE);
    int requested = 0;
    size_t originals = 0;
    for (const auto& e : Events(w)) {
      if (e.type() == "compaction_requested") ++requested;
      if (e.type() == "context_compacted") {
        auto d = Data(e);
        CHECK(d["reason"] == "requested");
        CHECK_THAT(d["summary"].get<std::string>(), ContainsSubstring("ID-1"));
        CHECK(d["to"].get<int64_t>() > d["from"].get<int64_t>());
      }
      originals += e.type() == "message_received";
    }
    CHECK(requested == 1);
    CHECK(originals == 6);  // nothing of the log was removed
    // `carapace status` shows it.
    CommandResult status = RunCommand({CARAPACE_BIN, "status", "--worker", w.address(), "--token-file", dir.Sub("token")});
    CHECK_THAT(status.out, ContainsSubstring("1 compaction"));
    CHECK(w.Stop().exit_code == 0);
  }
  // Locally, on the stopped agent's state dir: nothing new to fold.
  CommandResult again = RunCommand({CARAPACE_BIN, "compact", spec, "--state-dir", dir.Sub("state")});
  INFO(again.out << again.err);
  CHECK(again.exit_code == 0);
  CHECK_THAT(again.out, ContainsSubstring("nothing to compact"));
}
