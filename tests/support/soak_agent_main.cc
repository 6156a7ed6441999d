// carapace-test-soak-agent: one stretch of the 90-day soak (tests/integration/soak_test.cc).
// Test support only: never shipped.
//
// It lives an agent's life on a simulated clock, from wherever the state dir left off:
//   - every hour, the spec's hourly cron prompt (the worker's own DueCronMessage);
//   - 20 messages a day (two an hour from 08:00 to 17:00), message N naming identifier ID-N,
//     each answered after a tool call that returns a few KB;
//   - a model outage every day from 12:05 to 12:35 (the service stops; calls are refused);
//   - the spec edited on day 30 (instructions) and day 60 (spec.retention: 30 days): the
//     process exits 4 at the first hour of those days, as a pod is rolled for a new spec;
//   - with --kill-every K, SIGKILL to itself after K/2..3K/2 events (a real kill -9).
// The model is an OpenAI-compatible double in this process (tests/support/fake_openai.h)
// with vLLM's window rules at 8,192 tokens, on a port the test gives (a restarted process
// serves at the same address, so the spec, and its hash, stay the same).
//
// Everything it does is idempotent against the store: cron prompts fire once per
// occurrence (RunState::cron_fired_ms), message N is sent with a meta record of it in the
// same write, so a process killed anywhere picks up exactly where the store says.
//
// It appends what the test checks to --stats, one line each, written before any kill:
//   start DAY MS            open + load + ready of this process
//   prompt DAY TOKENS       a chat request the model was sent (counted as vLLM's double does)
//   answer DAY SEQ TEXT     a turn's answer (a phase change to Idle, event SEQ)
//   refused DAY SEQ         a compaction because the service refused a prompt as too long
// A kill in the middle of a batch's events leaves later events of it unlogged: each start
// first logs what the store holds past the last logged sequence number.
//   recall ID TEXT          --recall: the answer to "recall ID"
//
// Exit: 0 at the end of --until-day, 4 to be restarted for a spec revision, 1 on an error.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/time.h"
#include "tests/support/agentish.h"
#include "tests/support/fake_clock.h"
#include "tests/support/fake_openai.h"
#include "worker/runtime/context_window.h"
#include "worker/runtime/due_crons.h"
#include "worker/runtime/run_loader.h"
#include "worker/runtime/runner.h"

using namespace carapace;
using carapace::testing::FakeClock;
using carapace::testing::Identifiers;
using carapace::testing::IsFlushRequest;
using carapace::testing::IsSummaryRequest;
using carapace::testing::Joined;
using carapace::testing::SummaryKeepingIdentifiers;
using carapace::testing::FakeCompletion;
using carapace::testing::FakeOpenAiServer;
using nlohmann::json;

namespace {

constexpr int64_t kT0 = 1798761600000;  // 2027-01-01T00:00:00Z
constexpr int64_t kMinute = 60 * 1000;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kDay = 24 * kHour;
constexpr int64_t kWindow = 8192;
constexpr int kFiles = 40;
const char* const kSentKey = "soakMessagesSent";

std::atomic<int> g_day{0};

[[noreturn]] void Die(const std::string& why) {
  std::fprintf(stderr, "soak agent: %s\n", why.c_str());
  std::exit(1);
}

class Stats {
 public:
  explicit Stats(const std::string& path) : fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) {
    if (fd_ < 0) Die("cannot open " + path);
  }
  // One write(2) per line: on disk (in the page cache) before a SIGKILL can come.
  void Line(const std::string& text) {
    const std::string line = text + "\n";
    if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) Die("cannot write stats");
  }

 private:
  int fd_;
};

int DayOf(int64_t ms) { return static_cast<int>((ms - kT0) / kDay); }
int RevisionOf(int day) { return day >= 60 ? 3 : day >= 30 ? 2 : 1; }

FakeCompletion ToolCallTo(const std::string& name, const json& arguments) {
  FakeCompletion c;
  c.tool_calls = {{{"index", 0}, {"id", "call-1"}, {"type", "function"},
                   {"function", {{"name", name}, {"arguments", arguments.dump()}}}}};
  return c;
}

FakeCompletion Text(const std::string& text) {
  FakeCompletion c;
  c.content = {text};
  return c;
}

// What the agent's model does. A summary request is answered with every identifier it was
// shown (the previous summary's among them); a memory flush stores the identifiers about to
// leave the context; message N reads a file, then answers; "recall ID" searches memory, then
// says whether what it was shown (summary, memory, messages) names the identifier.
FakeCompletion Respond(const json& body, Stats* stats) {
  std::vector<std::pair<std::string, std::string>> messages;
  for (const auto& m : body["messages"]) {
    messages.emplace_back(m.value("role", ""), m.contains("content") && m["content"].is_string() ? m["content"].get<std::string>() : "");
  }
  stats->Line("prompt " + std::to_string(g_day.load()) + " " +
              std::to_string(FakeOpenAiServer::CountPromptTokens(body["messages"])));
  if (messages.empty()) return Text("nothing asked");
  if (IsSummaryRequest(messages.front().second)) {
    std::string all;
    for (const auto& [role, content] : messages) all += content + "\n";
    return Text(SummaryKeepingIdentifiers(all));
  }
  size_t question = messages.size();
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].first == "user") question = i;
  }
  if (question == messages.size()) return Text("no question");
  const std::string& asked = messages[question].second;
  const bool answering = messages.back().first == "tool";
  if (IsFlushRequest(asked)) {
    if (answering) return Text("done");
    return ToolCallTo("memory_store", {{"text", "identifiers: " + Joined(Identifiers(asked))}});
  }
  std::smatch m;
  if (std::regex_search(asked, m, std::regex(R"(^recall (ID-\d+))"))) {
    const std::string id = m[1].str();
    if (!answering) return ToolCallTo("memory_search", {{"query", id}, {"limit", 10}});
    std::string shown;
    for (size_t i = 0; i < messages.size(); ++i) {
      if (i != question) shown += messages[i].second + "\n";
    }
    return Text((Identifiers(shown).count(id) ? "found " : "lost ") + id);
  }
  if (std::regex_search(asked, m, std::regex(R"(^message (\d+):)"))) {
    if (!answering) {
      return ToolCallTo("notes", {{"op", "read"}, {"path", "file-" + std::to_string(std::stoi(m[1].str()) % kFiles) + ".txt"}});
    }
    return Text("answered: " + asked.substr(0, asked.find(':') + 1));
  }
  return Text("checked: nothing due");
}

AgentRun SoakRun(int port, int revision) {
  AgentRun run;
  run.metadata.name = "soak";
  run.spec.goal = "Answer each message; remember the identifiers you are told.";
  run.spec.instructions = "You are a careful assistant.";
  if (revision >= 2) run.spec.instructions += " Answer briefly.";
  if (revision >= 3) run.spec.retention = RetentionSpec{30, std::nullopt};
  run.spec.model.backend = "openai";
  run.spec.model.name = "llm";
  run.spec.model.endpoint = "http://127.0.0.1:" + std::to_string(port) + "/v1";
  run.spec.model.timeout_seconds = 10;
  run.spec.model.retry = {2, 1, 2};
  // The breaker counts real seconds; the outage is simulated: it must not outlast it.
  run.spec.model.circuit_breaker = {1000, 1};
  run.spec.budget.max_steps = 100000000;
  run.spec.budget.max_tokens = int64_t{1} << 40;
  run.spec.budget.max_tool_calls = 100000000;
  run.spec.budget.max_wall_clock_seconds = 10LL * 365 * 24 * 3600;
  ToolSpec notes;
  notes.name = "notes";
  notes.kind = "workspace";
  ToolSpec memory;
  memory.name = "memory";
  memory.kind = "memory";
  run.spec.tools = {notes, memory};
  ScheduleSpec schedule;
  schedule.cron = {CronSpec{"hourly", "0 * * * *", "Hourly check: is anything due?"}};
  run.spec.schedule = schedule;
  return run;
}

struct Options {
  std::string dir;
  std::string stats;
  int port = 0;
  int until_day = 0;
  int kill_every = 0;
  unsigned seed = 1;
  std::vector<std::string> recall;
};

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--dir") o.dir = v;
    else if (k == "--stats") o.stats = v;
    else if (k == "--port") o.port = std::atoi(v.c_str());
    else if (k == "--until-day") o.until_day = std::atoi(v.c_str());
    else if (k == "--kill-every") o.kill_every = std::atoi(v.c_str());
    else if (k == "--seed") o.seed = static_cast<unsigned>(std::strtoul(v.c_str(), nullptr, 10));
    else if (k == "--recall") o.recall.push_back(v);
    else Die("unknown flag " + k);
  }
  if (o.dir.empty() || o.stats.empty() || o.port == 0) Die("usage: --dir D --stats F --port P [--until-day N] [--kill-every K] [--recall ID]");
  return o;
}

class Life {
 public:
  Life(const Options& o, Stats* stats) : o_(o), stats_(stats), clock_(kT0) {}

  int Main() {
    const int64_t started = MonoNowNanos();
    auto opened = RunStore::Open(o_.dir, RunStore::OpenMode::kCreateIfMissing);
    if (!opened.ok()) Die(opened.status().ToString());
    store_ = std::move(opened).value();
    if (store_->last_seq() > 0) {
      auto last = store_->GetEvent(store_->last_seq());
      if (!last.ok() || !last->has_value()) Die("cannot read the last event");
      auto e = Event::Decode(store_->last_seq(), **last);
      if (!e.ok()) Die(e.status().ToString());
      clock_.now = std::max(clock_.now, e->ts_ms);
    }
    revision_ = RevisionOf(DayOf(clock_.now));
    g_day = DayOf(clock_.now);
    for (int i = 0; i < kFiles; ++i) {
      std::ofstream(store_->workspace_dir() + "/file-" + std::to_string(i) + ".txt")
          << std::string(2000 + 100 * i, static_cast<char>('a' + i % 26));
    }
    RegisterBuiltinModels(&models_);
    RegisterBuiltinTools(&tools_);
    model_.SetKeepRequests(false);
    model_.SetMaxModelLen(kWindow);
    model_.SetResponder([this](const json& body) { return Respond(body, stats_); });
    SetOutage();
    RunnerOptions options;
    options.persistent = true;
    options.clock = &clock_;
    options.wall_clock = &clock_;
    std::mt19937 random(o_.seed ^ static_cast<unsigned>(store_->last_seq()));
    const int64_t kill_at = o_.kill_every > 0 ? o_.kill_every / 2 + static_cast<int64_t>(random() % static_cast<unsigned>(o_.kill_every)) : 0;
    int64_t seen = 0;
    CatchUp();
    options.on_event = [&](const Event& e, const RunState&) {
      Log(e);
      if (kill_at > 0 && ++seen >= kill_at) ::raise(SIGKILL);
    };
    auto runner = Runner::Create(store_.get(), SoakRun(o_.port, revision_), models_, tools_, options);
    if (!runner.ok()) Die(runner.status().ToString());
    runner_ = std::move(runner).value();
    (void)runner_->model().CheckHealth();  // as the worker's health thread does: the window is learned
    stats_->Line("start " + std::to_string(DayOf(clock_.now)) + " " +
                 std::to_string(static_cast<double>(MonoNowNanos() - started) / 1e6));
    RunToIdle();
    if (!o_.recall.empty()) return Recall();
    for (int64_t hour = (clock_.now - kT0) / kHour; hour < int64_t{o_.until_day} * 24; ++hour) {
      At(kT0 + hour * kHour);
      FireCron();
      if (RevisionOf(DayOf(clock_.now)) != revision_) return 4;  // the spec was edited: a new pod
      const int64_t hour_of_day = hour % 24;
      if (hour_of_day >= 8 && hour_of_day < 18) {
        for (int k = 0; k < 2; ++k) {
          At(kT0 + hour * kHour + (10 + 30 * k) * kMinute);
          const int64_t n = (hour / 24) * 20 + (hour_of_day - 8) * 2 + k + 1;
          Send(n);
          RunToIdle();
        }
      }
      RunToIdle();
    }
    return 0;
  }

 private:
  void Log(const Event& e) {
    const std::string at = std::to_string(DayOf(e.ts_ms)) + " " + std::to_string(e.seq);
    if (e.type == event_type::kPhaseChanged && e.data.value("phase", "") == "Idle") {
      stats_->Line("answer " + at + " " + e.data.value("result", ""));
    }
    if (e.type == event_type::kContextCompacted && e.data.value("reason", "").find("does not fit") != std::string::npos) {
      stats_->Line("refused " + at);
    }
  }

  // Logs the events of the store after the last one logged.
  void CatchUp() {
    uint64_t logged = 0;
    std::ifstream in(o_.stats);
    for (std::string line; std::getline(in, line);) {
      std::istringstream words(line);
      std::string kind;
      int day = 0;
      uint64_t seq = 0;
      if ((words >> kind >> day >> seq) && (kind == "answer" || kind == "refused")) logged = std::max(logged, seq);
    }
    Status decoded;
    Status read = store_->ForEachEvent(logged + 1, [&](uint64_t seq, std::string_view value) {
      auto e = Event::Decode(seq, value);
      if (!e.ok()) {
        decoded = e.status();
        return false;
      }
      Log(*e);
      return true;
    });
    if (!read.ok() || !decoded.ok()) Die("cannot read the log: " + read.ToString() + " " + decoded.ToString());
  }

  void At(int64_t ms) {
    clock_.now = std::max(clock_.now, ms);
    g_day = DayOf(clock_.now);
  }

  // The service is down from 12:05 to 12:35 each day.
  void SetOutage() {
    const int64_t in_day = (clock_.now - kT0) % kDay;
    const bool down = in_day >= 12 * kHour + 5 * kMinute && in_day < 12 * kHour + 35 * kMinute;
    if (down && up_) {
      model_.Stop();
      up_ = false;
    } else if (!down && !up_) {
      if (!model_.Start(o_.port)) Die("cannot serve the model at port " + std::to_string(o_.port));
      up_ = true;
    }
  }

  void FireCron() {
    const AgentRun run = SoakRun(o_.port, revision_);
    for (const auto& c : run.spec.schedule->cron) {
      auto schedule = CronSchedule::Parse(c.schedule);
      if (!schedule.ok()) Die(schedule.status().ToString());
      if (auto e = DueCronMessage(c, *schedule, runner_->state(), clock_.now)) {
        if (!AppendExternalEvent(store_.get(), *e, &clock_).ok()) Die("cannot queue the cron prompt");
        RunToIdle();  // applies it, so the next hour sees it fired
      }
    }
  }

  // Message n, unless the store says it was sent: the message and the record of it in one
  // write.
  void Send(int64_t n) {
    auto sent = store_->GetMeta(kSentKey);
    if (!sent.ok()) Die(sent.status().ToString());
    if (*sent && std::stoll(**sent) >= n) return;
    Event e;
    e.type = event_type::kMessageReceived;
    e.step = runner_->state().step;
    e.ts_ms = clock_.now;
    e.data = {{"text", "message " + std::to_string(n) + ": remember ID-" + std::to_string(n) +
                           ". Some context for it: " + std::string(300, 'c')},
              {"from", "soak"}};
    auto lock = store_->WriteLock();
    StoreBatch batch;
    batch.events.push_back(e.Encode());
    batch.meta = {{kSentKey, std::to_string(n)}};
    if (!store_->Commit(batch, true).ok()) Die("cannot send message " + std::to_string(n));
  }

  // Runs the agent until it is idle; a model outage is waited out on the simulated clock.
  void RunToIdle() {
    for (int guard = 0; guard < 100000; ++guard) {
      SetOutage();
      auto phase = runner_->Run();
      if (!phase.ok()) Die(phase.status().ToString());
      if (*phase == Phase::kIdle) return;
      auto next = runner_->NextTryAtMs();
      if (*phase != Phase::kRunning || !next) {
        Die(std::string("the agent stopped ") + PhaseName(*phase) + ": " + runner_->state().reason);
      }
      At(std::max(clock_.now + 1, *next));
    }
    Die("the agent never went idle");
  }

  int Recall() {
    for (const auto& id : o_.recall) {
      At(clock_.now + kMinute);
      Event e;
      e.type = event_type::kMessageReceived;
      e.data = {{"text", "recall " + id + ": what do you know of it?"}, {"from", "soak"}};
      if (!AppendExternalEvent(store_.get(), e, &clock_).ok()) Die("cannot ask to recall " + id);
      RunToIdle();
      stats_->Line("recall " + id + " " + runner_->state().result);
    }
    return 0;
  }

  const Options& o_;
  Stats* stats_;
  FakeClock clock_;
  FakeOpenAiServer model_;
  bool up_ = false;
  int revision_ = 1;
  ModelRegistry models_;
  ToolRegistry tools_;
  std::unique_ptr<RunStore> store_;
  std::unique_ptr<Runner> runner_;
};

}  // namespace

int main(int argc, char** argv) {
  log::SetLevel(log::Level::kError);
  Options o = Parse(argc, argv);
  Stats stats(o.stats);
  Life life(o, &stats);
  return life.Main();
}
