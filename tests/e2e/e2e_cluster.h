// The end-to-end cluster the e2e tests share: the Kubernetes API double, real
// carapace-operator processes (as their least-privilege service account, with leader
// election), the process kubelet running real carapace-worker processes, and the real
// kubectl as cluster admin. Test code only (Catch2 assertions); the including target
// defines KUBECTL_BIN, WORKER_BIN, OPERATOR_BIN and CARAPACE_BIN.
#pragma once

#include <catch2/catch_test_macros.hpp>

#include <signal.h>

#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "operator/kube/config.h"
#include "tests/support/child_process.h"
#include "tests/support/kube_api_double.h"
#include "tests/support/process_kubelet.h"
#include "tests/support/wait.h"
#include "tests/support/worker_process.h"

namespace carapace::testing {

// One cluster: the API double, the operator, a kubelet, and kubectl as cluster admin.
class Cluster {
 public:
  // `configure`, when given, changes the API double's options (a feature gate, say).
  // `operator_args` and `operator_env` go to every operator started (tracing, say).
  explicit Cluster(int operators = 1, const std::function<void(KubeApiDoubleOptions&)>& configure = nullptr,
                   std::vector<std::string> operator_args = {}, std::map<std::string, std::string> operator_env = {})
      : operator_args_(std::move(operator_args)), operator_env_(std::move(operator_env)) {
    KubeApiDoubleOptions o;
    o.rbac_files = {std::string(CARAPACE_SOURCE_DIR) + "/deploy/rbac/cluster_role.yaml", std::string(CARAPACE_SOURCE_DIR) + "/deploy/rbac/leader_election_role.yaml"};
    o.crd_validator = DefaultCrdValidator();  // the CRD's schema, defaults and CEL rules, as a real server
    if (configure) configure(o);
    api_ = std::make_unique<KubeApiDouble>(o);
    REQUIRE(api_->Start().ok());
    admin_ = dir_.Sub("admin.kubeconfig");
    operator_config_ = dir_.Sub("operator.kubeconfig");
    REQUIRE(api_->WriteKubeconfig(admin_, "admin-token").ok());
    REQUIRE(api_->WriteKubeconfig(operator_config_, o.operator_token).ok());
    CommandResult crd = Kubectl({"apply", "-f", std::string(CARAPACE_SOURCE_DIR) + "/crds/carapace.dev_agentruns.yaml"});
    INFO(crd.err);
    REQUIRE(crd.exit_code == 0);
    ProcessKubeletOptions k;
    k.worker_bin = WORKER_BIN;
    k.cli_bin = CARAPACE_BIN;  // init containers that run the image's CLI (restoreFrom)
    k.root = dir_.Sub("node");
    // Pods listen on 127.0.0.N:7070; tests run in parallel, so each holds its own addresses.
    k.first_ip = loopback_.first();
    kubelet_ = std::make_unique<ProcessKubelet>(api_.get(), k);
    kubelet_->Start();
    for (int i = 0; i < operators; ++i) StartOperator();
  }

  ~Cluster() {
    for (auto& op : operators_) {
      if (op.child && op.child->Running()) {
        op.child->Kill(SIGTERM);
        op.child->Wait(15000);
      }
    }
    kubelet_->Stop();
    api_->Stop();
  }

  CommandResult Kubectl(std::vector<std::string> args, int timeout_ms = 30000) {
    // Its own discovery cache: another test's server may have had this port.
    args.insert(args.begin(), {KUBECTL_BIN, "--kubeconfig", admin_, "--cache-dir", dir_.Sub("kubectl-cache")});
    return RunCommand(args, timeout_ms);
  }

  // kubectl apply of a manifest given as text; the result, for a test that expects a refusal.
  CommandResult TryApply(const std::string& manifest) {
    const std::string file = dir_.Sub("manifest-" + std::to_string(applied_++) + ".yaml");
    std::ofstream(file) << manifest;
    return Kubectl({"apply", "-f", file});
  }

  // Applies a manifest given as text.
  void Apply(const std::string& manifest) {
    CommandResult r = TryApply(manifest);
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
  }

  nlohmann::json GetAr(const std::string& name) {
    CommandResult r = Kubectl({"get", "ar", name, "-o", "json"});
    if (r.exit_code != 0) return nullptr;
    return nlohmann::json::parse(r.out, nullptr, false);
  }

  std::string Phase(const std::string& name) {
    nlohmann::json ar = GetAr(name);
    return ar.is_object() ? ar.value("/status/phase"_json_pointer, std::string()) : "";
  }

  bool WaitForPhase(const std::string& name, const std::string& phase, int timeout_ms = 60000) {
    bool ok = WaitFor([&] { return Phase(name) == phase; }, timeout_ms);
    if (!ok) {
      UNSCOPED_INFO("AgentRun " << name << " is " << GetAr(name).dump(2));
      UNSCOPED_INFO("worker log: " << kubelet_->WorkerLog("default", name + "-0"));
      auto pod = api_->Get("v1", "pods", "default", name + "-0");
      UNSCOPED_INFO("pod: " << (pod.ok() ? pod->value("status", nlohmann::json()).dump() : pod.status().message()));
      UNSCOPED_INFO("operator log: " << OperatorLog(0));
    }
    return ok;
  }

  void StartOperator() {
    Operator op;
    op.http_port = FreePort();
    std::vector<std::string> argv = {
        OPERATOR_BIN, "--kubeconfig", operator_config_, "--http-listen", "127.0.0.1:" + std::to_string(op.http_port),
        "--status-interval-seconds", "1", "--leader-elect", "--lease-namespace", "carapace-system",
        "--lease-seconds", "3"};
    argv.insert(argv.end(), operator_args_.begin(), operator_args_.end());
    op.child = std::make_unique<ChildProcess>(argv, operator_env_);
    operators_.push_back(std::move(op));
  }

  std::string OperatorLog(size_t i) {
    if (i >= operators_.size()) return "";
    std::ifstream in(operators_[i].child->err_path());
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  // Operator i's /metrics page; "" when it does not answer.
  std::string OperatorMetrics(size_t i = 0) {
    auto [code, body] = HttpGet(operators_[i].http_port, "/metrics");
    return code == 200 ? body : "";
  }

  // 1 when operator i says it leads, 0 when not, -1 when it does not answer.
  int Leader(size_t i) {
    const std::string page = OperatorMetrics(i);
    if (page.empty()) return -1;
    return page.find("leader_election_master_status{name=\"carapace-operator\"} 1") != std::string::npos ? 1 : 0;
  }

  // A worker's /metrics, at its pod's IP and `http` container port; "" when unreachable.
  std::string WorkerMetrics(const std::string& pod_name) {
    auto pod = api_->Get("v1", "pods", "default", pod_name);
    if (!pod.ok()) return "";
    const std::string ip = pod->value("/status/podIP"_json_pointer, std::string());
    int port = 0;
    for (const auto& p : pod->value("/spec/containers/0/ports"_json_pointer, nlohmann::json::array())) {
      if (p.value("name", "") == "http") port = p.value("containerPort", 0);
    }
    if (ip.empty() || port == 0) return "";
    auto [code, body] = HttpGet(ip, port, "/metrics");
    return code == 200 ? body : "";
  }

  // `carapace CMD --worker POD_IP:7070 ARGS...` with the AgentRun's control token, as a user
  // with kubectl port-forward would run it (pod NAME-0 in `default`).
  CommandResult WorkerCli(const std::string& name, const std::vector<std::string>& args) {
    auto pod = api_->Get("v1", "pods", "default", name + "-0");
    REQUIRE(pod.ok());
    const std::string ip = pod->value("/status/podIP"_json_pointer, std::string());
    auto secret = api_->Get("v1", "secrets", "default", name + "-control");
    REQUIRE(secret.ok());
    auto token = kube::DecodeBase64((*secret)["data"]["token"].get<std::string>());
    REQUIRE(token.ok());
    const std::string token_file = dir_.Sub(name + ".token");
    std::ofstream(token_file) << *token;
    std::vector<std::string> argv = {CARAPACE_BIN, args[0], "--worker", ip + ":7070", "--token-file", token_file};
    argv.insert(argv.end(), args.begin() + 1, args.end());
    return RunCommand(argv);
  }

  KubeApiDouble& api() { return *api_; }
  ProcessKubelet& kubelet() { return *kubelet_; }
  ChildProcess& operator_process(size_t i) { return *operators_[i].child; }
  int operator_http_port(size_t i) { return operators_[i].http_port; }
  const TempDir& dir() const { return dir_; }

 private:
  std::vector<std::string> operator_args_;
  std::map<std::string, std::string> operator_env_;
  struct Operator {
    std::unique_ptr<ChildProcess> child;
    int http_port = 0;
  };
  TempDir dir_;
  std::unique_ptr<KubeApiDouble> api_;
  LoopbackBlock loopback_{6};  // before the kubelet, so released after it
  std::unique_ptr<ProcessKubelet> kubelet_;
  std::vector<Operator> operators_;
  std::string admin_, operator_config_;
  int applied_ = 0;
};

}  // namespace carapace::testing
