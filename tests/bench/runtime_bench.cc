// carapace-bench-runtime: what durable execution costs, against the floor of the disk.
//
//   raw append + fdatasync of 512 B          the floor of any durable step on this disk
//   per-step overhead, sync durability       scripted model + no-op tool; ratio to the floor
//   steps per second, batch durability
//   reopen + resume of a run of 10,000 events (after a clean stop, and after kill -9)
//   peak RSS of `carapace run`
//   one compaction of a 400-turn conversation, without the model's time
//   a long-lived agent (8,192-token window, compacting) at 10,000, N/10 and N events
//   (--history-events N, default 1,000,000): its start (open + load the state) against
//   opening the bare store, the peak RSS of a process that only starts it, bytes on disk
//   (--history-only true: this part alone)
//   tracing: the step with tracing off, on with the OTLP receiver up, and on with it down
//   (spans dropped and counted, nothing waits), against the floor and against tracing off
//   (--tracing-only true: this part alone)
//   backup: a live backup of a 1 GiB store (--backup-mib N) against copying the same bytes
//   on the same disk, and the steps of the agent while backups are taken against the others
//   (--backup-only true: this part alone); an export's archive of the same store, against
//   the same copy
//
// Usage: carapace-bench-runtime [--dir DIR] [--steps N]. DIR (default: ./bench-data) must be
// on the disk being measured; it is created and removed.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <iterator>
#include <map>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/bench/bench_stats.h"
#include "common/file.h"
#include "common/log.h"
#include "common/telemetry/tracing.h"
#include "common/time.h"
#include "tests/support/child_process.h"
#include "tests/support/otlp_receiver.h"
#include "worker/runtime/run_loader.h"
#include "worker/runtime/handoff.h"
#include "worker/runtime/runner.h"

using namespace carapace;

using carapace::bench::Percentile;

namespace {


// The floor: append 512 bytes and fdatasync, as a write-ahead log does.
std::vector<double> RawFdatasyncMs(const std::string& dir, int n) {
  std::string path = dir + "/raw.log";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
  if (fd < 0) {
    std::perror("open");
    std::exit(1);
  }
  std::string block(512, 'x');
  std::vector<double> out;
  for (int i = 0; i < n; ++i) {
    int64_t t0 = MonoNowNanos();
    if (::write(fd, block.data(), block.size()) != 512 || ::fdatasync(fd) != 0) {
      std::perror("write/fdatasync");
      std::exit(1);
    }
    out.push_back(static_cast<double>(MonoNowNanos() - t0) / 1e6);
  }
  ::close(fd);
  std::filesystem::remove(path);
  return out;
}

class NoopTool : public Tool {
 public:
  NoopTool(std::string name, Effect effect) : name_(std::move(name)), effect_(effect) {}
  ToolSchema Schema() const override { return {name_, "does nothing", {{"type", "object"}}}; }
  Effect DefaultEffect() const override { return effect_; }
  ToolResult Call(const nlohmann::json&, const ToolContext&) override { return ToolResult::Ok({{"ok", true}}); }

 private:
  std::string name_;
  Effect effect_;
};

AgentRun NoopRun(int steps, Durability durability, Effect effect) {
  AgentRun run;
  run.metadata.name = "bench";
  run.spec.goal = "benchmark";
  run.spec.model.backend = "scripted";
  for (int i = 0; i < steps; ++i) run.spec.model.script.push_back({"", {{"noop", {{"i", i}}}}});
  run.spec.model.script.push_back({"done", {}});
  ToolSpec noop;
  noop.name = "noop";
  noop.kind = "noop";
  noop.effect = effect;
  run.spec.tools.push_back(noop);
  run.spec.budget.max_steps = steps + 10;
  run.spec.budget.max_tokens = int64_t{1} << 40;
  run.spec.budget.max_tool_calls = steps + 10;
  run.spec.durability = durability;
  // A window that holds the whole one-turn run: this measures the durable step; compaction
  // is measured on its own below.
  run.spec.model.context_tokens = 1 << 24;
  return run;
}

// Runs `run` in `dir` and returns the duration of each step (ms), from step end to step end.
std::vector<double> StepTimesMs(const std::string& dir, const AgentRun& run) {
  std::filesystem::remove_all(dir);
  ModelRegistry models;
  RegisterBuiltinModels(&models);
  ToolRegistry tools;
  tools.Register("noop", [](const ToolSpec& s, const ToolEnvironment&) -> Result<std::unique_ptr<Tool>> {
    return std::unique_ptr<Tool>(new NoopTool(s.name, *s.effect));
  });
  auto store = RunStore::Open(dir, RunStore::OpenMode::kCreateIfMissing);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    std::exit(1);
  }
  std::vector<double> times;
  int64_t last = 0;
  RunnerOptions options;
  options.on_event = [&](const Event& e, const RunState&) {
    if (e.type != event_type::kStepCompleted) return;
    int64_t now = MonoNowNanos();
    if (last != 0) times.push_back(static_cast<double>(now - last) / 1e6);
    last = now;
  };
  auto runner = Runner::Create(store->get(), run, models, tools, options);
  if (!runner.ok() || !(*runner)->Run().ok()) {
    std::fprintf(stderr, "bench run failed\n");
    std::exit(1);
  }
  return times;
}

// A model that answers at once: each turn with a short reply, a summary request with 1 KiB.
// Its own time is measured, to be taken out of the compaction's.
class InstantModel : public ModelBackend {
 public:
  explicit InstantModel(double* ms) : ms_(ms) {}
  Status Chat(const ModelRequest& request, ChatStream* out) override {
    const int64_t t0 = MonoNowNanos();
    const std::string& system = request.messages->front().content;
    const bool summary = system.compare(0, 40, std::string(kSummaryInstructions).substr(0, 40)) == 0;
    out->Text(summary ? std::string(1024, 's') : "ok");
    out->Usage(EstimatePromptTokens(*request.messages), 2);
    out->Finish("stop");
    *ms_ += static_cast<double>(MonoNowNanos() - t0) / 1e6;
    return Status::Ok();
  }

 private:
  double* ms_;
};

// A persistent agent on the instant model, in a state dir of its own: the compaction and
// long-history measurements. Exits on any error (a benchmark has nothing to recover).
struct InstantAgent {
  // `window`: the model's context window (0: so large that only CompactNow compacts).
  // `fresh`: start a new run in `dir`; else go on with the one there.
  InstantAgent(const std::string& dir, Durability durability, int64_t window = 0, bool fresh = true) {
    if (fresh) std::filesystem::remove_all(dir);
    models.Register("instant", [this](const BackendContext&) -> Result<std::unique_ptr<ModelBackend>> {
      return std::unique_ptr<ModelBackend>(new InstantModel(&model_ms));
    });
    AgentRun run = NoopRun(0, durability, Effect::kIdempotent);
    run.spec.model.backend = "instant";
    run.spec.model.script.clear();
    run.spec.model.context_tokens = window > 0 ? window : 1 << 24;
    run.spec.tools.clear();
    run.spec.budget.max_steps = 100000000;
    auto opened = RunStore::Open(dir, RunStore::OpenMode::kCreateIfMissing);
    if (!opened.ok()) Die(opened.status());
    store = std::move(opened).value();
    RunnerOptions options;
    options.persistent = true;
    auto made = Runner::Create(store.get(), run, models, tools, options);
    if (!made.ok()) Die(made.status());
    runner = std::move(made).value();
    if (auto phase = runner->Run(); !phase.ok()) Die(phase.status());
  }
  // One turn: a message, and the agent's answer.
  void Turn(const std::string& text) {
    Event e;
    e.type = event_type::kMessageReceived;
    e.data = {{"text", text}, {"from", "bench"}};
    if (auto seq = AppendExternalEvent(store.get(), e); !seq.ok()) Die(seq.status());
    if (auto phase = runner->Run(); !phase.ok()) Die(phase.status());
  }
  static void Die(const Status& s) {
    std::fprintf(stderr, "instant agent: %s\n", s.ToString().c_str());
    std::exit(1);
  }
  double model_ms = 0;
  ModelRegistry models;
  ToolRegistry tools;
  std::unique_ptr<RunStore> store;
  std::unique_ptr<Runner> runner;
};

// Runs 400 turns of a few hundred bytes each, then times one requested compaction (every
// turn but the last folded) less the model's time.
double CompactionMs(const std::string& dir) {
  InstantAgent agent(dir, Durability::kSync);
  for (int i = 0; i < 400; ++i) agent.Turn("message " + std::to_string(i) + " " + std::string(300, 'm'));
  agent.model_ms = 0;
  const int64_t t0 = MonoNowNanos();
  auto changed = agent.runner->CompactNow("bench");
  const double ms = static_cast<double>(MonoNowNanos() - t0) / 1e6;
  if (!changed.ok() || !*changed) {
    std::fprintf(stderr, "compaction bench: nothing compacted\n");
    std::exit(1);
  }
  return ms - agent.model_ms;
}

// Start and memory of an agent as its history grows: at each size, the worker's start (open
// the store, load the state) against opening the bare store, in this process; and the peak
// RSS of a process that does only that start (this program run with --load-only).
struct HistoryFigures {
  double bare_ms = 0;
  double start_ms = 0;
  long rss_kib = 0;
  int64_t held_messages = 0;
  int64_t messages = 0;
  uint64_t disk_bytes = 0;
};

// p50 of 3 opens: the bare store, and the store with the run's state loaded (a start).
HistoryFigures MeasureStart(const std::string& dir) {
  HistoryFigures f;
  std::vector<double> bare, start;
  for (int i = 0; i < 3; ++i) {
    int64_t t0 = MonoNowNanos();
    { auto store = RunStore::Open(dir, RunStore::OpenMode::kMustExist); if (!store.ok()) std::exit(1); }
    bare.push_back(static_cast<double>(MonoNowNanos() - t0) / 1e6);
    t0 = MonoNowNanos();
    auto store = RunStore::Open(dir, RunStore::OpenMode::kMustExist);
    auto state = store.ok() ? LoadRunState(**store) : Result<RunState>(store.status());
    if (!state.ok()) std::exit(1);
    start.push_back(static_cast<double>(MonoNowNanos() - t0) / 1e6);
    f.held_messages = state->messages.held();
    f.messages = state->messages.size();
  }
  f.bare_ms = Percentile(bare, 0.5);
  f.start_ms = Percentile(start, 0.5);
  const carapace::testing::MeasuredRun load = carapace::testing::RunMeasured({"/proc/self/exe", "--load-only", dir});
  if (load.exit_code != 0) std::exit(1);
  f.rss_kib = load.max_rss_kib;
  f.disk_bytes = carapace::DirectoryBytes(dir);
  return f;
}

// --load-only DIR: a worker's start and nothing else, for its peak RSS.
int LoadOnly(const std::string& dir) {
  auto store = RunStore::Open(dir, RunStore::OpenMode::kMustExist);
  if (!store.ok()) return 1;
  return LoadRunState(**store).ok() ? 0 : 1;
}

// A persistent agent lives through turns (a message, a short answer: about 6 events each,
// batch durability) on an 8,192-token window, so it compacts as a real one does; at each
// size in `sizes` it is stopped and its start measured.
void HistoryBench(const std::string& dir, const std::vector<size_t>& sizes) {
  std::filesystem::remove_all(dir);
  bool fresh = true;
  HistoryFigures first;
  for (size_t events : sizes) {
    const int64_t t0 = MonoNowNanos();
    {
      InstantAgent agent(dir, Durability::kBatch, 8192, fresh);
      fresh = false;
      while (agent.store->last_seq() < events) {
        agent.Turn("a message of a long life, number " + std::to_string(agent.store->last_seq()) + ": " +
                   std::string(200, 'm'));
      }
    }
    const double build_s = static_cast<double>(MonoNowNanos() - t0) / 1e9;
    HistoryFigures f = MeasureStart(dir);
    if (first.rss_kib == 0) first = f;
    std::printf("%-58s p50 %7.2f ms   = %.1fx bare open (%.2f ms)\n",
                ("start with " + std::to_string(events) + " events").c_str(), f.start_ms, f.start_ms / f.bare_ms,
                f.bare_ms);
    std::printf("%-58s %8.1f MiB  = %.2fx the first size; %lld of %lld messages held; %.1f MiB on disk; built in %.0f s\n",
                "  peak RSS of that start", static_cast<double>(f.rss_kib) / 1024.0,
                static_cast<double>(f.rss_kib) / static_cast<double>(first.rss_kib),
                static_cast<long long>(f.held_messages), static_cast<long long>(f.messages),
                static_cast<double>(f.disk_bytes) / 1048576.0, build_s);
  }
}

double ReopenMs(const std::string& dir, size_t* events_out) {
  int64_t t0 = MonoNowNanos();
  auto store = RunStore::Open(dir, RunStore::OpenMode::kMustExist);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    std::exit(1);
  }
  auto state = LoadRunState(**store);
  double ms = static_cast<double>(MonoNowNanos() - t0) / 1e6;
  if (!state.ok()) {
    std::fprintf(stderr, "%s\n", state.status().ToString().c_str());
    std::exit(1);
  }
  *events_out = (*store)->last_seq();
  return ms;
}

// A run of `steps` workspace-list steps as YAML, for the CLI (which has no no-op tool).
std::string CliSpec(int steps) {
  std::string s =
      "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: bench}\nspec:\n  goal: bench\n"
      "  model:\n    backend: scripted\n    script:\n";
  for (int i = 0; i < steps; ++i) s += "      - toolCalls: [{name: notes, arguments: {op: list, \"n\": " + std::to_string(i) + "}}]\n";
  s += "      - text: done\n  tools: [{name: notes, kind: workspace}]\n";
  s += "  budget: {maxSteps: " + std::to_string(steps + 10) + ", maxTokens: 1000000000000, maxToolCalls: " +
       std::to_string(steps + 10) + "}\n";
  return s;
}

// Runs `carapace run` to completion; returns its peak RSS in KiB.
long PeakRssKiB(const std::string& spec, const std::string& dir) {
  const carapace::testing::MeasuredRun run = carapace::testing::RunMeasured({CARAPACE_BIN, "run", spec, "--state-dir", dir}, true);
  if (run.exit_code != 0) {
    std::fprintf(stderr, "carapace run exited with %d\n", run.exit_code);
    std::exit(1);
  }
  return run.max_rss_kib;
}

}  // namespace

void BackupBench(const std::string& dir, int mib, double raw50) {
  std::filesystem::remove_all(dir);
  auto store = RunStore::Open(dir + "/state", RunStore::OpenMode::kCreateIfMissing);
  if (!store.ok()) return;
  ModelRegistry models;
  RegisterBuiltinModels(&models);
  ToolRegistry tools;
  tools.Register("noop", [](const ToolSpec& s, const ToolEnvironment&) -> Result<std::unique_ptr<Tool>> {
    return std::unique_ptr<Tool>(new NoopTool(s.name, *s.effect));
  });
  const int steps = 6000;
  std::vector<int64_t> step_end;  // MonoNowNanos of each step_completed
  RunnerOptions options;
  options.on_event = [&](const Event& e, const RunState&) {
    if (e.type == event_type::kStepCompleted) step_end.push_back(MonoNowNanos());
  };
  auto runner = Runner::Create(store->get(), NoopRun(steps, Durability::kSync, Effect::kIdempotent), models, tools, options);
  if (!runner.ok()) return;
  // The store's bulk: large tool outputs kept whole as artifacts, random so that compression
  // does not shrink them.
  std::mt19937_64 rng(7);
  std::string chunk(4 << 20, '\0');
  for (int i = 0; i < mib / 4; ++i) {
    for (size_t j = 0; j + 8 <= chunk.size(); j += 8) {
      const uint64_t v = rng();
      std::memcpy(&chunk[j], &v, 8);
    }
    StoreBatch b;
    b.artifacts = {{"bulk/" + std::to_string(i), chunk}};
    if (!(*store)->Commit(b, false).ok()) return;
  }
  if (!(*store)->Flush().ok()) return;
  const uint64_t bytes = DirectoryBytes(dir + "/state/store");

  // The floor: the same bytes copied on the same disk, and synced.
  int64_t t0 = MonoNowNanos();
  std::filesystem::copy(dir + "/state/store", dir + "/plain-copy", std::filesystem::copy_options::recursive);
  ::sync();
  const double copy_ms = static_cast<double>(MonoNowNanos() - t0) / 1e6;
  std::filesystem::remove_all(dir + "/plain-copy");

  // The agent works; five backups are taken while it does.
  std::thread agent([&] { (void)(*runner)->Run(); });
  std::vector<std::pair<int64_t, int64_t>> windows;
  std::vector<double> backup_ms;
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    const int64_t start = MonoNowNanos();
    auto copy = (*store)->CopyConsistent(dir + "/backup-" + std::to_string(i));
    const int64_t end = MonoNowNanos();
    if (!copy.ok()) {
      std::printf("backup failed: %s\n", copy.status().ToString().c_str());
      break;
    }
    windows.emplace_back(start, end);
    backup_ms.push_back(static_cast<double>(end - start) / 1e6);
  }
  agent.join();
  std::vector<double> during, outside;
  for (size_t i = 1; i < step_end.size(); ++i) {
    const double ms = static_cast<double>(step_end[i] - step_end[i - 1]) / 1e6;
    bool overlaps = false;
    for (const auto& [s, e] : windows) overlaps = overlaps || (step_end[i - 1] < e && step_end[i] > s);
    (overlaps ? during : outside).push_back(ms);
  }
  std::printf("%-58s %8.1f MiB in the store\n", "backup of a live agent's store", static_cast<double>(bytes) / (1 << 20));
  std::printf("%-58s %8.1f ms\n", "  floor: copying the same bytes on the same disk (+ sync)", copy_ms);
  std::printf("%-58s p50 %7.1f ms   max %.1f ms   = %.4fx the copy (5 backups)\n", "  backup (checkpoint: hard links)",
              Percentile(backup_ms, 0.5), Percentile(backup_ms, 1.0), Percentile(backup_ms, 0.5) / copy_ms);
  std::printf("%-58s p50 %7.3f ms   p99 %7.3f ms   (%zu steps; %.2fx floor)\n", "  agent steps, no backup running",
              Percentile(outside, 0.5), Percentile(outside, 0.99), outside.size(), Percentile(outside, 0.5) / raw50);
  if (!during.empty()) {
    std::printf("%-58s p50 %7.3f ms   max %7.3f ms   (%zu steps)\n", "  agent steps a backup overlapped",
                Percentile(during, 0.5), Percentile(during, 1.0), during.size());
  }
  // An export's archive (carapace export) writes every byte once, and hashes it: against the
  // same floor. The agent is done by now; the archive is of the whole store.
  t0 = MonoNowNanos();
  auto archived = ExportRun(**store, "bench", dir + "/agent.carapace");
  ::sync();
  const double export_ms = static_cast<double>(MonoNowNanos() - t0) / 1e6;
  if (archived.ok()) {
    std::printf("%-58s %8.1f ms   = %.2fx the copy\n", "  export archive of the same store (+ sync)", export_ms,
                export_ms / copy_ms);
  } else {
    std::printf("export failed: %s\n", archived.status().ToString().c_str());
  }
  runner->reset();
  store->reset();
  std::filesystem::remove_all(dir);
}

// A child process (tracing is set once per process): step times of a run with tracing as
// the OTEL_* variables say, on one line: batch p50 p99, sync p50 p99 (ms), then the spans
// ended, exported, dropped (queue full), dropped (export failed).
int TracingChild(const std::string& dir, int steps) {
  log::SetLevel(log::Level::kError);
  if (!telemetry::InitTracing(telemetry::ParseTracingEnv("carapace-bench")).ok()) return 1;
  auto batch = StepTimesMs(dir + "/batch", NoopRun(steps, Durability::kBatch, Effect::kIdempotent));
  auto sync = StepTimesMs(dir + "/sync", NoopRun(steps, Durability::kSync, Effect::kIdempotent));
  telemetry::ShutdownTracing(std::chrono::milliseconds(3000));
  const telemetry::SpanCounts c = telemetry::CurrentSpanCounts();
  std::printf("%f %f %f %f %llu %llu %llu %llu\n", Percentile(batch, 0.5), Percentile(batch, 0.99), Percentile(sync, 0.5),
              Percentile(sync, 0.99), static_cast<unsigned long long>(c.ended),
              static_cast<unsigned long long>(c.exported), static_cast<unsigned long long>(c.dropped_full),
              static_cast<unsigned long long>(c.dropped_failed));
  std::fflush(stdout);
  std::_Exit(0);  // an export thread may still wait on a receiver that is down
}

void TracingBench(const std::string& dir, int steps, double raw50) {
  carapace::testing::OtlpReceiver receiver;
  if (!receiver.Start()) return;
  int closed = 0;
  {
    carapace::testing::OtlpReceiver gone;
    if (!gone.Start()) return;
    closed = gone.port();
  }
  struct Mode {
    const char* name;
    std::map<std::string, std::string> env;
  };
  const std::vector<Mode> modes = {
      {"tracing off", {}},
      {"tracing on, receiver up", {{"OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()}}},
      {"tracing on, receiver down", {{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:" + std::to_string(closed)}}}};
  double off_batch = 0, off_sync = 0;
  for (const auto& mode : modes) {
    const std::string d = dir + "/tracing-" + std::to_string(&mode - modes.data());
    carapace::testing::ChildProcess child({"/proc/self/exe", "--tracing-child", d, std::to_string(steps)}, mode.env);
    carapace::testing::CommandResult r = child.Wait(600000);
    double b50 = 0, b99 = 0, s50 = 0, s99 = 0;
    unsigned long long ended = 0, exported = 0, full = 0, failed = 0;
    if (r.exit_code != 0 || std::sscanf(r.out.c_str(), "%lf %lf %lf %lf %llu %llu %llu %llu", &b50, &b99, &s50, &s99, &ended,
                                        &exported, &full, &failed) != 8) {
      std::printf("%s: the child failed: %s\n", mode.name, r.err.c_str());
      continue;
    }
    if (off_batch == 0) off_batch = b50, off_sync = s50;
    std::printf("%-34s batch step p50 %6.3f ms p99 %6.3f (%.2fx off)   sync step p50 %6.3f ms (%.2fx floor, %.2fx off)\n",
                mode.name, b50, b99, b50 / off_batch, s50, s50 / raw50, s50 / off_sync);
    if (ended > 0) {
      std::printf("%-34s spans: %llu ended, %llu exported, %llu dropped (queue full), %llu dropped (export failed)\n", "",
                  ended, exported, full, failed);
    }
  }
}

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--load-only") == 0) return LoadOnly(argv[2]);
  if (argc == 4 && std::strcmp(argv[1], "--tracing-child") == 0) return TracingChild(argv[2], std::atoi(argv[3]));
  std::string dir = "bench-data";
  int steps = 1000;
  size_t history_events = 1000000;
  bool history_only = false, tracing_only = false, backup_only = false;
  int backup_mib = 1024;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--history-only") == 0) history_only = std::strcmp(argv[i + 1], "true") == 0;
    if (std::strcmp(argv[i], "--tracing-only") == 0) tracing_only = std::strcmp(argv[i + 1], "true") == 0;
    if (std::strcmp(argv[i], "--backup-only") == 0) backup_only = std::strcmp(argv[i + 1], "true") == 0;
    if (std::strcmp(argv[i], "--backup-mib") == 0) backup_mib = std::max(4, std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--dir") == 0) dir = argv[i + 1];
    else if (std::strcmp(argv[i], "--steps") == 0) steps = std::atoi(argv[i + 1]);
    else if (std::strcmp(argv[i], "--history-events") == 0) history_events = std::strtoull(argv[i + 1], nullptr, 10);
  }
  log::SetLevel(log::Level::kWarn);
  std::filesystem::create_directories(dir);
  dir = std::filesystem::canonical(dir).string();
  std::printf("carapace-bench-runtime: %d steps per run, data in %s\n\n", steps, dir.c_str());
  if (history_only) {
    HistoryBench(dir + "/history", {size_t{10000}, history_events / 10, history_events});
    if (std::getenv("CARAPACE_BENCH_KEEP") == nullptr) std::filesystem::remove_all(dir);
    return 0;
  }

  auto raw = RawFdatasyncMs(dir, 2000);
  double raw50 = Percentile(raw, 0.5), raw99 = Percentile(raw, 0.99);
  std::printf("%-58s p50 %7.3f ms   p99 %7.3f ms\n", "floor: raw append 512 B + fdatasync", raw50, raw99);
  if (tracing_only) {
    TracingBench(dir, steps, raw50);
    std::filesystem::remove_all(dir);
    return 0;
  }
  if (backup_only) {
    BackupBench(dir + "/backup", backup_mib, raw50);
    std::filesystem::remove_all(dir);
    return 0;
  }

  auto sync_idem = StepTimesMs(dir + "/sync", NoopRun(steps, Durability::kSync, Effect::kIdempotent));
  double s50 = Percentile(sync_idem, 0.5), s99 = Percentile(sync_idem, 0.99);
  std::printf("%-58s p50 %7.3f ms   p99 %7.3f ms   p50 = %.2fx floor\n",
              "step, sync durability, idempotent no-op tool", s50, s99, s50 / raw50);

  auto sync_side = StepTimesMs(dir + "/side", NoopRun(steps, Durability::kSync, Effect::kSideEffecting));
  double e50 = Percentile(sync_side, 0.5), e99 = Percentile(sync_side, 0.99);
  std::printf("%-58s p50 %7.3f ms   p99 %7.3f ms   p50 = %.2fx floor\n",
              "step, sync durability, side-effecting no-op (2 syncs)", e50, e99, e50 / raw50);

  int64_t t0 = MonoNowNanos();
  auto batch = StepTimesMs(dir + "/batch", NoopRun(steps, Durability::kBatch, Effect::kIdempotent));
  double batch_s = static_cast<double>(MonoNowNanos() - t0) / 1e9;
  std::printf("%-58s %8.0f steps/s (p50 step %.3f ms; sync: %.0f steps/s)\n", "steps per second, batch durability",
              static_cast<double>(steps) / batch_s, Percentile(batch, 0.5), 1000.0 / s50);

  // Reopen + resume a run of 10,000 events: 2,000 steps of 5 events each.
  StepTimesMs(dir + "/big", NoopRun(2000, Durability::kBatch, Effect::kIdempotent));
  std::vector<double> reopen;
  size_t events = 0;
  for (int i = 0; i < 7; ++i) reopen.push_back(ReopenMs(dir + "/big", &events));
  std::printf("%-58s p50 %7.2f ms   (%zu events, after a clean stop)\n", "reopen + resume", Percentile(reopen, 0.5),
              events);

  // The same after kill -9: the CLI (one JSON line per event) is killed once it has
  // written 10,000 events, so the reopen also replays RocksDB's write-ahead log. Three
  // trials: one open after a kill is a single sample.
  std::string spec = dir + "/bench.yaml";
  std::ofstream(spec) << CliSpec(2500);
  std::vector<double> killed;
  for (int trial = 0; trial < 3; ++trial) {
    std::string state = dir + "/killed" + std::to_string(trial);
    {
      carapace::testing::ChildProcess child({CARAPACE_BIN, "run", spec, "--state-dir", state, "--json"});
      for (int i = 0; i < 60000; ++i) {
        std::ifstream out(child.out_path());
        size_t lines = static_cast<size_t>(std::count(std::istreambuf_iterator<char>(out), {}, '\n'));
        if (lines >= 10000) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      child.Kill(SIGKILL);
      child.Wait();
    }
    killed.push_back(ReopenMs(state, &events));
  }
  std::printf("%-58s p50 %7.2f ms   max %.2f ms (~%zu events, first open after kill -9, 3 trials)\n",
              "reopen + resume", Percentile(killed, 0.5), Percentile(killed, 1.0), events);

  std::vector<double> compaction;
  for (int trial = 0; trial < 3; ++trial) compaction.push_back(CompactionMs(dir + "/compact" + std::to_string(trial)));
  std::printf("%-58s p50 %7.2f ms   = %.1fx floor (the model's time taken out, 3 trials)\n",
              "one compaction of 400 turns (801 messages)", Percentile(compaction, 0.5),
              Percentile(compaction, 0.5) / raw50);

  HistoryBench(dir + "/history", {size_t{10000}, history_events / 10, history_events});

  TracingBench(dir, steps, raw50);
  BackupBench(dir + "/backup", backup_mib, raw50);

  std::ofstream(dir + "/small.yaml") << CliSpec(50);
  long rss = PeakRssKiB(dir + "/small.yaml", dir + "/rss");
  std::printf("%-58s %8.1f MiB (a 50-step run)\n", "peak RSS of carapace run", static_cast<double>(rss) / 1024.0);

  std::filesystem::remove_all(dir);
  return 0;
}
