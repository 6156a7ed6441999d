// An informer: lists a resource, then watches from the list's resourceVersion (with
// bookmarks and a server timeout with jitter), keeping a local cache the reconciler reads
// instead of the API server. A dropped watch reconnects with backoff from the last seen
// resourceVersion; a 410 Gone (history compacted) lists again in full, and objects that
// vanished meanwhile are reported as deleted, so nothing is missed.
//
// Thread-safety: the cache may be read from any thread while the informer runs.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "operator/kube/rest_client.h"

namespace carapace::kube {

struct InformerOptions {
  std::string ns;              // "" for every namespace
  std::string label_selector;
  int watch_timeout_seconds = 300;  // the server ends each watch after 5..10 min (jittered)
  // Called on the informer's thread, without the cache lock held, for every change: each
  // object of the first list is ADDED; a relist (after 410 Gone) reports what changed while
  // the watch was away: ADDED, MODIFIED (another resourceVersion) and DELETED for objects
  // that are gone. `old_object` is null for ADDED; for DELETED `object` is the last state.
  using ChangeFn =
      std::function<void(const std::string& type, const nlohmann::json& object, const nlohmann::json& old_object)>;
  ChangeFn on_change;
};

class Informer {
 public:
  Informer(RestClient* client, Resource resource, InformerOptions options);
  ~Informer();  // stops

  // Starts the informer's thread (once; a second call does nothing while it runs).
  void Start();
  // Ends the watch and joins the thread; on_change is not called after it returns.
  void Stop();
  // True once the first list has filled the cache and its objects have been passed to
  // on_change.
  bool HasSynced() const;
  bool WaitForSync(std::chrono::milliseconds timeout) const;

  // Cache reads: "namespace/name" (or "name" for cluster objects).
  std::optional<nlohmann::json> Get(const std::string& key) const;
  std::vector<nlohmann::json> List() const;
  size_t Size() const;
  // How many full lists have been made (1 after start; more after 410s): for tests.
  int Lists() const;

  static std::string KeyOf(const nlohmann::json& object);

  // Puts an object this process just wrote (the API's reply) into the cache, unless the
  // cache already holds a newer version, so the next reconcile does not act on what it has
  // just changed before the watch brings it back. `deleted`: the object is gone.
  void Observe(const nlohmann::json& object, bool deleted = false);

 private:
  void Run();

  RestClient* client_;
  Resource resource_;
  InformerOptions options_;
  mutable std::mutex mu_;
  mutable std::condition_variable synced_cv_;
  // Objects are kept as MessagePack: a parsed object costs several times its text in memory,
  // and an operator caches every AgentRun and every object it owns (see the operator
  // benchmark's peak RSS). Reads parse a copy.
  struct Packed {
    std::vector<uint8_t> bytes;
    std::string resource_version;
    static Packed Of(const nlohmann::json& object);
    nlohmann::json Unpack() const;
  };
  std::map<std::string, Packed> cache_;
  std::string resource_version_;
  bool synced_ = false;
  int lists_ = 0;
  std::atomic<bool> stop_{false};
  std::condition_variable stop_cv_;  // wakes a backoff wait on Stop
  WatchCanceller canceller_;          // ends this informer's watch only: the client is shared
  std::thread thread_;

  // Replaces the cache with a fresh list and reports the difference. Returns false on error.
  bool Relist();
  // Applies one watch event to the cache and reports it.
  void Apply(const WatchEvent& event);
  void Notify(const std::string& type, const nlohmann::json& object, const nlohmann::json& old_object);
  // Sleeps for `d` or until Stop.
  void Wait(std::chrono::milliseconds d);
};

}  // namespace carapace::kube
