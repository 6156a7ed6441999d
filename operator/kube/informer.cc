// The informer's list-then-watch loop and its cache: reconnects from the last
// resourceVersion, backs off on errors, and relists with a diff after 410 Gone.
#include "operator/kube/informer.h"

#include <algorithm>
#include <cstdlib>
#include <random>

#include "common/log.h"

namespace carapace::kube {

namespace {

constexpr std::chrono::milliseconds kBackoffStart{100};
constexpr std::chrono::milliseconds kBackoffMax{30000};

std::string ResourceVersionOf(const nlohmann::json& object) {
  if (!object.is_object() || !object.contains("metadata") || !object["metadata"].is_object()) return "";
  const auto& meta = object["metadata"];
  return meta.contains("resourceVersion") && meta["resourceVersion"].is_string() ? meta["resourceVersion"].get<std::string>()
                                                                                   : "";
}

// True when `rv` is older than `than`. resourceVersions are opaque, but the API server's
// are increasing integers; when either does not read as one, nothing is called older.
bool OlderVersion(const std::string& rv, const std::string& than) {
  if (rv.empty() || than.empty()) return false;
  char* end_rv = nullptr;
  char* end_than = nullptr;
  const unsigned long long a = std::strtoull(rv.c_str(), &end_rv, 10);
  const unsigned long long b = std::strtoull(than.c_str(), &end_than, 10);
  return *end_rv == '\0' && *end_than == '\0' && a < b;
}

}  // namespace

Informer::Packed Informer::Packed::Of(const nlohmann::json& object) {
  Packed p;
  p.bytes = nlohmann::json::to_msgpack(object);
  p.bytes.shrink_to_fit();
  p.resource_version = ResourceVersionOf(object);
  return p;
}

nlohmann::json Informer::Packed::Unpack() const { return nlohmann::json::from_msgpack(bytes); }

Informer::Informer(RestClient* client, Resource resource, InformerOptions options)
    : client_(client), resource_(std::move(resource)), options_(std::move(options)) {}

Informer::~Informer() { Stop(); }

std::string Informer::KeyOf(const nlohmann::json& object) {
  if (!object.is_object() || !object.contains("metadata") || !object["metadata"].is_object()) return "";
  const auto& meta = object["metadata"];
  const std::string name = meta.value("name", "");
  const std::string ns = meta.value("namespace", "");
  return ns.empty() ? name : ns + "/" + name;
}

void Informer::Start() {
  if (thread_.joinable()) return;
  stop_ = false;
  canceller_.Reset();
  thread_ = std::thread([this] { Run(); });
}

void Informer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  canceller_.Cancel();
  if (thread_.joinable()) thread_.join();
}

bool Informer::HasSynced() const {
  std::lock_guard<std::mutex> lock(mu_);
  return synced_;
}

bool Informer::WaitForSync(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return synced_cv_.wait_for(lock, timeout, [this] { return synced_; });
}

std::optional<nlohmann::json> Informer::Get(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = cache_.find(key);
  if (it == cache_.end()) return std::nullopt;
  return it->second.Unpack();
}

std::vector<nlohmann::json> Informer::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<nlohmann::json> out;
  out.reserve(cache_.size());
  for (const auto& [key, object] : cache_) out.push_back(object.Unpack());
  return out;
}

size_t Informer::Size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cache_.size();
}

int Informer::Lists() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lists_;
}

void Informer::Wait(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  stop_cv_.wait_for(lock, d, [this] { return stop_.load(); });
}

void Informer::Notify(const std::string& type, const nlohmann::json& object, const nlohmann::json& old_object) {
  if (options_.on_change && !stop_) options_.on_change(type, object, old_object);
}

bool Informer::Relist() {
  ListOptions o;
  o.label_selector = options_.label_selector;
  o.limit = 500;
  auto listed = client_->ListAll(resource_, options_.ns, o);
  if (!listed.ok()) {
    log::Warn("cannot list " + resource_.plural + "; retrying",
              {{"code", listed.error.code}, {"reason", listed.error.reason}, {"error", listed.error.message}});
    return false;
  }

  std::map<std::string, nlohmann::json> fresh;
  if (listed.value.contains("items") && listed.value["items"].is_array()) {
    for (auto& item : listed.value["items"]) {
      std::string key = KeyOf(item);
      if (!key.empty()) fresh[std::move(key)] = std::move(item);
    }
  }
  struct Change {
    std::string type;
    nlohmann::json object, old_object;
  };
  std::vector<Change> changes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, object] : fresh) {
      auto it = cache_.find(key);
      if (it == cache_.end()) {
        changes.push_back({"ADDED", object, nullptr});
      } else if (it->second.resource_version != ResourceVersionOf(object)) {
        changes.push_back({"MODIFIED", object, it->second.Unpack()});
      }
    }
    for (const auto& [key, object] : cache_) {
      if (!fresh.count(key)) {
        nlohmann::json gone = object.Unpack();
        changes.push_back({"DELETED", gone, gone});
      }
    }
    cache_.clear();
    for (const auto& [key, object] : fresh) cache_.emplace(key, Packed::Of(object));
    const auto& meta = listed.value.contains("metadata") ? listed.value["metadata"] : nlohmann::json::object();
    resource_version_ = meta.is_object() ? meta.value("resourceVersion", "") : "";
    ++lists_;
  }
  for (const auto& c : changes) Notify(c.type, c.object, c.old_object);
  // Synced only once the first list's objects have been handed to on_change: a controller
  // that waits for sync then finds every key already queued.
  {
    std::lock_guard<std::mutex> lock(mu_);
    synced_ = true;
  }
  synced_cv_.notify_all();
  return true;
}

void Informer::Apply(const WatchEvent& event) {
  const std::string rv = ResourceVersionOf(event.object);
  if (event.type == "BOOKMARK") {
    std::lock_guard<std::mutex> lock(mu_);
    if (!rv.empty()) resource_version_ = rv;
    return;
  }
  const std::string key = KeyOf(event.object);
  if (key.empty()) return;
  nlohmann::json old_object;
  std::string type = event.type;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!rv.empty()) resource_version_ = rv;
    auto it = cache_.find(key);
    if (it != cache_.end()) old_object = it->second.Unpack();
    if (type == "DELETED") {
      // Reported even when the cache no longer holds it (Observe took it out already): the
      // handlers still hear of every deletion.
      if (it != cache_.end()) cache_.erase(it);
    } else if (type == "ADDED" || type == "MODIFIED") {
      // The cache, not the event's word, says whether this is new to us.
      type = it == cache_.end() ? "ADDED" : "MODIFIED";
      // An event older than what Observe put there (our own write's reply) does not set
      // the cache back; the write's own event follows.
      if (it == cache_.end() || !OlderVersion(rv, it->second.resource_version)) cache_[key] = Packed::Of(event.object);
    } else {
      return;
    }
  }
  Notify(type, event.object, old_object);
}

void Informer::Run() {
  std::mt19937_64 rng{std::random_device{}()};
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  auto backoff = kBackoffStart;
  bool need_list = true;
  // Waits the current backoff (with jitter, so replicas do not reconnect in step) and
  // doubles it.
  auto back_off = [&] {
    const auto jittered = std::chrono::milliseconds(static_cast<int64_t>(backoff.count() * (0.5 + unit(rng))));
    Wait(jittered);
    backoff = std::min(backoff * 2, kBackoffMax);
  };

  while (!stop_) {
    if (need_list) {
      if (!Relist()) {
        back_off();
        continue;
      }
      need_list = false;
      backoff = kBackoffStart;
    }
    ListOptions o;
    o.label_selector = options_.label_selector;
    o.allow_watch_bookmarks = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      o.resource_version = resource_version_;
    }
    // Spread the server timeouts so that informers started together do not all reconnect
    // at the same moment.
    o.timeout_seconds = static_cast<int64_t>(std::max(1, options_.watch_timeout_seconds) * (1.0 + unit(rng)));
    bool got_events = false;
    const auto started = std::chrono::steady_clock::now();
    auto watched = client_->Watch(
        resource_, options_.ns, o,
        [&](const WatchEvent& event) {
          if (stop_) return false;
          got_events = true;
          Apply(event);
          return true;
        },
        &canceller_);
    if (stop_) break;
    if (watched.ok()) {
      // A normal end: reconnect at once from where we are. A stream that ends at once with
      // nothing in it is a server in trouble, not a timeout: back off then, as client-go does.
      if (got_events || std::chrono::steady_clock::now() - started >= std::chrono::seconds(1)) {
        backoff = kBackoffStart;
        continue;
      }
      back_off();
      continue;
    }
    if (watched.error.code == 410) {
      need_list = true;  // history is gone: only a full list tells us what we missed
      continue;
    }
    if (got_events) backoff = kBackoffStart;
    // Logged when the backoff is short (the first failures) or long (a lasting problem such
    // as a missing permission), not on every try in between.
    if (backoff <= kBackoffStart * 2 || backoff >= kBackoffMax) {
      log::Warn("watch of " + resource_.plural + " failed; reconnecting",
                {{"code", watched.error.code}, {"reason", watched.error.reason}, {"error", watched.error.message}});
    }
    back_off();
  }
}

void Informer::Observe(const nlohmann::json& object, bool deleted) {
  const std::string key = KeyOf(object);
  if (key.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = cache_.find(key);
  if (deleted) {
    if (it != cache_.end() && it->second.resource_version == ResourceVersionOf(object)) cache_.erase(it);
    return;
  }
  // The watch has reported this version or a later one already (perhaps the object's
  // deletion): the cache knows better than this reply.
  if (!OlderVersion(resource_version_, ResourceVersionOf(object))) return;
  // Never replace a newer object with an older one.
  if (it != cache_.end() && OlderVersion(ResourceVersionOf(object), it->second.resource_version)) return;
  cache_[key] = Packed::Of(object);
}

}  // namespace carapace::kube
