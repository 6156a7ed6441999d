// Records Kubernetes Events (core/v1) about objects, as `kubectl describe` shows them: a
// CamelCase reason, a message, Normal or Warning. The same event about the same object is
// recorded once per interval, so a reconcile that keeps failing does not flood the API.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "operator/kube/rest_client.h"

namespace carapace::kube {

class EventRecorder {
 public:
  EventRecorder(RestClient* client, std::string component,
                std::chrono::seconds dedupe_interval = std::chrono::seconds(600))
      : client_(client), component_(std::move(component)), dedupe_interval_(dedupe_interval) {}

  // `object` is the involved object as read (apiVersion, kind, metadata). Failures to
  // record are logged, never returned: an event is a courtesy, not part of reconciling.
  void Normal(const nlohmann::json& object, const std::string& reason, const std::string& message);
  void Warning(const nlohmann::json& object, const std::string& reason, const std::string& message);

 private:
  void Record(const nlohmann::json& object, const std::string& type, const std::string& reason,
              const std::string& message);

  RestClient* client_;
  std::string component_;
  std::chrono::seconds dedupe_interval_;
  std::mutex mu_;
  std::map<std::string, std::chrono::steady_clock::time_point> recent_;  // uid/reason/message -> when
};

}  // namespace carapace::kube
