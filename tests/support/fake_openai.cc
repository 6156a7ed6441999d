// The OpenAI-compatible HTTP double.
#include "tests/support/fake_openai.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "tests/support/fake_triton.h"  // FakeEmbedding: both doubles embed alike

namespace carapace::testing {

namespace {

bool SendAll(int fd, const std::string& data) {
  size_t at = 0;
  while (at < data.size()) {
    ssize_t n = ::send(fd, data.data() + at, data.size() - at, MSG_NOSIGNAL);
    if (n <= 0) return false;
    at += static_cast<size_t>(n);
  }
  return true;
}

std::string Chunk(const std::string& data) {
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  return size + data + "\r\n";
}

std::string Reply(int status, const std::string& content_type, const std::string& body) {
  const char* reason = status == 200 ? "OK" : status == 401 ? "Unauthorized" : status == 404 ? "Not Found" : "Error";
  return "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\nContent-Type: " + content_type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

std::string ErrorBody(const std::string& message, const std::string& type) {
  return nlohmann::json({{"error", {{"message", message}, {"type", type}, {"code", nullptr}}}}).dump();
}

}  // namespace

FakeOpenAiServer::FakeOpenAiServer(std::string api_key, int dimensions) : api_key_(std::move(api_key)), dimensions_(dimensions) {}

FakeOpenAiServer::~FakeOpenAiServer() { Stop(); }

bool FakeOpenAiServer::Start() {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 64) != 0) return false;
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] {
    while (!stopping_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard<std::mutex> lock(mu_);
      workers_.emplace_back([this, fd] {
        Serve(fd);
        ::close(fd);
      });
    }
  });
  return true;
}

void FakeOpenAiServer::Stop() {
  if (listen_fd_ < 0) return;
  stopping_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> workers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    workers.swap(workers_);
  }
  for (auto& w : workers) w.join();
  ::close(listen_fd_);
  listen_fd_ = -1;
}

void FakeOpenAiServer::Push(FakeCompletion completion) {
  std::lock_guard<std::mutex> lock(mu_);
  completions_.push_back(std::move(completion));
}

size_t FakeOpenAiServer::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return completions_.size();
}

std::vector<FakeHttpRequest> FakeOpenAiServer::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

void FakeOpenAiServer::Serve(int fd) {
  // One request per connection: every answer says Connection: close.
  std::string data;
  char buf[8192];
  size_t header_end = std::string::npos;
  while ((header_end = data.find("\r\n\r\n")) == std::string::npos) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) return;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return;
    data.append(buf, static_cast<size_t>(n));
  }
  FakeHttpRequest request;
  std::string head = data.substr(0, header_end);
  size_t sp1 = head.find(' '), sp2 = head.find(' ', sp1 + 1);
  request.method = head.substr(0, sp1);
  request.path = head.substr(sp1 + 1, sp2 - sp1 - 1);
  size_t content_length = 0;
  size_t at = head.find("\r\n");
  while (at != std::string::npos && at < head.size()) {
    size_t next = head.find("\r\n", at + 2);
    std::string line = head.substr(at + 2, next == std::string::npos ? std::string::npos : next - at - 2);
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      if (name == "content-length") content_length = std::stoul(value);
      if (name == "authorization") request.authorization = value;
    }
    at = next;
  }
  std::string body = data.substr(header_end + 4);
  while (body.size() < content_length) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return;
    body.append(buf, static_cast<size_t>(n));
  }
  request.body = nlohmann::json::parse(body, nullptr, false);
  {
    std::lock_guard<std::mutex> lock(mu_);
    requests_.push_back(request);
  }
  Answer(fd, request);
}

void FakeOpenAiServer::Answer(int fd, const FakeHttpRequest& request) {
  if (!api_key_.empty() && request.authorization != "Bearer " + api_key_) {
    SendAll(fd, Reply(401, "application/json", ErrorBody("Incorrect API key provided.", "invalid_request_error")));
    return;
  }
  if (request.method == "GET" && request.path == "/v1/models") {
    SendAll(fd, Reply(200, "application/json", R"({"object":"list","data":[{"id":"llm","object":"model"}]})"));
    return;
  }
  if (request.method == "POST" && request.path == "/v1/embeddings") {
    nlohmann::json data = nlohmann::json::array();
    const auto& input = request.body.value("input", nlohmann::json::array());
    for (size_t i = 0; i < input.size(); ++i) {
      data.push_back({{"object", "embedding"}, {"index", i}, {"embedding", FakeEmbedding(input[i].get<std::string>(), dimensions_)}});
    }
    SendAll(fd, Reply(200, "application/json", nlohmann::json({{"object", "list"}, {"data", data}}).dump()));
    return;
  }
  if (request.method != "POST" || request.path != "/v1/chat/completions") {
    SendAll(fd, Reply(404, "application/json", ErrorBody("no route " + request.path, "not_found")));
    return;
  }
  FakeCompletion c;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (completions_.empty()) {
      SendAll(fd, Reply(500, "application/json", ErrorBody("the double has no scripted completion left", "server_error")));
      return;
    }
    c = std::move(completions_.front());
    completions_.pop_front();
  }
  if (c.delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(c.delay_ms));
  if (c.status != 200) {
    SendAll(fd, Reply(c.status, "application/json", ErrorBody(c.error_message, "server_error")));
    return;
  }
  const std::string finish = !c.finish_reason.empty() ? c.finish_reason : c.tool_calls.empty() ? "stop" : "tool_calls";
  const nlohmann::json usage = {{"prompt_tokens", 11}, {"completion_tokens", 7}, {"total_tokens", 18}};
  if (!request.body.value("stream", false)) {
    std::string text;
    for (const auto& t : c.content) text += t;
    nlohmann::json message = {{"role", "assistant"}, {"content", text}};
    if (!c.tool_calls.empty()) message["tool_calls"] = c.tool_calls;
    nlohmann::json reply = {{"id", "cmpl-1"}, {"object", "chat.completion"},
                            {"choices", {{{"index", 0}, {"message", message}, {"finish_reason", finish}}}}};
    if (c.usage) reply["usage"] = usage;
    SendAll(fd, Reply(200, "application/json", reply.dump()));
    return;
  }
  if (!SendAll(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                   "Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n")) {
    return;
  }
  std::vector<nlohmann::json> chunks;
  auto chunk = [](nlohmann::json delta, nlohmann::json finish_reason) {
    return nlohmann::json{{"id", "cmpl-1"}, {"object", "chat.completion.chunk"},
                          {"choices", {{{"index", 0}, {"delta", std::move(delta)}, {"finish_reason", std::move(finish_reason)}}}}};
  };
  chunks.push_back(chunk({{"role", "assistant"}, {"content", ""}}, nullptr));
  for (const auto& t : c.content) chunks.push_back(chunk({{"content", t}}, nullptr));
  for (const auto& f : c.tool_calls) chunks.push_back(chunk({{"tool_calls", {f}}}, nullptr));
  chunks.push_back(chunk(nlohmann::json::object(), finish));
  if (c.usage) chunks.push_back({{"id", "cmpl-1"}, {"object", "chat.completion.chunk"}, {"choices", nlohmann::json::array()}, {"usage", usage}});
  int sent = 0;
  for (const auto& j : chunks) {
    // The role chunk carries no token; a cut counts content and call chunks.
    if (c.cut_after >= 0 && sent == c.cut_after + 1) return;  // dropped inside the chunked body
    if (!SendAll(fd, Chunk("data: " + j.dump() + "\n\n"))) return;
    ++sent;
  }
  SendAll(fd, Chunk("data: [DONE]\n\n") + "0\r\n\r\n");
}

}  // namespace carapace::testing
