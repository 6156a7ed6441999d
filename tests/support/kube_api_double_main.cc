// carapace-test-kube-apiserver: the Kubernetes API double as a process, for manual runs
// with kubectl and for tests that need the API server in another process.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "tests/support/kube_api_double.h"

namespace {

int Usage() {
  std::cerr << "usage: carapace-test-kube-apiserver [--port N] [--rbac FILE]... "
               "[--kubeconfig-out PATH --token T] [--crd-validator PATH (\"\": off)]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  carapace::testing::KubeApiDoubleOptions options;
  options.crd_validator = carapace::testing::DefaultCrdValidator();
  std::string kubeconfig_out, token;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (i + 1 >= argc) return Usage();
    std::string value = argv[++i];
    if (arg == "--port") {
      options.port = std::atoi(value.c_str());
    } else if (arg == "--rbac") {
      options.rbac_files.push_back(value);
    } else if (arg == "--kubeconfig-out") {
      kubeconfig_out = value;
    } else if (arg == "--token") {
      token = value;
    } else if (arg == "--crd-validator") {
      options.crd_validator = value;
    } else {
      return Usage();
    }
  }
  // Block the stop signals before any thread starts, so only sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  carapace::testing::KubeApiDouble server(options);
  carapace::Status started = server.Start();
  if (!started.ok()) {
    std::cerr << "carapace-test-kube-apiserver: " << started.ToString() << "\n";
    return 1;
  }
  if (!kubeconfig_out.empty()) {
    carapace::Status written = server.WriteKubeconfig(kubeconfig_out, token);
    if (!written.ok()) {
      std::cerr << "carapace-test-kube-apiserver: " << written.ToString() << "\n";
      return 1;
    }
  }
  std::cout << "listening on " << server.port() << std::endl;
  int received = 0;
  sigwait(&stop_signals, &received);
  server.Stop();
  return 0;
}
