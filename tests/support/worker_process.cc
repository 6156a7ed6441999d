// carapace-worker as a child process.
#include "tests/support/worker_process.h"

#include <stdexcept>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>
#include <thread>

#include <grpcpp/create_channel.h>

namespace carapace::testing {

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::pair<int, std::string> HttpGet(int port, const std::string& path) { return HttpGet("127.0.0.1", port, path); }

std::pair<int, std::string> HttpGet(const std::string& ip, int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, ip.c_str(), &a.sin_addr) != 1) {
    ::close(fd);
    return {-1, ""};
  }
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return {-1, ""};
  }
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + ip + "\r\nConnection: close\r\n\r\n";
  ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string data;
  char buf[8192];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) data.append(buf, static_cast<size_t>(n));
  ::close(fd);
  if (data.rfind("HTTP/1.1 ", 0) != 0) return {-1, data};
  int code = std::atoi(data.c_str() + 9);
  size_t body = data.find("\r\n\r\n");
  std::string out = body == std::string::npos ? "" : data.substr(body + 4);
  // cpprest answers with a Content-Length body; a chunked one is not expected here.
  return {code, out};
}

WorkerProcess::WorkerProcess(std::string worker_bin, std::string spec, std::string state_dir, std::string dir,
                             std::vector<std::string> extra)
    : bin_(std::move(worker_bin)), spec_(std::move(spec)), state_dir_(std::move(state_dir)), dir_(std::move(dir)),
      extra_(std::move(extra)) {
  std::mt19937_64 rng(std::random_device{}());
  const char* hex = "0123456789abcdef";
  for (int i = 0; i < 32; ++i) token_ += hex[rng() % 16];
  std::ofstream(dir_ + "/token") << token_ << "\n";
}

WorkerProcess::~WorkerProcess() {
  if (child_ && child_->Running()) Kill();
}

bool WorkerProcess::Start(int timeout_ms, bool store_open) {
  grpc_port_ = FreePort();
  http_port_ = FreePort();
  std::vector<std::string> argv = {bin_, "--spec", spec_, "--state-dir", state_dir_, "--token-file", dir_ + "/token",
                                   "--grpc-listen", address(), "--http-listen", "127.0.0.1:" + std::to_string(http_port_)};
  argv.insert(argv.end(), extra_.begin(), extra_.end());
  child_ = std::make_unique<ChildProcess>(argv, env_);
  stub_ = worker::v1::WorkerControl::NewStub(grpc::CreateChannel(address(), grpc::InsecureChannelCredentials()));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!child_->Running()) return false;
    auto [code, body] = HttpGet(http_port_, "/readyz");
    if (code > 0 && (!store_open || body.find("\"phase\"") != std::string::npos)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

CommandResult WorkerProcess::Stop(int signal, int timeout_ms) {
  child_->Kill(signal);
  return child_->Wait(timeout_ms);
}

void WorkerProcess::Kill() {
  child_->Kill(9);
  child_->Wait(10000);
}

worker::v1::RunStatus WorkerProcess::Status() const {
  worker::v1::RunStatus out;
  auto ctx = Context();
  grpc::Status st = stub_->GetStatus(ctx.get(), worker::v1::GetStatusRequest(), &out);
  if (!st.ok()) throw std::runtime_error("GetStatus: " + st.error_message());
  return out;
}

std::unique_ptr<grpc::ClientContext> WorkerProcess::Context(const std::string& token, bool streaming) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!streaming) ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  ctx->AddMetadata("authorization", "Bearer " + (token.empty() ? token_ : token));
  return ctx;
}

}  // namespace carapace::testing
