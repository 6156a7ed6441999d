// Asks an agent's worker how its run is going, over the worker's control API (gRPC,
// GetStatus, with the AgentRun's control token). One channel per pod address, reused;
// a short deadline, so a hung worker cannot hold a reconcile.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "carapace/worker/v1/run.pb.h"
#include "common/control_channel.h"
#include "common/status.h"

namespace grpc {
class Channel;
}

namespace carapace::controller {

class WorkerStatusReader {
 public:
  virtual ~WorkerStatusReader() = default;
  // `address` is host:port; `tls` off: plaintext. Errors: kUnavailable (not answering, or
  // its certificate not verified), kPermissionDenied (token).
  virtual Result<worker::v1::RunStatus> Read(const std::string& address, const std::string& token,
                                             const ControlTls& tls) = 0;
  // The pod at `address` is gone: drop what is kept for it.
  virtual void Forget(const std::string& address) = 0;
};

class GrpcWorkerStatusReader : public WorkerStatusReader {
 public:
  explicit GrpcWorkerStatusReader(std::chrono::milliseconds deadline = std::chrono::milliseconds(2000))
      : deadline_(deadline) {}
  Result<worker::v1::RunStatus> Read(const std::string& address, const std::string& token,
                                     const ControlTls& tls) override;
  void Forget(const std::string& address) override;

 private:
  std::chrono::milliseconds deadline_;
  std::mutex mu_;
  struct Kept {
    ControlTls tls;  // what the channel was made with: another CA or name needs a new one
    std::shared_ptr<grpc::Channel> channel;
  };
  std::map<std::string, Kept> channels_;
};

}  // namespace carapace::controller
