// Starting carapace-worker as a child process for tests and benchmarks: free loopback
// ports, a token file, a control-API stub with the token, HTTP GETs of the probes.
// Test support only.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/client_context.h>

#include "carapace/worker/v1/control.grpc.pb.h"
#include "tests/support/child_process.h"

namespace carapace::testing {

// A loopback port nothing listens on now.
int FreePort();

// GET http://127.0.0.1:port/path: (status code, body); status -1 when nothing answered.
std::pair<int, std::string> HttpGet(int port, const std::string& path);
// The same on another loopback address (127.0.0.N), as the process kubelet's pods use.
std::pair<int, std::string> HttpGet(const std::string& ip, int port, const std::string& path);

class WorkerProcess {
 public:
  // `dir` holds the token file; `extra` flags are appended (e.g. --grace-seconds 1).
  WorkerProcess(std::string worker_bin, std::string spec, std::string state_dir, std::string dir,
                std::vector<std::string> extra = {});
  ~WorkerProcess();

  // Starts the process and waits until /readyz answers (200 or 503) about an open store,
  // which the worker serves once its control API listens; with `store_open` false, any
  // answer will do (a volume too full to open the store). False on timeout.
  bool Start(int timeout_ms = 20000, bool store_open = true);
  // SIGTERM (or `signal`) and wait; the result holds the exit code and output.
  CommandResult Stop(int signal = 15, int timeout_ms = 20000);
  void Kill();  // SIGKILL, reaped
  // Environment variables the process gets on top of this one's (OTEL_*, say); before Start.
  void SetEnv(std::map<std::string, std::string> env) { env_ = std::move(env); }

  const std::string& token() const { return token_; }
  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  ChildProcess* child() { return child_.get(); }

  worker::v1::WorkerControl::Stub& stub() { return *stub_; }
  // GetStatus with the token. Throws std::runtime_error with the gRPC error when it fails
  // (the test case fails, naming it).
  worker::v1::RunStatus Status() const;
  // A context carrying the token (or `token` when given), with a 10 s deadline unless streaming.
  std::unique_ptr<grpc::ClientContext> Context(const std::string& token = "", bool streaming = false) const;

 private:
  std::string bin_, spec_, state_dir_, dir_, token_;
  std::vector<std::string> extra_;
  std::map<std::string, std::string> env_;
  int grpc_port_ = 0;
  int http_port_ = 0;
  std::unique_ptr<ChildProcess> child_;
  std::unique_ptr<worker::v1::WorkerControl::Stub> stub_;
};

}  // namespace carapace::testing
