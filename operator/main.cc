// carapace-operator: watches AgentRuns and reconciles, for each, the objects that run its
// worker. Only the leader reconciles (with --leader-elect); every replica answers /healthz,
// /readyz and /metrics. See operator/README.md.
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <prometheus/text_serializer.h>

#include "common/flags.h"
#include "common/http_endpoints.h"
#include "common/log.h"
#include "common/process_setup.h"
#include "common/text.h"
#include "common/telemetry/tracing.h"
#include "operator/controller/agentrun_controller.h"
#include "operator/kube/config.h"
#include "operator/kube/event_recorder.h"
#include "operator/kube/leader_election.h"
#include "operator/kube/rest_client.h"
#include "operator/operator_metrics.h"

namespace carapace {
namespace {

constexpr const char* kUsage = R"(usage: carapace-operator [flags]
  --kubeconfig FILE         use this kubeconfig (env KUBECONFIG); default: the in-cluster service account
  --context NAME            the kubeconfig context (default: its current-context)
  --namespace NS            watch AgentRuns in NS only (default: every namespace)
  --workers N               concurrent reconciles (default 2)
  --leader-elect            only the holder of the Lease reconciles (for 2 or more replicas)
  --lease-namespace NS      where the Lease lives (default: the pod's or kubeconfig's namespace)
  --lease-name NAME         the Lease (default carapace-operator)
  --lease-seconds N         lease duration (default 15; renew deadline 2/3 of it, retry every 2 s)
  --http-listen ADDR        /healthz /readyz /metrics (default 0.0.0.0:8081)
  --worker-image IMAGE      the worker image for AgentRuns without spec.image
  --worker-otlp-endpoint URL  workers export traces here (OTLP over gRPC, http(s)://HOST:4317); the
                            operator's own spans go where OTEL_EXPORTER_OTLP_ENDPOINT says (docs/tracing.md)
  --status-interval-seconds N  how often a running worker is asked for its progress (default 10)
  --network-policy          a NetworkPolicy per AgentRun (docs/operations.md): the control port from the
                            operator's pods, metrics from --network-policy-metrics-namespaces, egress to DNS
                            and the endpoints the spec names
  --network-policy-metrics-namespaces NS,...  namespaces allowed to scrape the workers' metrics
  --network-policy-control-namespaces NS,...  more namespaces allowed to the workers' control API
  --operator-pod-labels K=V,...  the operator pods' labels, for the control-port rule (default: any pod of
                            the operator's namespace, POD_NAMESPACE or --lease-namespace)
  --worker-tls-issuer KIND/NAME  TLS on the workers' control API (docs/operations.md): a cert-manager
                            Certificate per AgentRun from that Issuer or ClusterIssuer; the workers serve it
                            and the operator checks them against its ca.crt (the token stays required)
  --secret-check-seconds N  how often the Secrets an AgentRun uses are read again to notice a rotation,
                            which rolls its pod (default 60; docs/operations.md)
  --qps Q --burst B         client-side API rate limit (default 20/30; --qps 0 turns it off)
  --no-queue-rate-limit     no overall token bucket on the work queue (benchmarks)
flags take their value as `--flag VALUE` or `--flag=VALUE`
exit codes: 0 after SIGTERM/SIGINT, 1 when leadership is lost or the controller cannot start (its caches did
not fill within 60 s), 2 on bad flags
)";

int Fail(int code, const std::string& message) {
  log::Error(message);
  return code;
}

std::optional<int> IntFlag(const std::map<std::string, std::string>& flags, const std::string& name, int fallback,
                           int min, int max) {
  auto it = flags.find(name);
  if (it == flags.end()) return fallback;
  char* end = nullptr;
  long v = std::strtol(it->second.c_str(), &end, 10);
  if (it->second.empty() || *end != '\0' || v < min || v > max) return std::nullopt;
  return static_cast<int>(v);
}

// Why the operator stops when it stops on its own: set before SIGUSR1 wakes the main thread,
// so its log line names the cause, never a signal nobody sent.
class StopRequest {
 public:
  void Request(int code, const std::string& reason) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!reason_.empty()) return;  // the first cause is the one to report
      code_ = code;
      reason_ = reason;
    }
    kill(getpid(), SIGUSR1);
  }
  int code() const {
    std::lock_guard<std::mutex> lock(mu_);
    return code_;
  }
  std::string reason() const {
    std::lock_guard<std::mutex> lock(mu_);
    return reason_;
  }

 private:
  mutable std::mutex mu_;
  int code_ = 0;
  std::string reason_;
};

int Main(int argc, char** argv, const sigset_t& signals) {
  auto parsed = ParseFlags(argc, argv,
                           {"--kubeconfig", "--context", "--namespace", "--workers", "--lease-namespace",
                            "--lease-name", "--lease-seconds", "--http-listen", "--worker-image", "--worker-otlp-endpoint",
                            "--status-interval-seconds", "--qps", "--burst", "--secret-check-seconds",
                            "--network-policy-metrics-namespaces", "--network-policy-control-namespaces",
                            "--operator-pod-labels", "--worker-tls-issuer"},
                           {"--leader-elect", "--no-queue-rate-limit", "--network-policy"});
  if (!parsed.ok()) return Fail(2, parsed.status().message() + "\n" + kUsage);
  if (parsed->help) {
    std::cout << kUsage;
    return 0;
  }
  const std::map<std::string, std::string>& flags = parsed->values;
  auto get = [&](const std::string& name, const std::string& fallback) {
    auto it = flags.find(name);
    return it == flags.end() ? fallback : it->second;
  };
  auto workers = IntFlag(flags, "--workers", 2, 1, 64);
  auto lease_seconds = IntFlag(flags, "--lease-seconds", 15, 3, 600);
  auto status_interval = IntFlag(flags, "--status-interval-seconds", 10, 1, 3600);
  auto secret_check = IntFlag(flags, "--secret-check-seconds", 60, 1, 86400);
  auto qps = IntFlag(flags, "--qps", 20, 0, 100000);
  auto burst = IntFlag(flags, "--burst", 30, 1, 100000);
  if (!workers) return Fail(2, "--workers must be 1..64");
  if (!lease_seconds) return Fail(2, "--lease-seconds must be 3..600");
  if (!status_interval) return Fail(2, "--status-interval-seconds must be 1..3600");
  if (!secret_check) return Fail(2, "--secret-check-seconds must be 1..86400");
  if (!qps || !burst) return Fail(2, "--qps must be 0..100000 and --burst 1..100000");
  controller::ControlTlsSettings control_tls;
  if (flags.count("--worker-tls-issuer")) {
    auto parsed_tls = controller::ParseTlsIssuer(get("--worker-tls-issuer", ""));
    if (!parsed_tls.ok()) return Fail(2, parsed_tls.status().message());
    control_tls = *parsed_tls;
  }

  std::string kubeconfig = get("--kubeconfig", std::getenv("KUBECONFIG") ? std::getenv("KUBECONFIG") : "");
  auto config = kubeconfig.empty() ? kube::LoadInClusterConfig() : kube::LoadKubeconfig(kubeconfig, get("--context", ""));
  if (!config.ok()) return Fail(2, "cannot configure the Kubernetes client: " + config.status().message());

  OperatorMetrics metrics;
  if (Status s = telemetry::InitTracing(telemetry::ParseTracingEnv("carapace-operator"), {}, &metrics.registry());
      !s.ok()) {
    return Fail(2, s.message());
  }
  struct StopTracing {
    ~StopTracing() { telemetry::ShutdownTracing(std::chrono::milliseconds(2000)); }
  } stop_tracing;
  kube::RestClientOptions client_options;
  client_options.qps = *qps;
  client_options.burst = *burst;
  client_options.on_request = [&metrics](const std::string& method, int code) { metrics.Request(method, code); };
  auto client = kube::RestClient::Create(*config, client_options);
  if (!client.ok()) return Fail(2, client.status().message());
  log::Info("carapace-operator starting", {{"api", config->server}, {"config", config->source}});

  std::atomic<bool> leading{false};
  std::atomic<bool> started{false};
  HttpEndpoints endpoints;
  endpoints.Handle("/healthz", [] { return HttpReply{200, "ok\n"}; });
  endpoints.Handle("/metrics", [&metrics] {
    return HttpReply{200, prometheus::TextSerializer().Serialize(metrics.registry().Collect()), kPrometheusContentType};
  });
  controller::GrpcWorkerStatusReader worker_reader;
  kube::EventRecorder events(client->get(), "carapace-operator");
  controller::ControllerOptions options;
  options.workers = *workers;
  options.ns = get("--namespace", "");
  options.rate_limit = !flags.count("--no-queue-rate-limit");
  options.reconciler.status_interval = std::chrono::seconds(*status_interval);
  options.reconciler.secret_check_interval = std::chrono::seconds(*secret_check);
  options.reconciler.settings.control_tls = control_tls;
  if (flags.count("--worker-image")) options.reconciler.settings.worker_image = get("--worker-image", "");
  options.reconciler.settings.worker_otlp_endpoint = get("--worker-otlp-endpoint", "");
  if (flags.count("--network-policy")) {
    controller::NetworkPolicySettings& np = options.reconciler.settings.network_policy;
    np.enabled = true;
    const char* pod_ns = std::getenv("POD_NAMESPACE");
    np.operator_namespace = pod_ns != nullptr && *pod_ns ? pod_ns : get("--lease-namespace", config->ns);
    np.metrics_namespaces = SplitCommaList(get("--network-policy-metrics-namespaces", ""));
    np.control_namespaces = SplitCommaList(get("--network-policy-control-namespaces", ""));
    for (const std::string& kv : SplitCommaList(get("--operator-pod-labels", ""))) {
      const size_t eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) return Fail(2, "--operator-pod-labels takes KEY=VALUE,..., got \"" + kv + "\"");
      np.operator_pod_labels[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  if (const std::string& e = options.reconciler.settings.worker_otlp_endpoint;
      !e.empty() && e.rfind("http://", 0) != 0 && e.rfind("https://", 0) != 0) {
    return Fail(2, "--worker-otlp-endpoint must be an http:// or https:// URL (OTLP over gRPC), got \"" + e + "\"");
  }
  controller::AgentRunController controller(client->get(), &metrics, &events, &worker_reader, options);
  // Ready once this replica is useful: the leader when its caches are filled; a standby when
  // it can reach the API server (it could take over).
  std::unique_ptr<kube::LeaderElector> elector;
  std::atomic<kube::LeaderElector*> elector_for_probe{nullptr};  // set once it exists; read by /readyz
  endpoints.Handle("/readyz", [&] {
    if (leading.load()) {
      const bool synced = controller.Synced();
      return HttpReply{synced ? 200 : 503, synced ? "ok\n" : "caches are filling\n"};
    }
    std::string error;
    kube::LeaderElector* e = elector_for_probe.load();
    if (e && !e->Reachable(&error)) return HttpReply{503, "cannot reach the API server: " + error + "\n"};
    return HttpReply{200, "ok\n"};
  });
  if (Status s = endpoints.Start(get("--http-listen", "0.0.0.0:8081")); !s.ok()) return Fail(1, s.message());

  StopRequest stop;
  auto start_controller = [&] {
    if (started.exchange(true)) return;
    if (Status s = controller.Start(); !s.ok() && s.code() != StatusCode::kAborted) {  // aborted: stopping
      log::Error("controller did not start", {{"error", s.message()}});
      stop.Request(1, "the controller did not start: " + s.message());
    }
  };
  // The controller starts on a thread of its own (never the main thread, which must stay
  // free to take SIGTERM while caches fill; never the elector's, which must keep renewing).
  std::thread starter;
  std::unique_ptr<kube::RestClient> lease_client_owned;
  if (flags.count("--leader-elect")) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    kube::LeaderElectionOptions le;
    le.ns = get("--lease-namespace", config->ns);
    le.name = get("--lease-name", "carapace-operator");
    le.identity = std::string(host) + "_" + std::to_string(std::random_device{}());
    le.lease_duration = std::chrono::seconds(*lease_seconds);
    le.renew_deadline = std::chrono::milliseconds(*lease_seconds * 2000 / 3);
    le.retry_period = std::chrono::milliseconds(std::min(2000, *lease_seconds * 1000 / 5));
    const std::string lease = le.ns + "/" + le.name, identity = le.identity;
    le.on_started_leading = [&, lease, identity] {
      log::Info("became the leader", {{"lease", lease}, {"identity", identity}});
      leading = true;
      metrics.SetLeader(true);
      starter = std::thread(start_controller);
    };
    le.on_stopped_leading = [&, lease] {
      metrics.SetLeader(false);
      if (!leading.exchange(false)) return;
      // Never reconcile beside a new leader: stop, and let the pod restart as a standby.
      log::Error("lost the lease; exiting", {{"lease", lease}});
      stop.Request(1, "lost the lease " + lease);
    };
    // The lease has its own client: no shared rate limit, no 429 retries, and a request
    // timeout well inside the renew deadline, so a slow API server cannot keep a replica
    // believing it leads after its lease ran out.
    kube::RestClientOptions lease_options;
    lease_options.qps = 0;
    lease_options.max_read_retries = 0;
    lease_options.request_timeout_seconds = std::max(1, *lease_seconds / 5);
    lease_options.on_request = client_options.on_request;
    auto lease_client = kube::RestClient::Create(*config, lease_options);
    if (!lease_client.ok()) return Fail(2, lease_client.status().message());
    lease_client_owned = std::move(*lease_client);
    elector = std::make_unique<kube::LeaderElector>(lease_client_owned.get(), le);
    elector_for_probe = elector.get();
    elector->Start();
  } else {
    leading = true;
    metrics.SetLeader(true);
    starter = std::thread(start_controller);
  }

  int sig = 0;
  sigwait(&signals, &sig);
  if (sig == SIGUSR1) {
    log::Info("carapace-operator stopping", {{"reason", stop.reason()}});
  } else {
    log::Info("carapace-operator stopping", {{"reason", std::string(sig == SIGINT ? "SIGINT" : "SIGTERM") + " received"}});
  }
  // No request of this replica waits out its timeout any more; a reconcile in flight fails
  // (the next leader does it again).
  client->get()->Shutdown();
  controller.Stop();  // before the lease goes: never two replicas reconciling
  if (elector) elector->Stop();  // releases the lease: a standby takes over at once
  if (starter.joinable()) starter.join();
  leading = false;
  endpoints.Stop();
  log::Info("carapace-operator stopped");
  return sig == SIGUSR1 ? stop.code() : 0;
}

}  // namespace
}  // namespace carapace

int main(int argc, char** argv) {
  // Blocked before any thread exists, so SIGTERM reaches sigwait and no library thread.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR1);  // the operator's own stop (StopRequest)
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // glibc gives each thread that allocates its own arena; with informers, workers and
  // HTTP threads that multiplies freed-but-kept memory. Two arenas keep the footprint flat.
  mallopt(M_ARENA_MAX, 2);
  carapace::SetUpProcess(4);
  try {
    return carapace::Main(argc, argv, signals);
  } catch (const std::exception& e) {
    carapace::log::Error("carapace-operator stopped on an unexpected error", {{"error", e.what()}});
    return 1;
  }
}
