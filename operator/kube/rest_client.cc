// The Kubernetes REST client over cpprestsdk: TLS and credentials from a KubeConfig, a
// client-side token bucket, 429 retries for reads, and watch streams read line by line.
#include "operator/kube/rest_client.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <thread>
#include <vector>

#include <boost/asio/ssl.hpp>
#include <cpprest/http_client.h>

#include "common/http_body.h"
#include "common/json_text.h"
#include "common/limits.h"
#include "operator/kube/rate_limiter.h"

namespace carapace::kube {

namespace http = web::http;

void WatchCanceller::Cancel() {
  std::map<int, std::function<void()>> closers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    closers = closers_;
  }
  // Outside the lock: closing a stream runs cpprest's cancellation callbacks.
  for (auto& [id, close] : closers) close();
}

bool WatchCanceller::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

void WatchCanceller::Reset() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = false;
}

int WatchCanceller::Bind(std::function<void()> close) {
  std::lock_guard<std::mutex> lock(mu_);
  if (cancelled_) return 0;
  const int id = ++next_id_;
  closers_[id] = std::move(close);
  return id;
}

void WatchCanceller::Unbind(int id) {
  std::lock_guard<std::mutex> lock(mu_);
  closers_.erase(id);
}

namespace {

constexpr int kMaxRetryAfterSeconds = 30;

std::string Body(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

ApiError NoReply(const std::string& message) { return ApiError{-1, "Unavailable", message}; }

std::string OverWatchEventLimit() {
  return "an event over the limit of " + std::to_string(limits::kWatchEventBytes) + " bytes";
}

// Loads the config's PEM material into an OpenSSL context (from memory: an in-cluster CA
// or kubeconfig *-data fields never touch the disk). Throws boost::system::system_error.
void LoadTls(const KubeConfig& c, boost::asio::ssl::context& ctx) {
  if (!c.ca_pem.empty()) {
    // The config's CA replaces the system roots (as kubectl does): a cluster CA is the only
    // one that should vouch for the API server.
    SSL_CTX_set_cert_store(ctx.native_handle(), X509_STORE_new());
    ctx.add_certificate_authority(boost::asio::buffer(c.ca_pem.data(), c.ca_pem.size()));
  }
  if (!c.client_cert_pem.empty()) {
    ctx.use_certificate_chain(boost::asio::buffer(c.client_cert_pem.data(), c.client_cert_pem.size()));
    ctx.use_private_key(boost::asio::buffer(c.client_key_pem.data(), c.client_key_pem.size()),
                        boost::asio::ssl::context::pem);
  }
}

// A raw reply: the code and body, or no reply.
struct Reply {
  int code = 0;
  std::string body;
  int retry_after_seconds = -1;
  ApiError transport;  // code -1 when no reply came
};

std::string PropagationName(Propagation p) {
  switch (p) {
    case Propagation::kBackground: return "Background";
    case Propagation::kForeground: return "Foreground";
    case Propagation::kOrphan: return "Orphan";
    case Propagation::kDefault: break;
  }
  return "";
}

const char* PatchContentType(PatchType t) {
  switch (t) {
    case PatchType::kJson: return "application/json-patch+json";
    case PatchType::kStrategicMerge: return "application/strategic-merge-patch+json";
    case PatchType::kMerge: break;
  }
  return "application/merge-patch+json";
}

std::string NameOf(const nlohmann::json& object) {
  if (!object.is_object() || !object.contains("metadata") || !object["metadata"].is_object()) return "";
  return object["metadata"].value("name", "");
}

std::string NamespaceOr(const std::string& ns, const nlohmann::json& object) {
  if (!ns.empty() || !object.is_object() || !object.contains("metadata") || !object["metadata"].is_object()) return ns;
  return object["metadata"].value("namespace", "");
}

std::string ExceptionText(const std::exception& e) {
  // cpprest messages may carry bytes that are not UTF-8; nlohmann would throw on dump.
  std::string text = e.what();
  for (char& ch : text) {
    if (static_cast<unsigned char>(ch) >= 0x80) ch = '?';
  }
  return text;
}

}  // namespace

struct RestClient::Impl {
  KubeConfig config;
  RestClientOptions options;
  std::unique_ptr<http::client::http_client> client;
  std::unique_ptr<TokenBucketRateLimiter> bucket;  // null: unlimited

  std::mutex watches_mu;
  int next_watch = 0;
  std::map<int, pplx::cancellation_token_source> watches;  // open ones, for CancelWatches
  // Cancels every call in flight at Shutdown; later calls fail at once.
  pplx::cancellation_token_source shutdown;
  std::atomic<bool> shut_down{false};

  http::client::http_client_config ClientConfig(std::chrono::seconds timeout) const {
    http::client::http_client_config c;
    c.set_timeout(timeout);
    c.set_max_redirects(0);
    if (config.insecure_skip_tls_verify) c.set_validate_certificates(false);
    if (!config.ca_pem.empty() || !config.client_cert_pem.empty()) {
      KubeConfig tls = config;
      c.set_ssl_context_callback([tls](boost::asio::ssl::context& ctx) { LoadTls(tls, ctx); });
    }
    return c;
  }

  void Throttle() {
    if (!bucket) return;
    auto delay = bucket->When("", std::chrono::steady_clock::now());
    if (delay > Duration::zero()) std::this_thread::sleep_for(delay);
  }

  void Count(const std::string& method, int code) const {
    if (options.on_request) options.on_request(method, code);
  }

  // Builds a request with the current token (it may have rotated since the last call).
  Result<http::http_request> Request(const http::method& method, const std::string& path_and_query,
                                     const std::string& body, const std::string& content_type) const {
    http::http_request r(method);
    try {
      r.set_request_uri(path_and_query);
    } catch (const std::exception& e) {
      return InvalidArgument("bad request path " + path_and_query + ": " + ExceptionText(e));
    }
    auto token = config.BearerToken();
    if (!token.ok()) return token.status();
    if (!token->empty()) r.headers().add("Authorization", "Bearer " + *token);
    r.headers().add("Accept", "application/json");
    r.headers().add("User-Agent", options.user_agent);
    if (!body.empty()) {
      r.set_body(std::vector<unsigned char>(body.begin(), body.end()));
      r.headers().set_content_type(content_type);
    }
    return r;
  }

  // One request and its whole reply, waited for on the caller's thread.
  Reply Send(const http::method& method, const std::string& path_and_query, const std::string& body,
             const std::string& content_type) {
    Reply out;
    if (shut_down) {
      out.transport = NoReply(method + " " + path_and_query + ": the client is shutting down");
      return out;
    }
    Throttle();
    auto request = Request(method, path_and_query, body, content_type);
    if (!request.ok()) {
      out.transport = NoReply(request.status().message());
      if (request.status().code() == StatusCode::kInvalidArgument) out.transport.reason = "BadRequest";
      Count(method, 0);
      return out;
    }
    // Its own source, linked to the client's: a reply over the limit is cancelled alone.
    pplx::cancellation_token shutdown_token = shutdown.get_token();
    auto cancel = pplx::cancellation_token_source::create_linked_source(shutdown_token);
    try {
      http::http_response response = client->request(*request, cancel.get_token()).get();
      auto body = ReadBody(response, limits::kApiReplyBytes, &cancel);
      if (!body.ok()) {
        out.transport = NoReply(method + " " + path_and_query + ": " + body.status().message());
        Count(method, 0);
        return out;
      }
      out.code = response.status_code();
      out.body = std::move(*body);
      auto it = response.headers().find("Retry-After");
      if (it != response.headers().end()) {
        try {
          out.retry_after_seconds = std::stoi(it->second);
        } catch (const std::exception&) {
          out.retry_after_seconds = 1;  // an HTTP date: wait a little rather than not at all
        }
      }
    } catch (const std::exception& e) {
      out.transport = NoReply(method + " " + path_and_query + ": " + ExceptionText(e));
    }
    Count(method, out.transport.code != 0 ? 0 : out.code);
    return out;
  }

  // Sends, retrying a GET refused with 429 after its Retry-After; decodes the JSON reply.
  ApiResult<nlohmann::json> Call(const http::method& method, const std::string& path_and_query,
                                 const std::string& body = "", const std::string& content_type = "application/json") {
    ApiResult<nlohmann::json> result;
    const bool idempotent = method == http::methods::GET;
    for (int attempt = 0;; ++attempt) {
      Reply reply = Send(method, path_and_query, body, content_type);
      if (reply.transport.code != 0) {
        result.error = reply.transport;
        return result;
      }
      if (reply.code == 429 && idempotent && attempt < options.max_read_retries) {
        const int wait = std::clamp(reply.retry_after_seconds < 0 ? 1 : reply.retry_after_seconds, 0, kMaxRetryAfterSeconds);
        std::this_thread::sleep_for(std::chrono::seconds(wait));
        continue;
      }
      if (reply.code < 200 || reply.code >= 300) {
        result.error = ParseApiError(reply.code, reply.body);
        return result;
      }
      result.value = ParsePeerJson(reply.body);
      if (result.value.is_discarded()) {
        result.value = nullptr;
        result.error = NoReply(method + " " + path_and_query + ": the reply is not JSON");
      }
      return result;
    }
  }

  int AddWatch(const pplx::cancellation_token_source& source) {
    std::lock_guard<std::mutex> lock(watches_mu);
    const int id = ++next_watch;
    watches.emplace(id, source);
    return id;
  }
  void RemoveWatch(int id) {
    std::lock_guard<std::mutex> lock(watches_mu);
    watches.erase(id);
  }
};

Result<std::unique_ptr<RestClient>> RestClient::Create(KubeConfig config, RestClientOptions options) {
  if (config.server.empty()) return InvalidArgument("kube config: no server URL");
  if (config.client_cert_pem.empty() != config.client_key_pem.empty()) {
    return InvalidArgument("kube config: a client certificate needs its key, and a key its certificate");
  }
  // Load the PEM material once now, so a bad certificate is an error here, not a TLS
  // failure on every request later.
  try {
    boost::asio::ssl::context probe(boost::asio::ssl::context::sslv23);
    LoadTls(config, probe);
  } catch (const std::exception& e) {
    return InvalidArgument("kube config (" + config.source + "): unusable TLS material: " + ExceptionText(e));
  }
  auto impl = std::make_unique<Impl>();
  impl->config = std::move(config);
  impl->options = std::move(options);
  if (impl->options.qps > 0) {
    impl->bucket = std::make_unique<TokenBucketRateLimiter>(impl->options.qps, std::max(1, impl->options.burst));
  }
  try {
    web::uri base(impl->config.server);
    if (base.scheme() != "http" && base.scheme() != "https") {
      return InvalidArgument("kube config: server " + impl->config.server + " is not an http(s) URL");
    }
    impl->client = std::make_unique<http::client::http_client>(
        base, impl->ClientConfig(std::chrono::seconds(std::max(1, impl->options.request_timeout_seconds))));
  } catch (const std::exception& e) {
    return InvalidArgument("kube config: bad server URL " + impl->config.server + ": " + ExceptionText(e));
  }
  return std::unique_ptr<RestClient>(new RestClient(std::move(impl)));
}

RestClient::RestClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RestClient::~RestClient() { CancelWatches(); }

const KubeConfig& RestClient::config() const { return impl_->config; }

ApiResult<nlohmann::json> RestClient::Get(const Resource& r, const std::string& ns, const std::string& name) {
  return impl_->Call(http::methods::GET, ResourcePath(r, ns, name));
}

ApiResult<nlohmann::json> RestClient::List(const Resource& r, const std::string& ns, const ListOptions& options) {
  ListOptions o = options;
  o.watch = false;
  auto listed = impl_->Call(http::methods::GET, ResourcePath(r, ns) + ListQuery(o));
  // The API server leaves apiVersion and kind off the items of a list of built-in types
  // (kubernetes/kubernetes#3030); watch events and GETs carry them. Each item gets the
  // list's, so an object looks the same whichever way it was read, and a comparison with
  // what we want (which has them) does not see a difference that is not there.
  if (listed.ok()) GiveListItemsTheirType(&listed.value);
  return listed;
}

void GiveListItemsTheirType(nlohmann::json* list) {
  if (!list->is_object() || !list->contains("items") || !(*list)["items"].is_array()) return;
  const nlohmann::json& kind = (*list)["kind"];
  const nlohmann::json& version = (*list)["apiVersion"];
  const std::string list_kind = kind.is_string() ? kind.get<std::string>() : "";
  const std::string api_version = version.is_string() ? version.get<std::string>() : "";
  const bool is_list = list_kind.size() > 4 && list_kind.compare(list_kind.size() - 4, 4, "List") == 0;
  for (auto& item : (*list)["items"]) {
    if (!item.is_object()) continue;
    if (!item.contains("kind") && is_list) item["kind"] = list_kind.substr(0, list_kind.size() - 4);
    if (!item.contains("apiVersion") && !api_version.empty()) item["apiVersion"] = api_version;
  }
}

ApiResult<WatchEvent> DecodeWatchLine(std::string_view line) {
  ApiResult<WatchEvent> out;
  if (line.size() > limits::kWatchEventBytes) {
    out.error = NoReply(OverWatchEventLimit());
    return out;
  }
  auto j = ParsePeerJson(line);
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    out.error = NoReply("a line that is not a watch event");
    return out;
  }
  out.value = {j["type"].get<std::string>(), j.contains("object") ? j["object"] : nlohmann::json()};
  if (out.value.type == "ERROR") {
    const nlohmann::json& status = out.value.object;
    const int code = status.is_object() && status.contains("code") && status["code"].is_number_integer() &&
                             status["code"].get<int64_t>() >= 100 && status["code"].get<int64_t>() <= 599
                         ? status["code"].get<int>()
                         : 500;
    out.error = ParseApiError(code, status.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  return out;
}

ApiResult<nlohmann::json> RestClient::ListAll(const Resource& r, const std::string& ns, ListOptions options) {
  if (options.limit <= 0) options.limit = 500;
  options.continue_token.clear();
  ApiResult<nlohmann::json> out;
  out.value = nlohmann::json::object();
  nlohmann::json items = nlohmann::json::array();
  for (;;) {
    auto page = List(r, ns, options);
    if (!page.ok()) {
      // A continue token past the history window: the pages so far are from a snapshot we
      // can no longer finish, so list again in one piece (as client-go's pager does).
      if (page.error.code == 410 && !options.continue_token.empty()) {
        options.continue_token.clear();
        options.limit = 0;
        items = nlohmann::json::array();
        continue;
      }
      out.error = page.error;
      out.value = nullptr;
      return out;
    }
    const nlohmann::json& p = page.value;
    if (p.contains("items") && p["items"].is_array()) {
      for (const auto& item : p["items"]) items.push_back(item);
    }
    out.value["apiVersion"] = p.value("apiVersion", "");
    out.value["kind"] = p.value("kind", "");
    nlohmann::json meta = p.contains("metadata") && p["metadata"].is_object() ? p["metadata"] : nlohmann::json::object();
    const std::string next = meta.value("continue", "");
    if (next.empty() || options.limit == 0) {
      meta.erase("continue");
      meta.erase("remainingItemCount");
      out.value["metadata"] = meta;
      break;
    }
    options.continue_token = next;
  }
  out.value["items"] = std::move(items);
  return out;
}

ApiResult<nlohmann::json> RestClient::Create(const Resource& r, const std::string& ns, const nlohmann::json& object) {
  return impl_->Call(http::methods::POST, ResourcePath(r, NamespaceOr(ns, object)), Body(object));
}

ApiResult<nlohmann::json> RestClient::Update(const Resource& r, const std::string& ns, const nlohmann::json& object) {
  return impl_->Call(http::methods::PUT, ResourcePath(r, NamespaceOr(ns, object), NameOf(object)), Body(object));
}

ApiResult<nlohmann::json> RestClient::UpdateStatus(const Resource& r, const std::string& ns, const nlohmann::json& object) {
  return impl_->Call(http::methods::PUT, ResourcePath(r, NamespaceOr(ns, object), NameOf(object), "status"), Body(object));
}

ApiResult<nlohmann::json> RestClient::Patch(const Resource& r, const std::string& ns, const std::string& name,
                                            const nlohmann::json& patch, PatchType type, const std::string& subresource) {
  return impl_->Call(http::methods::PATCH, ResourcePath(r, ns, name, subresource), Body(patch), PatchContentType(type));
}

ApiResult<nlohmann::json> RestClient::Delete(const Resource& r, const std::string& ns, const std::string& name,
                                             Propagation propagation) {
  std::string body;
  if (propagation != Propagation::kDefault) {
    body = Body({{"kind", "DeleteOptions"}, {"apiVersion", "v1"}, {"propagationPolicy", PropagationName(propagation)}});
  }
  return impl_->Call(http::methods::DEL, ResourcePath(r, ns, name), body);
}

ApiResult<bool> RestClient::Watch(const Resource& r, const std::string& ns, const ListOptions& options,
                                  const std::function<bool(const WatchEvent&)>& on_event) {
  return Watch(r, ns, options, on_event, nullptr);
}

ApiResult<bool> RestClient::Watch(const Resource& r, const std::string& ns, const ListOptions& options,
                                  const std::function<bool(const WatchEvent&)>& on_event, WatchCanceller* cancel) {
  ApiResult<bool> result;
  ListOptions o = options;
  o.watch = true;
  const std::string path = ResourcePath(r, ns) + ListQuery(o);

  pplx::cancellation_token_source source;
  int bound = 0;
  if (cancel) {
    bound = cancel->Bind([source] { source.cancel(); });
    if (bound == 0) {
      result.value = true;
      return result;
    }
  }
  const int watch_id = impl_->AddWatch(source);
  struct Cleanup {
    Impl* impl;
    WatchCanceller* cancel;
    int bound, watch_id;
    pplx::cancellation_token_source source;
    ~Cleanup() {
      // An early return closes the connection: cpprest would otherwise keep reading the
      // stream into a buffer nobody drains until the server ends it.
      source.cancel();
      if (cancel) cancel->Unbind(bound);
      impl->RemoveWatch(watch_id);
    }
  } cleanup{impl_.get(), cancel, bound, watch_id, source};

  impl_->Throttle();
  auto request = impl_->Request(http::methods::GET, path, "", "");
  if (!request.ok()) {
    impl_->Count("GET", 0);
    result.error = NoReply(request.status().message());
    return result;
  }
  // A client of its own: cpprest's timeout is the longest quiet spell between reads, and a
  // watch on a quiet resource may rightly stay silent until the server's own timeout.
  const int64_t server_timeout = o.timeout_seconds > 0 ? o.timeout_seconds : 3600;
  std::string pending;
  bool counted = false;
  try {
    http::client::http_client client(web::uri(impl_->config.server),
                                     impl_->ClientConfig(std::chrono::seconds(server_timeout + 30)));
    http::http_response response = client.request(*request, source.get_token()).get();
    impl_->Count("GET", response.status_code());
    counted = true;
    if (response.status_code() != http::status_codes::OK) {
      std::vector<unsigned char> raw = response.extract_vector().get();
      result.error = ParseApiError(response.status_code(), std::string(raw.begin(), raw.end()));
      return result;
    }
    auto stream = response.body().streambuf();
    std::vector<uint8_t> buf(64 * 1024);
    for (;;) {
      // Whatever has arrived, or wait for one byte: asking for a full buffer would hold
      // events back until 64 KiB had come.
      const size_t want = std::max<size_t>(1, std::min<size_t>(stream.in_avail(), buf.size()));
      const size_t n = stream.getn(buf.data(), want).get();
      if (n == 0) break;  // the server ended the stream
      pending.append(reinterpret_cast<const char*>(buf.data()), n);
      size_t start = 0;
      for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
        std::string_view line(pending.data() + start, nl - start);
        if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
        auto decoded = DecodeWatchLine(line);
        if (!decoded.ok()) {
          result.error = decoded.error;
          if (result.error.code == -1) result.error.message = "watch " + path + ": " + result.error.message;
          return result;
        }
        const WatchEvent& event = decoded.value;
        if (!on_event(event)) {
          result.value = true;
          return result;
        }
      }
      pending.erase(0, start);
      // What is left is the start of an event not yet ended: one larger than any object the
      // API server stores is not a watch stream, and is not read further.
      if (pending.size() > limits::kWatchEventBytes) {
        result.error = NoReply("watch " + path + ": " + OverWatchEventLimit());
        return result;
      }
    }
    if (source.get_token().is_canceled()) result.value = true;
    return result;
  } catch (const std::exception& e) {
    if (!counted) impl_->Count("GET", 0);
    // A cancelled stream fails its read: that is the stop we asked for, not an error.
    if (source.get_token().is_canceled()) {
      result.value = true;
      return result;
    }
    result.error = NoReply("watch " + path + ": " + ExceptionText(e));
    return result;
  }
}

void RestClient::Shutdown() {
  impl_->shut_down = true;
  impl_->shutdown.cancel();
  CancelWatches();
}

void RestClient::CancelWatches() {
  std::map<int, pplx::cancellation_token_source> open;
  {
    std::lock_guard<std::mutex> lock(impl_->watches_mu);
    open = impl_->watches;
  }
  for (auto& [id, source] : open) source.cancel();
}

}  // namespace carapace::kube
