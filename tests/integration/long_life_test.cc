// An agent that lives for weeks (docs/long-life.md): spec edits are revisions of the same run,
// model outages and refusals never end it, budgets for agents that never finish, and replies
// cut short are never taken as answers. Model services are the OpenAI-compatible double over
// loopback, or a recording backend where the test needs to see exactly what the model was sent.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <deque>
#include <filesystem>

#include "tests/support/child_process.h"
#include "tests/support/fake_clock.h"
#include "tests/support/fake_openai.h"
#include "worker/runtime/model_outcome.h"
#include "worker/runtime/run_dirs.h"
#include "worker/runtime/run_loader.h"
#include "worker/runtime/runner.h"
#include "worker/runtime/spec_revision.h"

using namespace carapace;
using carapace::testing::FakeClock;
using carapace::testing::FakeCompletion;
using carapace::testing::FakeOpenAiServer;
using carapace::testing::TempDir;
using Catch::Matchers::ContainsSubstring;
using nlohmann::json;

namespace {

// What the recording backend was sent, and what it answers (in order; "" answers with a
// call of the tool named in `call_tool`).
struct Recorder {
  struct Sent {
    std::string system;  // the system message, "" when none
    std::vector<std::string> tools;
    std::string last_user;
  };
  std::vector<Sent> sent;
  std::deque<ScriptedReply> replies;
};

class RecordingBackend : public ModelBackend {
 public:
  explicit RecordingBackend(Recorder* r) : r_(r) {}
  Status Chat(const ModelRequest& request, ChatStream* out) override {
    Recorder::Sent s;
    for (const auto& m : *request.messages) {
      if (m.role == "system") s.system = m.content;
      if (m.role == "user") s.last_user = m.content;
    }
    for (const auto& t : request.tools) s.tools.push_back(t.name);
    r_->sent.push_back(s);
    if (r_->replies.empty()) return FailedPrecondition("recorder: no reply left");
    ScriptedReply reply = r_->replies.front();
    r_->replies.pop_front();
    out->Text(reply.text);
    for (const auto& c : reply.tool_calls) out->Call(ToolCall{"", c.name, c.arguments, ""});
    out->Usage(10, 5);
    out->Finish(reply.tool_calls.empty() ? "stop" : "tool_calls");
    return Status::Ok();
  }

 private:
  Recorder* r_;
};

AgentRun Agent(const std::string& backend = "recorder") {
  AgentRun run;
  run.metadata.name = "weeks";
  run.spec.goal = "introduce yourself";
  run.spec.instructions = "You are helpful.";
  run.spec.model.backend = backend;
  run.spec.model.name = "m";
  ToolSpec notes;
  notes.name = "notes";
  notes.kind = "workspace";
  run.spec.tools = {notes};
  return run;
}

AgentRun OpenAiAgent(const std::string& url) {
  AgentRun run = Agent("openai");
  run.spec.model.endpoint = url;
  run.spec.model.timeout_seconds = 5;
  // One attempt per try and no breaker: the runtime's own waiting is what is under test.
  run.spec.model.retry.max_attempts = 1;
  run.spec.model.circuit_breaker.failure_threshold = 1000000;
  return run;
}

// A long-lived runner over a state dir, rebuilt for each "worker start".
struct Worker {
  Worker(const std::string& dir, const AgentRun& run, Recorder* recorder, FakeClock* clock = nullptr,
         FakeClock* wall = nullptr, bool persistent = true) {
    RegisterBuiltinModels(&models);
    models.Register("recorder", [recorder](const BackendContext&) -> Result<std::unique_ptr<ModelBackend>> {
      return std::unique_ptr<ModelBackend>(new RecordingBackend(recorder));
    });
    RegisterBuiltinTools(&tools);
    store = std::move(RunStore::Open(dir, RunStore::OpenMode::kCreateIfMissing)).value();
    RunnerOptions o;
    o.persistent = persistent;
    if (clock) o.clock = clock;
    if (wall) o.wall_clock = wall;
    auto made = Runner::Create(store.get(), run, models, tools, o);
    REQUIRE(made.ok());
    runner = std::move(made).value();
  }
  Phase Run() {
    auto phase = runner->Run();
    REQUIRE(phase.ok());
    return *phase;
  }
  void Send(const std::string& text) {
    Event e;
    e.type = event_type::kMessageReceived;
    e.data = {{"text", text}, {"from", "test"}};
    REQUIRE(AppendExternalEvent(store.get(), e).ok());
  }
  void Append(const char* type) {
    Event e;
    e.type = type;
    REQUIRE(AppendExternalEvent(store.get(), e).ok());
  }
  std::vector<Event> Events() {
    auto events = ReadAllEvents(*store);
    REQUIRE(events.ok());
    return *events;
  }
  ModelRegistry models;
  ToolRegistry tools;
  std::unique_ptr<RunStore> store;
  std::unique_ptr<Runner> runner;
};

std::vector<Event> OfType(const std::vector<Event>& events, const std::string& type) {
  std::vector<Event> out;
  for (const auto& e : events) {
    if (e.type == type) out.push_back(e);
  }
  return out;
}

ScriptedReply Answer(const std::string& text) { return {text, {}}; }

FakeCompletion Says(const std::string& text) {
  FakeCompletion c;
  c.content = {text};
  return c;
}

}  // namespace

TEST_CASE("a changed spec is a new revision of the same run: conversation, memory, inbox and budgets carry over",
          "[long-life][revision]") {
  TempDir dir;
  Recorder rec;
  rec.replies = {Answer("hello"), Answer("noted")};
  std::string run_id;
  {
    Worker w(dir.Sub("s"), Agent(), &rec);
    REQUIRE(w.Run() == Phase::kIdle);
    run_id = w.runner->state().run_id;
    REQUIRE(w.store->PutMemory({{"fact/colour", R"({"text":"the user likes green"})"}}, true).ok());
    w.Send("remember that I like green");
    REQUIRE(w.Run() == Phase::kIdle);
    w.Send("queued while the spec is edited");  // not taken: the worker stops before
  }
  // The edit: new instructions, a tool added, a budget raised.
  AgentRun edited = Agent();
  edited.spec.instructions = "You are terse.";
  ToolSpec memory;
  memory.name = "memory";
  memory.kind = "memory";
  edited.spec.tools.push_back(memory);
  edited.spec.budget.max_steps = 500;
  rec.replies = {Answer("done")};
  Worker w(dir.Sub("s"), edited, &rec);
  REQUIRE(w.Run() == Phase::kIdle);

  const RunState& s = w.runner->state();
  CHECK(s.run_id == run_id);
  CHECK(s.revision == 2);
  CHECK(s.spec_hash == edited.SpecHash());
  CHECK(s.turns == 3);
  CHECK(s.result == "done");
  // The queued message was answered under the new revision: new instructions, new tool.
  REQUIRE(rec.sent.size() == 3);
  CHECK(rec.sent[2].system == "You are terse.");
  CHECK(rec.sent[2].last_user == "queued while the spec is edited");
  CHECK(std::find(rec.sent[2].tools.begin(), rec.sent[2].tools.end(), "memory_search") != rec.sent[2].tools.end());
  CHECK(rec.sent[1].system == "You are helpful.");
  // The conversation is whole (goal, two messages, three answers), memory too.
  CHECK(s.messages.size() == 7);
  int entries = 0;
  REQUIRE(w.store->ForEachMemory([&](std::string_view, std::string_view) { return ++entries, true; }).ok());
  CHECK(entries == 1);
  // The revision is an event naming what changed; the store's spec is the new one.
  auto revised = OfType(w.Events(), event_type::kSpecRevised);
  REQUIRE(revised.size() == 1);
  CHECK(revised[0].data["revision"] == 2);
  CHECK(revised[0].data["changed"] == json::array({"budget.maxSteps", "instructions", "tools"}));
  auto identity = LoadRunIdentity(*w.store);
  REQUIRE(identity.ok());
  CHECK((*identity)->spec_hash == edited.SpecHash());
  CHECK(s.used.steps == 3);  // budgets used carry over
}

TEST_CASE("the same spec again is no revision; a revision survives a restart", "[long-life][revision]") {
  TempDir dir;
  Recorder rec;
  rec.replies = {Answer("hello")};
  { Worker(dir.Sub("s"), Agent(), &rec).Run(); }
  { Worker(dir.Sub("s"), Agent(), &rec).Run(); }
  AgentRun edited = Agent();
  edited.spec.goal = "a goal edited after the start";
  { Worker(dir.Sub("s"), edited, &rec).Run(); }
  Worker w(dir.Sub("s"), edited, &rec);
  REQUIRE(w.Run() == Phase::kIdle);
  CHECK(w.runner->state().revision == 2);
  CHECK(OfType(w.Events(), event_type::kSpecRevised).size() == 1);
  CHECK(rec.sent.size() == 1);  // nothing was asked again
}

TEST_CASE("a revision that raises an exhausted lifetime budget wakes the run where it stopped", "[long-life][budget]") {
  TempDir dir;
  Recorder rec;
  AgentRun small = Agent();
  small.spec.budget.max_steps = 2;
  rec.replies = {{"", {{"notes", {{"op", "list"}}}}}, {"", {{"notes", {{"op", "list"}}}}}};
  {
    Worker w(dir.Sub("s"), small, &rec, nullptr, nullptr, false);
    REQUIRE(w.Run() == Phase::kBudgetExhausted);
    CHECK_THAT(w.runner->state().reason, ContainsSubstring("maxSteps (2) reached"));
  }
  AgentRun raised = small;
  raised.spec.budget.max_steps = 10;
  rec.replies = {Answer("finished after all")};
  Worker w(dir.Sub("s"), raised, &rec, nullptr, nullptr, false);
  REQUIRE(w.Run() == Phase::kSucceeded);
  CHECK(w.runner->state().result == "finished after all");
  CHECK(w.runner->state().used.steps == 3);
}


TEST_CASE("a model outage of minutes is waited out: every message answered once, in order, in the same run",
          "[long-life][outage]") {
  FakeOpenAiServer server;
  REQUIRE(server.Start());
  const int port = server.port();
  server.Push(Says("ready"));
  TempDir dir;
  FakeClock clock(1000);
  Recorder unused;
  Worker w(dir.Sub("s"), OpenAiAgent(server.base_url()), &unused, &clock);
  REQUIRE(w.Run() == Phase::kIdle);
  const std::string run_id = w.runner->state().run_id;

  server.Stop();  // the model service goes away: connections are refused
  std::vector<std::string> sent;
  std::vector<int64_t> waits;
  const int64_t outage_ms = 6 * 60 * 1000;
  const int64_t outage_start = clock.now;
  int message = 0;
  while (clock.now - outage_start < outage_ms) {
    if (message < 3) {
      sent.push_back("message " + std::to_string(++message));
      w.Send(sent.back());
    }
    REQUIRE(w.Run() == Phase::kRunning);  // never Failed, never a new run
    auto next = w.runner->NextTryAtMs();
    REQUIRE(next.has_value());
    waits.push_back(*next - clock.now);
    clock.now = *next;
  }
  // The first message's turn waits; the others wait in the inbox behind it.
  CHECK(w.runner->state().inbox.size() == 2);
  CHECK(w.runner->state().model_failures >= 5);
  CHECK_THAT(w.runner->state().model_error, ContainsSubstring("Failed to connect"));
  // Backoff grows and is capped at five minutes.
  CHECK(waits.front() <= kModelRetryInitialMs);
  for (int64_t wait : waits) CHECK(wait <= kModelRetryMaxMs);
  CHECK(*std::max_element(waits.begin(), waits.end()) >= 60 * 1000);

  REQUIRE(server.Start(port));  // the service is back at the same address
  for (int i = 1; i <= 3; ++i) server.Push(Says("answer " + std::to_string(i)));
  REQUIRE(w.Run() == Phase::kIdle);
  const RunState& s = w.runner->state();
  CHECK(s.run_id == run_id);
  CHECK(s.inbox.empty());
  CHECK(s.result == "answer 3");
  // Each message was asked of the model once after the outage, in order.
  auto requests = server.requests();
  REQUIRE(requests.size() == 4);  // the goal's, before the outage, then one per message
  for (int i = 0; i < 3; ++i) {
    const json& msgs = requests[static_cast<size_t>(i) + 1].body["messages"];
    CHECK(msgs.back()["content"] == sent[static_cast<size_t>(i)]);
  }
  auto events = w.Events();
  CHECK(OfType(events, event_type::kTurnStarted).size() == 3);
  CHECK(OfType(events, event_type::kModelUnavailable).size() == waits.size());
  for (const auto& e : OfType(events, event_type::kPhaseChanged)) CHECK(e.data["phase"] != "Failed");
}

TEST_CASE("a model service that refuses the turn holds it (Degraded); resume or a revision continues the same turn",
          "[long-life][outage]") {
  FakeOpenAiServer server("right-key");
  REQUIRE(server.Start());
  TempDir dir;
  Recorder unused;
  AgentRun run = OpenAiAgent(server.base_url());
  HeaderSpec key;
  key.name = "Authorization";
  key.from_env = "CARAPACE_TEST_LONG_LIFE_KEY";
  run.spec.model.api_key = key;
  ::setenv("CARAPACE_TEST_LONG_LIFE_KEY", "wrong-key", 1);
  {
    Worker w(dir.Sub("s"), run, &unused);
    REQUIRE(w.Run() == Phase::kDegraded);
    CHECK(w.runner->state().degraded_cause == "model_refused");
    CHECK_THAT(w.runner->state().reason, ContainsSubstring("ModelRefused"));
    CHECK_THAT(w.runner->state().reason, ContainsSubstring("HTTP 401"));
    CHECK(w.Run() == Phase::kDegraded);  // held: not asked again on its own
    CHECK(server.requests().size() == 1);
  }
  server.Push(Says("hello after all"));
  SECTION("the key is fixed outside the spec (its Secret); a person resumes: the same turn goes on") {
    ::setenv("CARAPACE_TEST_LONG_LIFE_KEY", "right-key", 1);
    Worker w(dir.Sub("s"), run, &unused);
    w.Append(event_type::kResumeRequested);
    REQUIRE(w.Run() == Phase::kIdle);
    CHECK(w.runner->state().result == "hello after all");
    CHECK(w.runner->state().turns == 1);
    CHECK(w.runner->state().step == 1);
  }
  SECTION("a spec revision that names the right key continues the same turn, without a resume") {
    ::setenv("CARAPACE_TEST_LONG_LIFE_KEY_2", "right-key", 1);
    AgentRun fixed = run;
    fixed.spec.model.api_key->from_env = "CARAPACE_TEST_LONG_LIFE_KEY_2";
    Worker w(dir.Sub("s"), fixed, &unused);
    REQUIRE(w.Run() == Phase::kIdle);
    CHECK(w.runner->state().revision == 2);
    CHECK(w.runner->state().result == "hello after all");
    CHECK(w.runner->state().step == 1);
    ::unsetenv("CARAPACE_TEST_LONG_LIFE_KEY_2");
  }
  ::unsetenv("CARAPACE_TEST_LONG_LIFE_KEY");
}

TEST_CASE("a context-length error is recognised as its own cause", "[long-life][outage]") {
  FakeOpenAiServer server;
  REQUIRE(server.Start());
  FakeCompletion too_long;
  too_long.status = 400;
  // vLLM's OpenAI server, vllm/entrypoints/openai/serving_engine.py (_validate_input).
  too_long.error_message =
      "This model's maximum context length is 4096 tokens. However, you requested 5120 tokens (4096 in the messages, "
      "1024 in the completion). Please reduce the length of the messages or completion.";
  server.Push(too_long);
  TempDir dir;
  Recorder unused;
  Worker w(dir.Sub("s"), OpenAiAgent(server.base_url()), &unused);
  REQUIRE(w.Run() == Phase::kDegraded);
  CHECK(w.runner->state().degraded_cause == "context_length");
  CHECK_THAT(w.runner->state().reason, ContainsSubstring("ContextLengthExceeded"));
  CHECK_THAT(w.runner->state().reason, ContainsSubstring("maximum context length is 4096"));
}

TEST_CASE("model failures are told apart by what a retry can fix", "[long-life][outage]") {
  CHECK(ClassifyModelFailure(Unavailable("Failed to connect")) == ModelFailure::kUnavailable);
  CHECK(ClassifyModelFailure(ResourceExhausted("HTTP 429")) == ModelFailure::kUnavailable);
  CHECK(ClassifyModelFailure(DeadlineExceeded("too slow")) == ModelFailure::kUnavailable);
  CHECK(ClassifyModelFailure(PermissionDenied("HTTP 401")) == ModelFailure::kRefused);
  CHECK(ClassifyModelFailure(NotFound("HTTP 404: The model `x` does not exist.")) == ModelFailure::kRefused);
  CHECK(ClassifyModelFailure(InvalidArgument("HTTP 400: bad temperature")) == ModelFailure::kRefused);
  CHECK(ClassifyModelFailure(FailedPrecondition("the script has 2 replies")) == ModelFailure::kNeverAnswers);
  // Each service's wording, whatever code carried it.
  CHECK(IsContextLengthError("This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens."));
  CHECK(IsContextLengthError("The decoder prompt (length 5000) is longer than the maximum model length of 4096."));
  CHECK(IsContextLengthError("Prompt length (5000) exceeds maximum input length (4096)"));
  CHECK(IsContextLengthError("the request exceeds the available context size, try increasing it"));
  CHECK(ClassifyModelFailure(Unavailable("in ensemble: Prompt length (9000) exceeds maximum input length (8192) (gRPC 13)")) ==
        ModelFailure::kContextLength);
  CHECK_FALSE(IsContextLengthError("connection refused"));
  // Backoff: 1 s doubling, capped at 5 min, never below half of its step.
  CHECK(ModelRetryDelayMs(1) <= 1000);
  CHECK(ModelRetryDelayMs(1) >= 500);
  CHECK(ModelRetryDelayMs(4) >= 4000);
  CHECK(ModelRetryDelayMs(40) <= kModelRetryMaxMs);
  CHECK(ModelRetryDelayMs(40) >= kModelRetryMaxMs / 2);
}

TEST_CASE("a reply cut short is never an answer: asked again once, else the turn fails", "[long-life][cut]") {
  FakeOpenAiServer server;
  REQUIRE(server.Start());
  TempDir dir;
  Recorder unused;
  // llama.cpp's llama-server: out of room mid tool call, it drops the unfinished call and
  // sends the text before it with finish_reason "length".
  FakeCompletion cut;
  cut.content = {"Let me write the file. "};
  cut.finish_reason = "length";
  SECTION("asked again, the second reply is the answer") {
    server.Push(cut);
    server.Push(Says("The whole answer."));
    Worker w(dir.Sub("s"), OpenAiAgent(server.base_url()), &unused, nullptr, nullptr, false);
    REQUIRE(w.Run() == Phase::kSucceeded);
    CHECK(w.runner->state().result == "The whole answer.");
    for (const auto& m : w.runner->state().messages) CHECK(m.content != "Let me write the file. ");
    CHECK(OfType(w.Events(), event_type::kModelReplyCut).size() == 1);
  }
  SECTION("cut twice: one-shot run Failed, never Succeeded with the fragment") {
    server.Push(cut);
    server.Push(cut);
    Worker w(dir.Sub("s"), OpenAiAgent(server.base_url()), &unused, nullptr, nullptr, false);
    REQUIRE(w.Run() == Phase::kFailed);
    CHECK_THAT(w.runner->state().reason, ContainsSubstring("cut short twice"));
    CHECK(w.runner->state().result.empty());
  }
  SECTION("content filter, cut twice: a long-lived agent ends that turn and takes the next message") {
    cut.finish_reason = "content_filter";
    server.Push(cut);
    server.Push(cut);
    server.Push(Says("next one answered"));
    Worker w(dir.Sub("s"), OpenAiAgent(server.base_url()), &unused);
    REQUIRE(w.Run() == Phase::kIdle);
    CHECK_THAT(w.runner->state().reason, ContainsSubstring("ended without an answer"));
    CHECK(w.runner->state().result.empty());
    w.Send("next");
    REQUIRE(w.Run() == Phase::kIdle);
    CHECK(w.runner->state().result == "next one answered");
  }
}

TEST_CASE("a per-turn budget ends that turn only; the agent takes the next message", "[long-life][budget]") {
  TempDir dir;
  Recorder rec;
  AgentRun run = Agent();
  run.spec.budget.per_turn = TurnBudgetSpec{2, std::nullopt, std::nullopt};
  ScriptedReply loop{"", {{"notes", {{"op", "list"}}}}};
  rec.replies = {Answer("hi"), loop, loop, Answer("short answer")};
  Worker w(dir.Sub("s"), run, &rec);
  REQUIRE(w.Run() == Phase::kIdle);
  w.Send("keep listing files");
  REQUIRE(w.Run() == Phase::kIdle);
  CHECK_THAT(w.runner->state().reason, ContainsSubstring("turn 2 ended without an answer: budget.perTurn.maxSteps (2) reached"));
  CHECK(w.runner->state().result.empty());  // no answer, and no earlier turn's answer either
  w.Send("a short question");
  REQUIRE(w.Run() == Phase::kIdle);
  CHECK(w.runner->state().result == "short answer");
  CHECK(w.runner->state().used.steps == 4);
}

TEST_CASE("a period budget defers work until its window allows; nothing is dropped", "[long-life][budget]") {
  TempDir dir;
  Recorder rec;
  AgentRun run = Agent();
  run.spec.budget.per_period = PeriodBudgetSpec{3600, 20};  // each reply costs 15 tokens
  rec.replies = {Answer("one"), Answer("two"), Answer("three")};
  FakeClock clock(1000);
  FakeClock wall(1'800'000'000'000);
  Worker w(dir.Sub("s"), run, &rec, &clock, &wall);
  REQUIRE(w.Run() == Phase::kIdle);
  wall.now += 60 * 1000;
  clock.now += 60 * 1000;
  w.Send("second");
  REQUIRE(w.Run() == Phase::kIdle);  // 15 in the window: under 20
  w.Send("third");
  REQUIRE(w.Run() == Phase::kRunning);  // 30 in the window: waits
  CHECK(rec.sent.size() == 2);
  auto next = w.runner->NextTryAtMs();
  REQUIRE(next.has_value());
  // The first reply's bucket leaves the hour-long window first.
  CHECK(*next - clock.now > 55 * 60 * 1000);
  CHECK(*next - clock.now <= 60 * 60 * 1000);
  CHECK_THAT(w.runner->state().deferred_reason, ContainsSubstring("budget.perPeriod.maxTokens (20 per 3600 s)"));
  CHECK(OfType(w.Events(), event_type::kBudgetDeferred).size() == 1);
  REQUIRE(w.Run() == Phase::kRunning);  // woken early: still waits, records nothing new
  CHECK(OfType(w.Events(), event_type::kBudgetDeferred).size() == 1);
  wall.now += *next - clock.now;
  clock.now = *next;
  REQUIRE(w.Run() == Phase::kIdle);
  CHECK(w.runner->state().result == "three");
}

TEST_CASE("ChangedSpecFields names the fields a person changed", "[long-life][revision]") {
  AgentRun a = Agent();
  AgentRun b = a;
  CHECK(ChangedSpecFields(a.SpecJson(), b.SpecJson()).empty());
  b.spec.model.temperature = 0.2;
  b.spec.goal = "other";
  CHECK(ChangedSpecFields(a.SpecJson(), b.SpecJson()) == std::vector<std::string>{"goal", "model.temperature"});
}

TEST_CASE("a fresh start sets the old run aside whole; a legacy spec-hash layout is adopted, newest first",
          "[long-life][restart]") {
  TempDir dir;
  Recorder rec;
  rec.replies = {Answer("a"), Answer("b"), Answer("c")};
  SECTION("set aside") {
    std::string run_id;
    {
      Worker w(dir.Sub("s"), Agent(), &rec);
      w.Run();
      run_id = w.runner->state().run_id;
    }
    auto aside = SetRunAside(dir.Sub("s"));
    REQUIRE(aside.ok());
    CHECK(*aside == dir.Sub("s") + ".previous-" + run_id.substr(0, 12));
    CHECK_FALSE(std::filesystem::exists(dir.Sub("s")));
    {
      Worker old(*aside, Agent(), &rec);
      CHECK(old.runner->state().run_id == run_id);
    }
    Worker fresh(dir.Sub("s"), Agent(), &rec);
    CHECK(fresh.runner->state().phase == Phase::kPending);
    REQUIRE(fresh.Run() == Phase::kIdle);
    CHECK(fresh.runner->state().run_id != run_id);
    auto nothing = SetRunAside(dir.Sub("empty"));
    REQUIRE(nothing.ok());
    CHECK(nothing->empty());
  }
  SECTION("adopt") {
    FakeClock clock(1000);
    FakeClock wall(1'700'000'000'000);
    AgentRun older = Agent();
    older.spec.goal = "the first spec";
    { Worker(dir.Sub("runs/aaaaaaaaaaaa"), older, &rec, &clock, &wall).Run(); }
    wall.now += 1000;
    { Worker(dir.Sub("runs/bbbbbbbbbbbb"), Agent(), &rec, &clock, &wall).Run(); }
    std::filesystem::create_directories(dir.Sub("runs/not-a-run"));
    auto adopted = AdoptNewestRun(dir.Sub("runs"), dir.Sub("agent"));
    REQUIRE(adopted.ok());
    CHECK(*adopted == dir.Sub("runs/bbbbbbbbbbbb"));
    CHECK(std::filesystem::exists(dir.Sub("runs/aaaaaaaaaaaa/store")));
    CHECK(std::filesystem::exists(dir.Sub("agent/store")));
    // Once adopted, the state dir holds a run: nothing more is moved.
    auto again = AdoptNewestRun(dir.Sub("runs"), dir.Sub("agent"));
    REQUIRE(again.ok());
    CHECK(again->empty());
    Worker w(dir.Sub("agent"), Agent(), &rec);
    CHECK(w.runner->state().result == "b");
  }
}
