// What the install tests (deploy/default with kustomize, charts/carapace with helm) share:
// an API double whose operator token is held to the install's own ClusterRole and Role, and
// the operator run the way the install's Deployment runs it, reconciling an AgentRun.
// Test code only (Catch2 assertions).
#pragma once

#include <catch2/catch_test_macros.hpp>

#include <signal.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/child_process.h"
#include "tests/support/kube_api_double.h"
#include "tests/support/worker_process.h"

namespace carapace::testing {

// An API double for one install: `rbac_files` are the install's ClusterRole/Role YAML, and
// `ns` the namespace it puts the operator in (where its Role applies).
class InstallCluster {
 public:
  InstallCluster(std::vector<std::string> rbac_files, const std::string& ns) : ns_(ns) {
    KubeApiDoubleOptions options;
    options.rbac_files = std::move(rbac_files);
    options.operator_namespace = ns;
    options.crd_validator = DefaultCrdValidator();  // AgentRuns checked against the CRD, as a real server does
    operator_token_ = options.operator_token;
    api_ = std::make_unique<KubeApiDouble>(options);
    REQUIRE(api_->Start().ok());
    REQUIRE(api_->WriteKubeconfig(dir_.Sub("admin"), "admin-token").ok());
    REQUIRE(api_->WriteKubeconfig(dir_.Sub("operator"), operator_token_).ok());
  }

  KubeApiDouble& api() { return *api_; }
  const std::string& ns() const { return ns_; }
  const TempDir& dir() const { return dir_; }
  std::string admin_kubeconfig() const { return dir_.Sub("admin"); }

  // kubectl as cluster admin (its own discovery cache, so tests never share one).
  CommandResult Kubectl(std::vector<std::string> args) const {
    args.insert(args.begin(), {KUBECTL_BIN, "--kubeconfig", dir_.Sub("admin"), "--cache-dir", dir_.Sub("cache")});
    return RunCommand(args);
  }

  // Runs carapace-operator as the Deployment `name` in the install's namespace would run it
  // (its container's args and env, as the operator's service account), applies
  // examples/hello.yaml, and waits until the AgentRun is accepted and has its StatefulSet,
  // which is returned (null when it never came). In a pod the lease namespace defaults to
  // the pod's, so it is added when the args leave it out; the listen address moves to
  // loopback.
  nlohmann::json RunOperatorAsDeployed(const std::string& name) {
    auto deployment = api_->Get("apps/v1", "deployments", ns_, name);
    REQUIRE(deployment.ok());
    nlohmann::json pod = (*deployment)["spec"]["template"]["spec"];
    REQUIRE(pod["containers"].size() == 1);
    nlohmann::json container = pod["containers"][0];
    CHECK(api_->Get("v1", "serviceaccounts", ns_, pod.value("serviceAccountName", "")).ok());

    std::vector<std::string> argv = {OPERATOR_BIN, "--kubeconfig", dir_.Sub("operator")};
    bool lease_namespace = false;
    for (const auto& arg : container.value("args", nlohmann::json::array())) {
      const std::string a = arg.get<std::string>();
      if (a.rfind("--http-listen", 0) == 0) continue;
      lease_namespace = lease_namespace || a.rfind("--lease-namespace", 0) == 0;
      argv.push_back(a);
    }
    if (!lease_namespace) argv.push_back("--lease-namespace=" + ns_);
    argv.push_back("--http-listen=127.0.0.1:" + std::to_string(FreePort()));
    std::map<std::string, std::string> env;
    for (const auto& e : container.value("env", nlohmann::json::array())) {
      if (e.contains("value")) env[e["name"].get<std::string>()] = e["value"].get<std::string>();
    }
    ChildProcess op(argv, env);

    CommandResult ar = Kubectl({"apply", "-f", std::string(CARAPACE_SOURCE_DIR) + "/examples/hello.yaml"});
    INFO(ar.err);
    REQUIRE(ar.exit_code == 0);
    nlohmann::json statefulset;
    for (int i = 0; i < 150 && statefulset.is_null(); ++i) {
      auto got = api_->Get("carapace.dev/v1alpha1", "agentruns", "default", "hello");
      auto sts = api_->Get("apps/v1", "statefulsets", "default", "hello");
      if (got.ok() && got->dump().find("\"SpecValid\"") != std::string::npos && sts.ok()) {
        statefulset = *sts;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    std::ifstream log(op.err_path());
    INFO(std::string(std::istreambuf_iterator<char>(log), {}));
    CHECK_FALSE(statefulset.is_null());
    op.Kill(SIGTERM);
    CHECK(op.Wait(20000).exit_code == 0);
    return statefulset;
  }

 private:
  TempDir dir_;
  std::string ns_;
  std::string operator_token_;
  std::unique_ptr<KubeApiDouble> api_;
};

}  // namespace carapace::testing
