// The OpenAI-compatible HTTP double.
#include "tests/support/fake_openai.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "tests/support/fake_triton.h"  // FakeEmbedding: both doubles embed alike

#include "tests/support/socket_io.h"

namespace carapace::testing {

namespace {

std::string Chunk(const std::string& data) {
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  return size + data + "\r\n";
}

std::string Reply(int status, const std::string& content_type, const std::string& body) {
  const char* reason = status == 200 ? "OK" : status == 401 ? "Unauthorized" : status == 404 ? "Not Found" : "Error";
  return "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\nContent-Type: " + content_type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string ErrorBody(const std::string& message, const std::string& type) {
  return nlohmann::json({{"error", {{"message", message}, {"type", type}, {"code", nullptr}}}}).dump();
}

}  // namespace

void FakeOpenAiServer::SetMaxModelLen(int64_t tokens) { max_model_len_ = tokens; }

void FakeOpenAiServer::SetResponder(Responder responder) {
  std::lock_guard<std::mutex> lock(mu_);
  responder_ = std::move(responder);
}

int64_t FakeOpenAiServer::CountPromptTokens(const nlohmann::json& messages) {
  int64_t tokens = 0;
  if (!messages.is_array()) return 0;
  for (const auto& m : messages) {
    if (!m.is_object()) continue;
    size_t bytes = m.value("role", "").size();
    if (m.contains("content") && m["content"].is_string()) bytes += m["content"].get<std::string>().size();
    if (m.contains("tool_calls")) bytes += m["tool_calls"].dump().size();
    tokens += static_cast<int64_t>(bytes / 4) + 4;
  }
  return tokens;
}

FakeOpenAiServer::FakeOpenAiServer(std::string api_key, int dimensions) : api_key_(std::move(api_key)), dimensions_(dimensions) {}

FakeOpenAiServer::~FakeOpenAiServer() { Stop(); }

bool FakeOpenAiServer::Start(int port) {
  stopping_ = false;
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return false;
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
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
      int one = 1;  // small SSE writes go out at once, as real servers set it
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
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
  // Persistent connections, as real servers keep them: requests are answered in turn until
  // the client closes, goes quiet, or a fault drops the connection.
  std::string data;
  while (!stopping_ && ServeOne(fd, &data)) {
  }
}

bool FakeOpenAiServer::ServeOne(int fd, std::string* pending) {
  std::string& data = *pending;
  char buf[8192];
  size_t header_end = std::string::npos;
  while ((header_end = data.find("\r\n\r\n")) == std::string::npos) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) {
      if (stopping_) return false;
      continue;
    }
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return false;
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
      if (name == "content-length") content_length = std::strtoul(value.c_str(), nullptr, 10);
      if (name == "authorization") request.authorization = value;
      if (name == "traceparent") request.traceparent = value;
    }
    at = next;
  }
  data.erase(0, header_end + 4);
  while (data.size() < content_length) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) return false;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return false;
    data.append(buf, static_cast<size_t>(n));
  }
  request.body = nlohmann::json::parse(data.substr(0, content_length), nullptr, false);
  if (!request.body.is_object()) request.body = nlohmann::json::object();  // a test's bad body must not throw here
  data.erase(0, content_length);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (keep_requests_) requests_.push_back(request);
  }
  return Answer(fd, request);
}

void FakeOpenAiServer::SetApiKey(std::string api_key) {
  std::lock_guard<std::mutex> lock(mu_);
  api_key_ = std::move(api_key);
}

bool FakeOpenAiServer::Answer(int fd, const FakeHttpRequest& request) {
  std::string api_key;
  {
    std::lock_guard<std::mutex> lock(mu_);
    api_key = api_key_;
  }
  if (!api_key.empty() && request.authorization != "Bearer " + api_key) {
    return SendAll(fd, Reply(401, "application/json", ErrorBody("Incorrect API key provided.", "invalid_request_error")));
  }
  if (request.method == "GET" && request.path == "/v1/models") {
    // vLLM's ModelCard (vllm/entrypoints/openai/protocol.py) carries max_model_len.
    nlohmann::json card = {{"id", "llm"}, {"object", "model"}, {"owned_by", "vllm"}};
    if (max_model_len_ > 0) card["max_model_len"] = max_model_len_.load();
    return SendAll(fd, Reply(200, "application/json", nlohmann::json({{"object", "list"}, {"data", {card}}}).dump()));
  }
  if (request.method == "POST" && request.path == "/v1/embeddings") {
    nlohmann::json data = nlohmann::json::array();
    const auto& input = request.body.value("input", nlohmann::json::array());
    for (size_t i = 0; i < input.size(); ++i) {
      const std::string text = input[i].is_string() ? input[i].get<std::string>() : input[i].dump();
      data.push_back({{"object", "embedding"}, {"index", i}, {"embedding", FakeEmbedding(text, dimensions_)}});
    }
    return SendAll(fd, Reply(200, "application/json", nlohmann::json({{"object", "list"}, {"data", data}}).dump()));
  }
  if (request.method != "POST" || request.path != "/v1/chat/completions") {
    return SendAll(fd, Reply(404, "application/json", ErrorBody("no route " + request.path, "not_found")));
  }
  // The tools' schemas are part of the prompt too (the chat template renders them).
  const int64_t prompt_tokens = CountPromptTokens(request.body.value("messages", nlohmann::json::array())) +
                                static_cast<int64_t>(request.body.value("tools", nlohmann::json::array()).dump().size() / 4);
  if (const int64_t window = max_model_len_.load(); window > 0) {
    // vllm/entrypoints/openai/serving_engine.py (_validate_input): the prompt and the
    // requested completion together must fit max_model_len; 400, ErrorResponse.
    const int64_t max_tokens = request.body.value("max_tokens", int64_t{0});
    if (prompt_tokens + max_tokens > window || prompt_tokens >= window) {
      const std::string message =
          max_tokens > 0 ? "This model's maximum context length is " + std::to_string(window) +
                               " tokens. However, you requested " + std::to_string(prompt_tokens + max_tokens) +
                               " tokens (" + std::to_string(prompt_tokens) + " in the messages, " +
                               std::to_string(max_tokens) +
                               " in the completion). Please reduce the length of the messages or completion."
                         : "This model's maximum context length is " + std::to_string(window) +
                               " tokens. However, your request has " + std::to_string(prompt_tokens) +
                               " input tokens. Please reduce the length of the input messages.";
      nlohmann::json body = {{"object", "error"}, {"message", message}, {"type", "BadRequestError"},
                             {"param", nullptr}, {"code", 400}};
      return SendAll(fd, Reply(400, "application/json", body.dump()));
    }
    int64_t seen = max_prompt_tokens_.load();
    while (prompt_tokens > seen && !max_prompt_tokens_.compare_exchange_weak(seen, prompt_tokens)) {
    }
  }
  FakeCompletion c;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!completions_.empty()) {
      c = std::move(completions_.front());
      completions_.pop_front();
    } else if (responder_) {
      Responder responder = responder_;
      lock.unlock();
      c = responder(request.body);
    } else {
      return SendAll(fd, Reply(500, "application/json", ErrorBody("the double has no scripted completion left", "server_error")));
    }
  }
  if (c.delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(c.delay_ms));
  if (c.status != 200) {
    return SendAll(fd, Reply(c.status, "application/json", ErrorBody(c.error_message, "server_error")));
  }
  const std::string finish = !c.finish_reason.empty() ? c.finish_reason : c.tool_calls.empty() ? "stop" : "tool_calls";
  const int64_t reported_prompt = max_model_len_ > 0 ? prompt_tokens : 11;
  const nlohmann::json usage = {{"prompt_tokens", reported_prompt}, {"completion_tokens", 7}, {"total_tokens", reported_prompt + 7}};
  if (!request.body.value("stream", false)) {
    std::string text;
    for (const auto& t : c.content) text += t;
    nlohmann::json message = {{"role", "assistant"}, {"content", text}};
    if (!c.tool_calls.empty()) message["tool_calls"] = c.tool_calls;
    nlohmann::json reply = {{"id", "cmpl-1"}, {"object", "chat.completion"},
                            {"choices", {{{"index", 0}, {"message", message}, {"finish_reason", finish}}}}};
    if (c.usage) reply["usage"] = usage;
    return SendAll(fd, Reply(200, "application/json", reply.dump()));
  }
  if (!SendAll(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n")) {
    return false;
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
    if (c.cut_after >= 0 && sent == c.cut_after + 1) return false;  // dropped inside the chunked body
    if (c.chunk_delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(c.chunk_delay_ms));
    if (!SendAll(fd, Chunk("data: " + j.dump() + "\n\n"))) return false;
    ++sent;
  }
  return SendAll(fd, Chunk("data: [DONE]\n\n") + "0\r\n\r\n");
}

}  // namespace carapace::testing
