// A small typed-enough client for the Kubernetes REST API: get, list (paged), create,
// update, patch, delete, the status subresource and watch streams, over cpprestsdk with the
// TLS and credentials of a KubeConfig. Objects are JSON (nlohmann::json). Every call returns
// the API's error kept as ApiError (reason and code), so callers can tell a 409 Conflict
// from a 404. Optional client-side rate limiting (a token bucket: QPS and burst) and a
// request counter by method and code for `rest_client_requests_total`.
//
// Thread-safety: all methods may be called from many threads at once.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "operator/kube/config.h"
#include "operator/kube/resource.h"

namespace carapace::kube {

struct RestClientOptions {
  double qps = 20;        // 0: no client-side rate limit (benchmarks)
  int burst = 30;
  int request_timeout_seconds = 30;  // watches use their own timeout
  int max_read_retries = 3;          // a GET refused with 429: tries after the first
  std::string user_agent = "carapace-operator";
  // Called once per finished request with its method ("GET", ...) and HTTP code (0 when no
  // reply came): feeds rest_client_requests_total{code,method}.
  std::function<void(const std::string& method, int code)> on_request;
};

// The result of a call: the object, or the API's error.
template <typename T>
struct ApiResult {
  T value{};
  // code 0: success. code -1: no reply (connection refused or cut, TLS, timeout, a token
  // file that cannot be read, a reply that is not JSON), reason "Unavailable".
  ApiError error;
  bool ok() const { return error.code == 0; }
  Status status() const { return ok() ? Status::Ok() : ToStatus(error); }
};

enum class PatchType { kMerge, kJson, kStrategicMerge };

enum class Propagation { kDefault, kBackground, kForeground, kOrphan };

// Ends a watch from another thread: one informer stops its own watch while others share
// the client. Cancel() closes the watches running with it promptly, and any later Watch
// given it returns at once, so a stop that races a reconnect still ends the loop.
class WatchCanceller {
 public:
  void Cancel();
  bool cancelled() const;
  // Arms it again after Cancel (an informer started a second time).
  void Reset();

 private:
  friend class RestClient;
  // Registers a watch's closer; returns 0 (and registers nothing) when already cancelled.
  int Bind(std::function<void()> close);
  void Unbind(int id);

  mutable std::mutex mu_;
  bool cancelled_ = false;
  int next_id_ = 0;
  std::map<int, std::function<void()>> closers_;
};

// One event of a watch stream.
struct WatchEvent {
  std::string type;      // ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
  nlohmann::json object; // the object, or a Status for ERROR
};

// One line of a watch stream (without its newline), decoded as Watch does: the event, or
// the error that ends the watch (a line over limits::kWatchEventBytes or nested too deep,
// one that is not an event, an ERROR event's Status). Exposed for the fuzz harness.
ApiResult<WatchEvent> DecodeWatchLine(std::string_view line);
// A list reply's items get the list's apiVersion and kind where they have none (the API
// server leaves them off the items of built-in types). Exposed for the fuzz harness.
void GiveListItemsTheirType(nlohmann::json* list);

class RestClient {
 public:
  // Errors: kInvalidArgument for a config that cannot be used (bad PEM, bad URL).
  static Result<std::unique_ptr<RestClient>> Create(KubeConfig config, RestClientOptions options = {});
  ~RestClient();

  ApiResult<nlohmann::json> Get(const Resource& r, const std::string& ns, const std::string& name);
  // One page; the reply's metadata.continue and metadata.resourceVersion are in the result.
  ApiResult<nlohmann::json> List(const Resource& r, const std::string& ns, const ListOptions& options = {});
  // Every page, joined: items, and the resourceVersion of the last page.
  ApiResult<nlohmann::json> ListAll(const Resource& r, const std::string& ns, ListOptions options = {});
  ApiResult<nlohmann::json> Create(const Resource& r, const std::string& ns, const nlohmann::json& object);
  // PUT; the object's metadata.resourceVersion makes it conditional (409 when stale).
  ApiResult<nlohmann::json> Update(const Resource& r, const std::string& ns, const nlohmann::json& object);
  ApiResult<nlohmann::json> UpdateStatus(const Resource& r, const std::string& ns, const nlohmann::json& object);
  ApiResult<nlohmann::json> Patch(const Resource& r, const std::string& ns, const std::string& name,
                                  const nlohmann::json& patch, PatchType type = PatchType::kMerge,
                                  const std::string& subresource = "");
  // A 404 is reported as an error; callers deleting idempotently check for it.
  ApiResult<nlohmann::json> Delete(const Resource& r, const std::string& ns, const std::string& name,
                                   Propagation propagation = Propagation::kDefault);

  // Streams a watch: calls `on_event` for each event until the server ends the stream, an
  // error occurs, or `on_event` returns false. Returns Ok when the stream ended normally
  // (server timeout, stopped by the callback, or cancelled), else the error (410 Gone is an
  // ApiError with code 410, whether sent as the reply's status or as an ERROR event; an
  // ERROR event ends the watch with its Status and is not passed to `on_event`). The value
  // is true when we ended it (callback or cancel), false when the server did. The request
  // timeout does not apply: the stream may stay quiet until `options.timeout_seconds`.
  ApiResult<bool> Watch(const Resource& r, const std::string& ns, const ListOptions& options,
                        const std::function<bool(const WatchEvent&)>& on_event);
  // The same, ended early by `cancel` (may be null).
  ApiResult<bool> Watch(const Resource& r, const std::string& ns, const ListOptions& options,
                        const std::function<bool(const WatchEvent&)>& on_event, WatchCanceller* cancel);
  // Cancels every request in flight (it fails with a transport error) and every watch;
  // every later call fails at once. For a process that is stopping: nothing waits out a
  // request timeout against an API server that does not answer.
  void Shutdown();
  // Closes every watch stream open now; later watches are not affected.
  void CancelWatches();

  const KubeConfig& config() const;

 private:
  struct Impl;
  explicit RestClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace carapace::kube
