// carapace-worker: one AgentRun as a long-lived service in a pod. See docs/worker.md.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <string>

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <prometheus/registry.h>

#include "common/file.h"
#include "common/flags.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/redact.h"
#include "common/process_setup.h"
#include "common/telemetry/tracing.h"
#include "worker/runtime/run_dirs.h"
#include "worker/server/agent_service.h"
#include "worker/server/control_service.h"
#include "worker/server/control_tls.h"
#include "worker/server/probe_server.h"

using namespace carapace;

namespace {

constexpr const char* kUsage = R"(usage: carapace-worker [flags]
  --spec FILE          the AgentRun to run (env CARAPACE_SPEC); in a cluster, the mounted ConfigMap
  --state-dir DIR      its state (env CARAPACE_STATE_DIR); in a cluster, the PVC
  --grpc-listen ADDR   control API (env CARAPACE_GRPC_LISTEN, default 0.0.0.0:7070)
  --http-listen ADDR   /healthz /readyz /metrics (env CARAPACE_HTTP_LISTEN, default 0.0.0.0:8080)
  --token-file FILE    bearer token of the control API (env CARAPACE_TOKEN_FILE); in a cluster, a Secret
  --insecure-no-auth   serve the control API without a token (local development only)
  --tls-dir DIR        serve the control API over TLS with DIR/tls.crt and DIR/tls.key (env
                       CARAPACE_TLS_DIR; a cert-manager Secret's layout), re-read as they change;
                       the token is still required
  --tls-reload-seconds N  how often the files in --tls-dir are looked at (env CARAPACE_TLS_RELOAD_SECONDS, default 10)
  --grace-seconds N    on SIGTERM, how long an action in progress may take to finish (env CARAPACE_GRACE_SECONDS, default 5)
  --tmp-dir DIR        where libraries may write temporary files (sets TMPDIR); the root fs may be read-only
  --adopt-from DIR     when --state-dir holds no run, move the newest run found in DIR (one state dir
                       per spec hash, as operators before spec revisions laid out the volume) into it
flags take their value as `--flag VALUE` or `--flag=VALUE`
traces: OTEL_EXPORTER_OTLP_ENDPOINT (OTLP over gRPC) and the other OTEL_* variables (docs/tracing.md)
exit codes: 0 after SIGTERM/SIGINT, 1 on a store or runtime error, 2 on bad flags or a bad manifest
)";

int Fail(int code, const std::string& message) {
  log::Error(message);
  return code;
}

std::string Flag(const std::map<std::string, std::string>& flags, const std::string& name, const char* env,
                 const std::string& fallback) {
  if (auto it = flags.find(name); it != flags.end()) return it->second;
  if (const char* v = std::getenv(env); v && *v) return v;
  return fallback;
}

sigset_t ShutdownSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  return signals;
}

int Main(int argc, char** argv) {
  const auto started = std::chrono::steady_clock::now();
  auto parsed = ParseFlags(argc, argv,
                           {"--spec", "--state-dir", "--grpc-listen", "--http-listen", "--token-file",
                            "--grace-seconds", "--tmp-dir", "--adopt-from", "--tls-dir", "--tls-reload-seconds"},
                           {"--insecure-no-auth"});
  if (!parsed.ok()) return Fail(2, parsed.status().message() + "\n" + kUsage);
  if (parsed->help) {
    std::cout << kUsage;
    return 0;
  }
  const std::map<std::string, std::string>& flags = parsed->values;
  const std::string spec_path = Flag(flags, "--spec", "CARAPACE_SPEC", "");
  const std::string state_dir = Flag(flags, "--state-dir", "CARAPACE_STATE_DIR", "");
  const std::string grpc_addr = Flag(flags, "--grpc-listen", "CARAPACE_GRPC_LISTEN", "0.0.0.0:7070");
  const std::string http_addr = Flag(flags, "--http-listen", "CARAPACE_HTTP_LISTEN", "0.0.0.0:8080");
  const std::string token_file = Flag(flags, "--token-file", "CARAPACE_TOKEN_FILE", "");
  const std::string grace_text = Flag(flags, "--grace-seconds", "CARAPACE_GRACE_SECONDS", "5");
  const std::string tls_dir = Flag(flags, "--tls-dir", "CARAPACE_TLS_DIR", "");
  const std::string reload_text = Flag(flags, "--tls-reload-seconds", "CARAPACE_TLS_RELOAD_SECONDS", "10");
  if (spec_path.empty()) return Fail(2, "--spec (or CARAPACE_SPEC) is required");
  if (state_dir.empty()) return Fail(2, "--state-dir (or CARAPACE_STATE_DIR) is required");
  char* end = nullptr;
  const long grace = std::strtol(grace_text.c_str(), &end, 10);
  if (*end != '\0' || grace < 0 || grace > 3600) return Fail(2, "--grace-seconds must be 0..3600, got \"" + grace_text + "\"");
  const long tls_reload = std::strtol(reload_text.c_str(), &end, 10);
  if (*end != '\0' || tls_reload < 1 || tls_reload > 86400) {
    return Fail(2, "--tls-reload-seconds must be 1..86400, got \"" + reload_text + "\"");
  }
  // Checked before anything else starts: a pod with a bad Secret says which file, at once,
  // rather than serving handshakes that all fail.
  if (!tls_dir.empty()) {
    if (Status s = CheckTlsDir(tls_dir); !s.ok()) return Fail(2, s.message());
  }
  if (auto it = flags.find("--tmp-dir"); it != flags.end()) ::setenv("TMPDIR", it->second.c_str(), 1);

  std::string token;
  if (!flags.count("--insecure-no-auth")) {
    if (token_file.empty()) {
      return Fail(2, "the control API needs a token: --token-file FILE (or CARAPACE_TOKEN_FILE), or --insecure-no-auth");
    }
    auto read = ReadTokenFile(token_file);
    if (!read.ok()) return Fail(2, "cannot read the token file " + token_file);
    token = *read;
    if (token.size() < 16) return Fail(2, "the token in " + token_file + " is shorter than 16 characters");
    RegisterSecret(token);
  } else {
    log::Warn("the control API accepts calls without a token (--insecure-no-auth)");
  }

  auto run = LoadAgentRunFile(spec_path);
  if (!run.ok()) return Fail(2, run.status().message());
  if (auto it = flags.find("--adopt-from"); it != flags.end()) {
    auto adopted = AdoptNewestRun(it->second, state_dir);
    if (!adopted.ok()) return Fail(1, "adopting a run from " + it->second + ": " + adopted.status().ToString());
  }

  prometheus::Registry metrics;
  const telemetry::TracingConfig tracing = telemetry::ParseTracingEnv("carapace-worker");
  if (Status s = telemetry::InitTracing(tracing, {{"carapace.agentrun.name", run->metadata.name},
                                                   {"carapace.agentrun.namespace", run->metadata.ns},
                                                   {"k8s.namespace.name", run->metadata.ns}},
                                        &metrics);
      !s.ok()) {
    return Fail(2, s.message());
  }
  // Spans still queued leave before the process does, within a bound (a receiver that is
  // down must not hold a shutdown).
  struct StopTracing {
    ~StopTracing() { telemetry::ShutdownTracing(std::chrono::milliseconds(2000)); }
  } stop_tracing;
  if (tracing.enabled) log::Info("exporting traces", {{"endpoint", tracing.endpoint}, {"service", tracing.service_name}});
  VolumeMetrics volume(metrics);
  // Serving before the store opens: a volume too full to open it is reported, not a crash.
  ProbeServer probes(&metrics);
  if (Status s = probes.Start(http_addr); !s.ok()) return Fail(1, s.message());
  const sigset_t signals = ShutdownSignals();
  auto agent = AgentService::Open(*run, state_dir, &metrics);
  for (bool logged = false; !agent.ok() && IsVolumeFull(agent.status()); logged = true) {
    if (!logged) {
      log::Error("the volume is full: the store cannot be opened; the worker waits for space and opens it once "
                 "there is room",
                 {{"error", agent.status().message()}});
    }
    probes.SetNotOpen(agent.status().message());
    volume.Set(true, VolumeFreeBytes(state_dir));
    const timespec retry{2, 0};
    if (int sig = sigtimedwait(&signals, nullptr, &retry); sig > 0) {
      log::Info("stopped before the store could be opened", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
      return 0;
    }
    agent = AgentService::Open(*run, state_dir, &metrics);
  }
  if (!agent.ok()) {
    const StatusCode c = agent.status().code();
    return Fail(c == StatusCode::kInvalidArgument || c == StatusCode::kFailedPrecondition || c == StatusCode::kBusy ? 2 : 1,
                agent.status().ToString());
  }
  ControlService control(agent->get(), token);
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(grpc_addr,
                           tls_dir.empty() ? grpc::InsecureServerCredentials()
                                           : ControlServerCredentials(tls_dir, static_cast<unsigned>(tls_reload)),
                           &grpc_port);
  builder.RegisterService(&control);
  // Set, not left to gRPC's defaults: a request past the limit is refused RESOURCE_EXHAUSTED
  // before it is read whole (docs/limits.md).
  builder.SetMaxReceiveMessageSize(limits::kControlRequestBytes);
  builder.SetMaxSendMessageSize(limits::kControlReplyBytes);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || grpc_port == 0) return Fail(1, "cannot listen for the control API on " + grpc_addr);
  probes.SetAgent(agent->get());
  // Declared after the agent, so gone before it: no probe reads an agent that is gone.
  struct StopProbes {
    ProbeServer& probes;
    ~StopProbes() { probes.Stop(); }
  } stop_probes{probes};
  (*agent)->Start();
  log::Info("carapace-worker ready",
            {{"agentrun", run->metadata.ns + "/" + run->metadata.name}, {"grpc", grpc_addr}, {"grpcPort", grpc_port},
             {"grpcTls", !tls_dir.empty()},
             {"http", http_addr}, {"phase", worker::v1::Phase_Name((*agent)->Snapshot().phase())},
             {"startMs", std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count()}});

  int sig = 0;
  sigwait(&signals, &sig);
  log::Info("shutting down", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}, {"graceSeconds", grace}});
  const bool clean = (*agent)->Shutdown(std::chrono::seconds(grace));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  probes.Stop();
  log::Info("stopped", {{"inTime", clean}});
  if (!clean) {
    telemetry::ShutdownTracing(std::chrono::milliseconds(2000));
    std::_Exit(0);  // a call's thread is still out; the store is flushed
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Blocked before any thread exists (every thread inherits the mask), so SIGTERM reaches
  // the main thread's sigwait and never a library thread, whose default would kill us.
  const sigset_t signals = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  SetUpProcess();
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    log::Error("carapace-worker stopped on an unexpected error; the store is safe", {{"error", e.what()}});
    return 1;
  }
}
