// Recording Events (see event_recorder.h).
#include "operator/kube/event_recorder.h"

#include <cstdio>

#include "common/log.h"
#include "common/time.h"

namespace carapace::kube {

void EventRecorder::Normal(const nlohmann::json& object, const std::string& reason, const std::string& message) {
  Record(object, "Normal", reason, message);
}

void EventRecorder::Warning(const nlohmann::json& object, const std::string& reason, const std::string& message) {
  Record(object, "Warning", reason, message);
}

void EventRecorder::Record(const nlohmann::json& object, const std::string& type, const std::string& reason,
                           const std::string& message) {
  const nlohmann::json& meta = object.value("metadata", nlohmann::json::object());
  const std::string name = meta.value("name", "");
  const std::string ns = meta.value("namespace", "");
  const std::string uid = meta.value("uid", "");
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    for (auto it = recent_.begin(); it != recent_.end();) {
      it = now - it->second > dedupe_interval_ ? recent_.erase(it) : std::next(it);
    }
    if (!recent_.emplace(uid + "\n" + reason + "\n" + message, now).second) return;
  }
  const int64_t now_ms = WallNowMillis();
  std::string ts = FormatRfc3339Millis(now_ms);
  ts = ts.substr(0, 19) + "Z";  // metav1.Time has whole seconds
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, ".%llx", static_cast<unsigned long long>(MonoNowNanos() ^ now_ms));
  nlohmann::json event = {
      {"apiVersion", "v1"},
      {"kind", "Event"},
      {"metadata", {{"name", name + suffix}, {"namespace", ns}}},
      {"involvedObject",
       {{"apiVersion", object.value("apiVersion", "")}, {"kind", object.value("kind", "")}, {"name", name},
        {"namespace", ns}, {"uid", uid}, {"resourceVersion", meta.value("resourceVersion", "")}}},
      {"reason", reason},
      {"message", message},
      {"type", type},
      {"source", {{"component", component_}}},
      {"reportingComponent", component_},
      {"firstTimestamp", ts},
      {"lastTimestamp", ts},
      {"count", 1},
  };
  auto r = client_->Create(Events(), ns, event);
  if (!r.ok()) {
    log::Warn("could not record an event", {{"reason", reason}, {"object", ns + "/" + name}, {"error", r.error.message}});
  }
}

}  // namespace carapace::kube
