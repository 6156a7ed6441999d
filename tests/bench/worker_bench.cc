// carapace-worker-bench: what running an agent as a service costs.
//
//   start to /readyz OK with a 10,000-event state    (aim < 100 ms); floor: exec of `--help`
//   GetStatus p50/p99 over loopback                   against a bare gRPC unary call on loopback
//   RSS of an idle worker                             (aim < 25 MiB)
//
// Usage: carapace-worker-bench [--dir DIR] [--trials N]
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <grpcpp/create_channel.h>
#include <grpcpp/server_builder.h>

#include "tests/bench/bench_stats.h"
#include "common/log.h"
#include "tests/support/fake_openai.h"
#include "tests/support/worker_process.h"
#include "common/process_setup.h"
#include "worker/runtime/runner.h"

using namespace carapace;
using Steady = std::chrono::steady_clock;
namespace v1 = carapace::worker::v1;

using carapace::bench::Ms;
using carapace::bench::Percentile;

namespace {


// The floor of a unary call: a server that answers GetStatus with an empty message.
class BareControl final : public v1::WorkerControl::Service {
  grpc::Status GetStatus(grpc::ServerContext*, const v1::GetStatusRequest*, v1::RunStatus*) override { return grpc::Status::OK; }
};

std::vector<double> TimeGetStatus(v1::WorkerControl::Stub& stub, const std::string& token, int n) {
  std::vector<double> out;
  for (int i = 0; i < n + 100; ++i) {
    grpc::ClientContext ctx;
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    v1::RunStatus s;
    auto t0 = Steady::now();
    grpc::Status st = stub.GetStatus(&ctx, v1::GetStatusRequest(), &s);
    if (!st.ok()) {
      std::fprintf(stderr, "GetStatus failed: %s\n", st.error_message().c_str());
      std::exit(1);
    }
    if (i >= 100) out.push_back(Ms(Steady::now() - t0));  // the first 100 warm up the channel
  }
  return out;
}

// A field of /proc/PID/smaps_rollup, in KiB: "Rss" (all resident pages) or "Anonymous"
// (the process's own memory; the rest is code and read-only data of the binary and its
// shared libraries, shared by every worker on a node that runs the same image).
long SmapsKiB(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::atol(line.c_str() + field.size() + 1);
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "./bench-worker-data";
  int trials = 15;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--dir") == 0) dir = argv[i + 1];
    if (std::strcmp(argv[i], "--trials") == 0) trials = std::atoi(argv[i + 1]);
  }
  SetUpProcess();
  log::SetLevel(log::Level::kError);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);

  // A state of about 10,000 events: 2,000 steps of a write and its result, then idle. The
  // model is an OpenAI-compatible double, so the spec is as small as a real one.
  testing::FakeOpenAiServer model;
  if (!model.Start()) return 1;
  const int steps = 2000;
  for (int i = 0; i < steps - 1; ++i) {
    testing::FakeCompletion c;
    c.tool_calls = {{{"index", 0}, {"id", "c"}, {"function", {{"name", "notes"},
                     {"arguments", "{\"op\":\"write\",\"path\":\"n.txt\",\"content\":\"" + std::to_string(i) + "\"}"}}}}};
    model.Push(c);
  }
  testing::FakeCompletion last;
  last.content = {"idle now"};
  model.Push(last);
  std::string spec = "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: bench}\nspec:\n  goal: fill\n"
                     "  tools: [{name: notes, kind: workspace}]\n  budget: {maxSteps: 100000, maxToolCalls: 100000, maxTokens: 100000000}\n"
                     "  durability: batch\n  model: {backend: openai, name: llm, endpoint: \"" + model.base_url() + "\"}\n";
  std::ofstream(dir + "/spec.yaml") << spec;
  uint64_t events = 0;
  {
    auto run = LoadAgentRunFile(dir + "/spec.yaml");
    ModelRegistry models;
    RegisterBuiltinModels(&models);
    ToolRegistry tools;
    RegisterBuiltinTools(&tools);
    auto store = RunStore::Open(dir + "/state", RunStore::OpenMode::kCreateIfMissing);
    RunnerOptions o;
    o.persistent = true;
    auto runner = Runner::Create(store->get(), *run, models, tools, o);
    if (!run.ok() || !store.ok() || !runner.ok() || !(*runner)->Run().ok()) {
      std::fprintf(stderr, "could not build the state\n");
      return 1;
    }
    events = (*store)->last_seq();
    (void)(*store)->Flush();
  }
  std::printf("carapace-worker-bench: a state of %llu events, %d trials, loopback\n", static_cast<unsigned long long>(events), trials);

  // Floor: starting the same binary to print its usage.
  std::vector<double> exec_ms;
  for (int i = 0; i < trials; ++i) {
    auto t0 = Steady::now();
    testing::RunCommand({WORKER_BIN, "--help"});
    exec_ms.push_back(Ms(Steady::now() - t0));
  }
  std::vector<double> ready_ms, own_ms;
  for (int i = 0; i < trials; ++i) {
    testing::WorkerProcess w(WORKER_BIN, dir + "/spec.yaml", dir + "/state", dir);
    auto t0 = Steady::now();
    if (!w.Start(20000)) {
      std::fprintf(stderr, "the worker did not start\n");
      return 1;
    }
    // Start() returns when /readyz answers; count only a 200.
    while (testing::HttpGet(w.http_port(), "/readyz").first != 200) std::this_thread::sleep_for(std::chrono::microseconds(200));
    ready_ms.push_back(Ms(Steady::now() - t0));
    // The worker logs how long it took from main() to ready: its own share of the start.
    std::ifstream log(w.child()->err_path());
    std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    size_t at = text.find("\"startMs\":");
    if (at != std::string::npos) own_ms.push_back(std::atof(text.c_str() + at + 10));
    w.Stop();
  }
  std::printf("start to /readyz OK: p50 %.1f ms, max %.1f ms (aim < 100 ms)\n"
              "  of which main() to ready (open the store, load the state, listen): p50 %.1f ms;\n"
              "  floor: exec of `carapace-worker --help` (loading its shared libraries) p50 %.1f ms\n",
              Percentile(ready_ms, 0.5), Percentile(ready_ms, 1.0), Percentile(own_ms, 0.5), Percentile(exec_ms, 0.5));

  // GetStatus against the floor.
  BareControl bare;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&bare);
  auto server = builder.BuildAndStart();
  auto floor_stub = v1::WorkerControl::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  testing::WorkerProcess w(WORKER_BIN, dir + "/spec.yaml", dir + "/state", dir);
  if (!w.Start()) return 1;
  const int calls = 2000;
  std::vector<double> floor_ms, status_ms;
  for (int round = 0; round < 4; ++round) {  // interleaved, so drift hits both alike
    for (double v : TimeGetStatus(*floor_stub, "", calls / 4)) floor_ms.push_back(v);
    for (double v : TimeGetStatus(w.stub(), w.token(), calls / 4)) status_ms.push_back(v);
  }
  std::printf("GetStatus: p50 %.3f ms p99 %.3f ms; bare gRPC unary p50 %.3f ms p99 %.3f ms; p50 ratio %.2f\n",
              Percentile(status_ms, 0.5), Percentile(status_ms, 0.99), Percentile(floor_ms, 0.5), Percentile(floor_ms, 0.99),
              Percentile(status_ms, 0.5) / Percentile(floor_ms, 0.5));

  std::this_thread::sleep_for(std::chrono::seconds(2));  // idle
  const pid_t pid = w.child()->pid();
  std::printf("RSS of the idle worker: %.1f MiB (aim < 25 MiB), of which its own (anonymous) memory %.1f MiB and "
              "file-backed code and data of the binary and shared libraries %.1f MiB\n",
              static_cast<double>(SmapsKiB(pid, "Rss")) / 1024.0, static_cast<double>(SmapsKiB(pid, "Anonymous")) / 1024.0,
              static_cast<double>(SmapsKiB(pid, "Rss") - SmapsKiB(pid, "Anonymous")) / 1024.0);
  w.Stop();
  server->Shutdown();
  if (!std::getenv("KEEP")) std::filesystem::remove_all(dir);
  return 0;
}
