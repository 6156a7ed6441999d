// An OpenAI-compatible HTTP server double (/v1/chat/completions streamed as server-sent
// events or whole, /v1/embeddings, /v1/models), with faults on demand: HTTP errors, a
// stream cut mid-way, a slow first byte, a required API key. Plain sockets, so a fault can
// be exactly what a broken server does (a connection dropped inside a chunked body).
// It records what it was asked. Test support only: never linked into a shipped binary.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace carapace::testing {

struct FakeCompletion {
  std::vector<std::string> content;          // streamed content deltas
  std::vector<nlohmann::json> tool_calls;    // delta.tool_calls entries, one chunk each, after the content
  int status = 200;                          // not 200: answer this with error_message, nothing streamed
  std::string error_message = "scripted failure";
  int cut_after = -1;                        // send this many chunks, then drop the connection
  int delay_ms = 0;                          // wait before answering
  int chunk_delay_ms = 0;                    // wait before each streamed chunk (a slow model)
  bool usage = true;                         // send a usage chunk (prompt 11, completion 7)
  std::string finish_reason;                 // default: tool_calls when there are calls, else stop
};

struct FakeHttpRequest {
  std::string method;
  std::string path;
  std::string authorization;
  std::string traceparent;  // W3C trace context the caller sent, if any
  nlohmann::json body;
};

class FakeOpenAiServer {
 public:
  // With `api_key`, a request without "Authorization: Bearer <api_key>" gets 401.
  explicit FakeOpenAiServer(std::string api_key = "", int dimensions = 8);
  ~FakeOpenAiServer();

  // 127.0.0.1, a free port; or `port` again after Stop(), as a service that restarts at the
  // same address (while stopped, connections are refused).
  bool Start(int port = 0);
  void Stop();
  int port() const { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }

  // The key a request must carry from now on (a key rotated at the service).
  void SetApiKey(std::string api_key);
  void Push(FakeCompletion completion);
  size_t pending() const;
  std::vector<FakeHttpRequest> requests() const;
  // False: requests are not kept (a long soak would hold every prompt it ever sent).
  void SetKeepRequests(bool keep) { keep_requests_ = keep; }

  // A context window enforced as vLLM's OpenAI server does: GET /v1/models lists
  // max_model_len, a chat request whose prompt (with max_tokens, when given) is longer gets
  // 400 with vLLM's words, and usage reports the prompt's tokens as counted here: one token
  // per four bytes of each message's role, content and tool calls, and 4 per message.
  void SetMaxModelLen(int64_t tokens);
  static int64_t CountPromptTokens(const nlohmann::json& messages);
  int64_t max_prompt_tokens() const { return max_prompt_tokens_.load(); }  // of the requests answered
  // Answers chat requests when no scripted completion is queued.
  using Responder = std::function<FakeCompletion(const nlohmann::json& request_body)>;
  void SetResponder(Responder responder);

 private:
  void Serve(int fd);
  // False when the connection is done (closed, dropped by a fault, or the server stops).
  bool ServeOne(int fd, std::string* pending);
  bool Answer(int fd, const FakeHttpRequest& request);

  std::string api_key_;
  int dimensions_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::vector<std::thread> workers_;
  std::deque<FakeCompletion> completions_;
  Responder responder_;
  std::atomic<int64_t> max_model_len_{0};
  std::atomic<int64_t> max_prompt_tokens_{0};
  std::vector<FakeHttpRequest> requests_;
  std::atomic<bool> keep_requests_{true};
};

}  // namespace carapace::testing
