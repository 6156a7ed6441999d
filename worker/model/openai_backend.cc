// OpenAI-compatible HTTP client (cpprestsdk).
#include "worker/model/openai_backend.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <system_error>
#include <thread>

#include <boost/asio/ssl.hpp>
#include <cpprest/http_client.h>

#include "common/http_body.h"
#include "common/json_text.h"
#include "common/limits.h"
#include "common/sse.h"
#include "worker/tools/header_values.h"

namespace carapace {

namespace http = web::http;

nlohmann::json OpenAiMessages(const std::vector<Message>& messages) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& m : messages) {
    nlohmann::json j = {{"role", m.role}, {"content", m.content}};
    if (m.role == "assistant" && !m.tool_calls.empty()) {
      if (m.content.empty()) j["content"] = nullptr;
      j["tool_calls"] = nlohmann::json::array();
      for (const auto& c : m.tool_calls) {
        // Servers parse the arguments of earlier calls (vLLM answers 400 otherwise): a
        // malformed call goes back as {}, and its raw text reaches the model in the error.
        std::string args = c.malformed.empty() && c.arguments.is_object() ? c.arguments.dump() : "{}";
        j["tool_calls"].push_back({{"id", c.id}, {"type", "function"},
                                   {"function", {{"name", c.name.empty() ? "invalid" : c.name}, {"arguments", args}}}});
      }
    }
    if (m.role == "tool") j["tool_call_id"] = m.tool_call_id;
    out.push_back(std::move(j));
  }
  return out;
}

void ToolCallFragments::Add(const nlohmann::json& f) {
  if (!f.is_object()) return;
  const int64_t index = f.contains("index") && f["index"].is_number_integer() ? f["index"].get<int64_t>() : -1;
  const std::string id = f.contains("id") && f["id"].is_string() ? f["id"].get<std::string>() : "";
  Slot* slot = nullptr;
  // The latest slot with this index, unless the fragment starts a call with another id.
  for (auto it = slots_.rbegin(); it != slots_.rend(); ++it) {
    if ((index >= 0 && it->index == index) || (index < 0 && !id.empty() && it->id == id)) {
      slot = &*it;
      break;
    }
  }
  if (index < 0 && id.empty() && !slots_.empty()) slot = &slots_.back();
  if (slot == nullptr || (!id.empty() && !slot->id.empty() && slot->id != id)) {
    slots_.push_back(Slot{index, id, "", ""});
    slot = &slots_.back();
  }
  if (slot->id.empty()) slot->id = id;
  if (f.contains("function") && f["function"].is_object()) {
    const auto& fn = f["function"];
    if (fn.contains("name") && fn["name"].is_string()) slot->name += fn["name"].get<std::string>();
    if (fn.contains("arguments")) {
      // Most servers stream a string; a few send the object whole.
      slot->arguments += fn["arguments"].is_string() ? fn["arguments"].get<std::string>() : fn["arguments"].dump();
    }
  }
}

std::vector<ToolCall> ToolCallFragments::Finish() const {
  std::vector<ToolCall> calls;
  for (const auto& s : slots_) {
    ToolCall c;
    c.name = s.name;
    const std::string args = s.arguments.empty() ? "{}" : s.arguments;
    nlohmann::json parsed = ParsePeerJson(args);
    if (s.name.empty()) {
      c.arguments = args;
      c.malformed = "the tool call has no function name";
    } else if (parsed.is_discarded() || !parsed.is_object()) {
      c.arguments = args;
      c.malformed = "the arguments of \"" + s.name + "\" are not a JSON object";
    } else {
      c.arguments = std::move(parsed);
    }
    calls.push_back(std::move(c));
  }
  return calls;
}

namespace {

std::string Body(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

// The message of an OpenAI-style error ({"error": {"message": ...}} or {"error": "..."}),
// else the start of the body; cut short and cleaned to UTF-8 (it ends up in the event log).
std::string ErrorDetail(const std::string& body) {
  std::string detail = body.substr(0, 300);
  auto j = ParsePeerJson(body);
  if (j.is_object() && j.contains("error")) {
    const auto& e = j["error"];
    if (e.is_object() && e.contains("message") && e["message"].is_string()) detail = e["message"].get<std::string>().substr(0, 300);
    else if (e.is_string()) detail = e.get<std::string>().substr(0, 300);
  }
  return ValidUtf8(detail).get<std::string>();
}

}  // namespace

void OpenAiStreamChunks::Handle(const std::string& data) {
  if (data == "[DONE]") {
    done = true;
    return;
  }
  auto j = ParsePeerJson(data);
  if (!j.is_object()) return;
  if (j.contains("usage") && j["usage"].is_object()) usage = j["usage"];
  if (j.contains("error")) {
    stream_error = ErrorDetail(data);
    done = true;
    return;
  }
  if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty() || !j["choices"][0].is_object()) return;
  const auto& choice = j["choices"][0];
  if (choice.contains("delta") && choice["delta"].is_object()) {
    const auto& delta = choice["delta"];
    if (delta.contains("content") && delta["content"].is_string()) {
      const std::string text = delta["content"];
      generated += text.size();
      out_->Text(text);
    }
    if (delta.contains("tool_calls") && delta["tool_calls"].is_array()) {
      if (!delta["tool_calls"].empty()) out_->Generating();  // a call is whole only at its end
      for (const auto& f : delta["tool_calls"]) fragments.Add(f);
    }
  }
  if (choice.contains("finish_reason") && choice["finish_reason"].is_string()) finish_reason = choice["finish_reason"];
}

namespace {

// A service's error reply as ours. 429, 5xx and the gateway errors may pass and fall over;
// a refused key or an unknown model is this endpoint's (the next may have its own); a
// refused request would be refused everywhere.
Status HttpError(int code, const std::string& body, const std::string& what) {
  std::string m = what + ": HTTP " + std::to_string(code) + ": " + ErrorDetail(body);
  switch (code) {
    case 401:
    case 403: return PermissionDenied(m + " (the service refused the API key: check spec.model.apiKey)");
    case 404: return NotFound(m);
    case 429: return ResourceExhausted(m);
    case 408: return Unavailable(m);
    case 501: return InvalidArgument(m);
    default: return code >= 500 ? Unavailable(m) : InvalidArgument(m);
  }
}

int64_t IntField(const nlohmann::json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_number_integer() ? j[key].get<int64_t>() : 0;
}

// Cancels a request at its deadline, or when the call returns early: cpprest's own timeout
// restarts with every chunk, so a server that trickles tokens or keep-alive comments would
// otherwise hold the call for ever.
class Deadline {
 public:
  explicit Deadline(std::chrono::seconds timeout) : thread_([this, timeout] {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, timeout, [this] { return done_; })) {
      expired_ = true;
      source_.cancel();
    }
  }) {}
  ~Deadline() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
    source_.cancel();  // an early return stops the server's generation too
  }
  pplx::cancellation_token token() const { return source_.get_token(); }
  pplx::cancellation_token_source* source() { return &source_; }
  bool expired() const {
    std::lock_guard<std::mutex> lock(mu_);
    return expired_;
  }

 private:
  pplx::cancellation_token_source source_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  bool expired_ = false;
  std::thread thread_;
};

Status FromException(const std::exception& e, const std::string& what, const Deadline* deadline = nullptr) {
  if (deadline && deadline->expired()) return DeadlineExceeded(what + ": timed out: no complete reply in time");
  if (auto* he = dynamic_cast<const http::http_exception*>(&e)) {
    if (he->error_code() == std::errc::timed_out) return DeadlineExceeded(what + ": timed out: " + he->what());
  }
  return Unavailable(what + ": " + ValidUtf8(std::string(e.what())).get<std::string>());
}

class OpenAiBackend : public ModelBackend {
 public:
  OpenAiBackend(ModelEndpointSpec spec, std::string token, int64_t dimensions)
      : spec_(std::move(spec)), token_(std::move(token)), dimensions_(dimensions), client_(BaseUri(), Config()) {}

  Status Chat(const ModelRequest& request, ChatStream* out) override {
    const std::vector<Message> none;
    const std::vector<Message>& messages = request.messages ? *request.messages : none;
    nlohmann::json body = {{"model", spec_.name},
                           {"messages", OpenAiMessages(messages)},
                           {"stream", true},
                           {"stream_options", {{"include_usage", true}}}};
    if (!request.tools.empty()) {
      body["tools"] = nlohmann::json::array();
      for (const auto& t : request.tools) body["tools"].push_back(FunctionJson(t));
      body["tool_choice"] = "auto";
    }
    if (spec_.max_tokens) body["max_tokens"] = *spec_.max_tokens;
    if (spec_.temperature) body["temperature"] = *spec_.temperature;
    if (spec_.top_p) body["top_p"] = *spec_.top_p;

    const std::string what = spec_.Describe();
    Deadline deadline{std::chrono::seconds(spec_.timeout_seconds)};
    try {
      http::http_response response =
          client_.request(Request(http::methods::POST, "chat/completions", Body(body), request.traceparent), deadline.token())
              .get();
      if (response.status_code() != http::status_codes::OK) {
        return HttpError(response.status_code(), ErrorBody(response, deadline), what);
      }
      ToolCallFragments fragments;
      size_t generated = 0;
      // A server that ignores "stream" answers with one JSON document.
      if (response.headers().content_type().find("text/event-stream") == std::string::npos) {
        auto whole = ReadAll(response, deadline);
        if (!whole.ok()) return ResourceExhausted(what + ": " + whole.status().message());
        auto j = ParsePeerJson(*whole);
        if (!j.is_object() || !j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) {
          // Something else answers at that address (a proxy page, another API): a person fixes it.
          return InvalidArgument(what + ": the response is not a chat completion");
        }
        const auto& choice = j["choices"][0];
        const nlohmann::json message = choice.is_object() ? choice.value("message", nlohmann::json::object()) : nlohmann::json::object();
        if (message.contains("content") && message["content"].is_string()) {
          out->Text(message["content"].get<std::string>());
          generated += message["content"].get<std::string>().size();
        }
        if (message.contains("tool_calls") && message["tool_calls"].is_array()) {
          int64_t i = 0;
          for (auto f : message["tool_calls"]) {
            if (f.is_object() && !f.contains("index")) f["index"] = i;
            ++i;
            fragments.Add(f);
          }
        }
        Finish(j, choice, fragments, messages, generated, out);
        return Status::Ok();
      }
      SseDecoder sse;
      OpenAiStreamChunks chunks(out);
      auto stream = response.body().streambuf();
      std::vector<uint8_t> buf(16 * 1024);
      while (!chunks.done) {
        // What has arrived, or wait for at least one byte: asking for a full buffer would
        // hold every token back until 16 KiB had come.
        const size_t want = std::max<size_t>(1, std::min(stream.in_avail(), buf.size()));
        size_t n = stream.getn(buf.data(), want).get();
        if (n == 0) break;
        for (const auto& data : sse.Feed(std::string_view(reinterpret_cast<const char*>(buf.data()), n))) {
          chunks.Handle(data);
        }
        if (sse.overflowed()) {
          deadline.source()->cancel();  // stop the download: nothing more of it is read
          return AfterStart(*out, ResourceExhausted(what + ": a stream event is over the limit of " +
                                                    std::to_string(sse.max_event_bytes()) + " bytes"));
        }
      }
      if (!chunks.done) {
        for (const auto& data : sse.Finish()) chunks.Handle(data);
      }
      if (deadline.expired()) return FromException(std::runtime_error("cancelled"), what, &deadline);
      if (!chunks.stream_error.empty()) {
        // The engine failed mid-reply (vLLM sends its error as an SSE data line): the
        // service's trouble, tried again; a context-length error is told by its wording.
        return AfterStart(*out, Unavailable(what + ": the service sent an error in the stream: " + chunks.stream_error));
      }
      if (!chunks.done && chunks.finish_reason.empty()) {
        return AfterStart(*out, Unavailable(what + ": the stream ended before the reply was complete"));
      }
      nlohmann::json whole = {{"usage", chunks.usage}};
      Finish(whole, {{"finish_reason", chunks.finish_reason}}, chunks.fragments, messages, chunks.generated, out);
      return Status::Ok();
    } catch (const std::exception& e) {
      return AfterStart(*out, FromException(e, what, &deadline));
    }
  }

  Result<std::vector<std::vector<float>>> Embed(const std::vector<std::string>& texts) override {
    const std::string what = spec_.Describe();
    nlohmann::json body = {{"model", spec_.name}, {"input", texts}};
    Deadline deadline{std::chrono::seconds(spec_.timeout_seconds)};
    try {
      http::http_response response =
          client_.request(Request(http::methods::POST, "embeddings", Body(body)), deadline.token()).get();
      auto text = ReadAll(response, deadline);
      if (!text.ok()) return ResourceExhausted(what + ": " + text.status().message());
      if (response.status_code() != http::status_codes::OK) return HttpError(response.status_code(), *text, what);
      auto j = ParsePeerJson(*text);
      if (!j.is_object() || !j.contains("data") || !j["data"].is_array() || j["data"].size() != texts.size()) {
        return FailedPrecondition(what + ": the response is not one embedding per input");
      }
      std::vector<std::vector<float>> out(texts.size());
      for (size_t i = 0; i < j["data"].size(); ++i) {
        const auto& d = j["data"][i];
        size_t at = d.contains("index") && d["index"].is_number_unsigned() ? d["index"].get<size_t>() : i;
        if (at >= out.size() || !d.contains("embedding") || !d["embedding"].is_array()) {
          return FailedPrecondition(what + ": embedding " + std::to_string(i) + " is malformed");
        }
        for (const auto& x : d["embedding"]) {
          if (!x.is_number()) return FailedPrecondition(what + ": embedding " + std::to_string(i) + " holds a non-number");
          out[at].push_back(x.get<float>());
        }
        if (out[at].size() != static_cast<size_t>(dimensions_)) {
          return FailedPrecondition(what + ": returned " + std::to_string(out[at].size()) +
                                    " dimensions; spec.embedding.dimensions is " + std::to_string(dimensions_));
        }
      }
      return out;
    } catch (const std::exception& e) {
      return FromException(e, what, &deadline);
    }
  }

  Status CheckHealth() override {
    Deadline deadline{std::chrono::seconds(2)};  // a probe, not a generation
    try {
      http::http_response response = client_.request(Request(http::methods::GET, "models", ""), deadline.token()).get();
      auto body = ReadAll(response, deadline);  // drained (and held to the limit)
      if (response.status_code() != http::status_codes::OK) {
        return HttpError(response.status_code(), "", spec_.Describe() + " GET /models");
      }
      if (body.ok()) LearnContextWindow(*body);
      return Status::Ok();
    } catch (const std::exception& e) {
      return FromException(e, spec_.Describe(), &deadline);
    }
  }

  // Learned by CheckHealth (the worker's health thread, every 10 s), never fetched on a
  // model call's path.
  std::optional<int64_t> ContextWindow() override {
    const int64_t w = window_.load();
    return w > 0 ? std::optional<int64_t>(w) : std::nullopt;
  }

 private:
  // vLLM lists each served model with max_model_len (vllm/entrypoints/openai/protocol.py,
  // ModelCard); OpenAI's own API does not say.
  void LearnContextWindow(const std::string& body) {
    nlohmann::json j = ParsePeerJson(body);
    if (!j.is_object() || !j.contains("data") || !j["data"].is_array()) return;
    for (const auto& m : j["data"]) {
      if (!m.is_object() || m.value("id", "") != spec_.name) continue;
      if (m.contains("max_model_len") && m["max_model_len"].is_number_integer() && m["max_model_len"].get<int64_t>() > 0) {
        window_ = m["max_model_len"].get<int64_t>();
      }
    }
  }

  std::string BaseUri() const {
    std::string base = spec_.endpoint;
    if (base.empty() || base.back() != '/') base += '/';
    return base;
  }

  http::client::http_client_config Config() const {
    http::client::http_client_config config;
    // cpprest's timeout bounds each wait for data; Chat also checks the whole call's deadline.
    config.set_timeout(std::chrono::seconds(spec_.timeout_seconds));
    config.set_max_redirects(0);
    if (!spec_.tls.ca_file.empty() || !spec_.tls.cert_file.empty()) {
      TlsOptions tls = spec_.tls;
      config.set_ssl_context_callback([tls](boost::asio::ssl::context& ctx) {
        if (!tls.ca_file.empty()) ctx.load_verify_file(tls.ca_file);
        if (!tls.cert_file.empty()) {
          ctx.use_certificate_chain_file(tls.cert_file);
          ctx.use_private_key_file(tls.key_file, boost::asio::ssl::context::pem);
        }
      });
    }
    return config;
  }

  http::http_request Request(const http::method& method, const std::string& path, const std::string& body,
                             const std::string& traceparent = "") const {
    http::http_request r(method);
    r.set_request_uri(path);
    if (!token_.empty()) r.headers().add("Authorization", "Bearer " + token_);
    if (!traceparent.empty()) r.headers().add("traceparent", traceparent);
    r.headers().add("Accept", method == http::methods::GET ? "application/json" : "text/event-stream, application/json");
    if (!body.empty()) {
      r.set_body(std::vector<unsigned char>(body.begin(), body.end()));
      r.headers().set_content_type("application/json");
    }
    return r;
  }

  // A whole reply body, held to limits::kModelHttpReplyBytes.
  static Result<std::string> ReadAll(http::http_response& response, Deadline& deadline) {
    return ReadBody(response, limits::kModelHttpReplyBytes, deadline.source());
  }
  // An error reply's body, for its message: what fits the limit, or why it did not.
  static std::string ErrorBody(http::http_response& response, Deadline& deadline) {
    auto body = ReadAll(response, deadline);
    return body.ok() ? *body : body.status().message();
  }

  void Finish(const nlohmann::json& whole, const nlohmann::json& choice, const ToolCallFragments& fragments,
              const std::vector<Message>& messages, size_t generated, ChatStream* out) const {
    for (auto& call : fragments.Finish()) out->Call(std::move(call));
    const nlohmann::json usage = whole.contains("usage") ? whole["usage"] : nlohmann::json();
    if (usage.is_object() && usage.contains("prompt_tokens")) {
      out->Usage(IntField(usage, "prompt_tokens"), IntField(usage, "completion_tokens"));
    } else {
      // A server that reports no usage: estimate, so the token budget still holds.
      out->Usage(EstimatePromptTokens(messages), EstimateTokens(generated), true);
    }
    std::string reason = choice.contains("finish_reason") && choice["finish_reason"].is_string() ? choice["finish_reason"].get<std::string>() : "";
    if (reason.empty()) reason = out->response().tool_calls.empty() ? "stop" : "tool_calls";
    out->Finish(reason);
  }

  ModelEndpointSpec spec_;
  std::atomic<int64_t> window_{0};
  std::string token_;
  int64_t dimensions_;
  mutable http::client::http_client client_;
};

Status CheckReadable(const std::string& path, const std::string& field) {
  if (path.empty()) return Status::Ok();
  std::ifstream in(path);
  if (!in) return InvalidArgument("tls." + field + ": cannot read " + path);
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<ModelBackend>> CreateOpenAiBackend(const BackendContext& context) {
  const ModelEndpointSpec& spec = context.endpoint;
  std::string token;
  if (spec.api_key) {
    CARAPACE_ASSIGN_OR_RETURN(token, LoadHeaderValue(*spec.api_key, "apiKey"));
  }
  CARAPACE_RETURN_IF_ERROR(CheckReadable(spec.tls.ca_file, "caFile"));
  CARAPACE_RETURN_IF_ERROR(CheckReadable(spec.tls.cert_file, "certFile"));
  CARAPACE_RETURN_IF_ERROR(CheckReadable(spec.tls.key_file, "keyFile"));
  return std::unique_ptr<ModelBackend>(new OpenAiBackend(spec, std::move(token), context.embedding_dimensions));
}

}  // namespace carapace
