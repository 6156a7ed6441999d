// Kubernetes REST paths, queries and errors.
#include "operator/kube/resource.h"

#include <cctype>

#include <nlohmann/json.hpp>

namespace carapace::kube {

Resource AgentRuns() { return {"carapace.dev", "v1alpha1", "agentruns", true}; }
Resource StatefulSets() { return {"apps", "v1", "statefulsets", true}; }
Resource Services() { return {"", "v1", "services", true}; }
Resource ConfigMaps() { return {"", "v1", "configmaps", true}; }
Resource Secrets() { return {"", "v1", "secrets", true}; }
Resource NetworkPolicies() { return {"networking.k8s.io", "v1", "networkpolicies", true}; }
Resource Certificates() { return {"cert-manager.io", "v1", "certificates", true}; }
Resource PersistentVolumeClaims() { return {"", "v1", "persistentvolumeclaims", true}; }
Resource Leases() { return {"coordination.k8s.io", "v1", "leases", true}; }
Resource Events() { return {"", "v1", "events", true}; }
Resource Pods() { return {"", "v1", "pods", true}; }

std::string ResourcePath(const Resource& r, const std::string& ns, const std::string& name, const std::string& subresource) {
  std::string path = r.group.empty() ? "/api/" + r.version : "/apis/" + r.group + "/" + r.version;
  if (r.namespaced && !ns.empty()) path += "/namespaces/" + ns;
  path += "/" + r.plural;
  if (!name.empty()) {
    path += "/" + name;
    if (!subresource.empty()) path += "/" + subresource;
  }
  return path;
}

std::string QueryEscape(const std::string& value) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string ListQuery(const ListOptions& o) {
  std::string q;
  auto add = [&](const char* key, const std::string& value) {
    q += (q.empty() ? "?" : "&") + std::string(key) + "=" + QueryEscape(value);
  };
  if (!o.label_selector.empty()) add("labelSelector", o.label_selector);
  if (!o.field_selector.empty()) add("fieldSelector", o.field_selector);
  if (o.limit > 0) add("limit", std::to_string(o.limit));
  if (!o.continue_token.empty()) add("continue", o.continue_token);
  if (!o.resource_version.empty()) add("resourceVersion", o.resource_version);
  if (o.watch) add("watch", "true");
  if (o.allow_watch_bookmarks) add("allowWatchBookmarks", "true");
  if (o.timeout_seconds > 0) add("timeoutSeconds", std::to_string(o.timeout_seconds));
  return q;
}

ApiError ParseApiError(int http_code, const std::string& body) {
  ApiError e;
  e.code = http_code;
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_object() && j.value("kind", "") == "Status") {
    if (j.contains("reason") && j["reason"].is_string()) e.reason = j["reason"];
    if (j.contains("message") && j["message"].is_string()) e.message = j["message"];
    if (j.contains("code") && j["code"].is_number_integer()) e.code = j["code"];
  }
  if (e.reason.empty()) {
    switch (e.code) {
      case 400: e.reason = "BadRequest"; break;
      case 401: e.reason = "Unauthorized"; break;
      case 403: e.reason = "Forbidden"; break;
      case 404: e.reason = "NotFound"; break;
      case 409: e.reason = "Conflict"; break;
      case 410: e.reason = "Gone"; break;
      case 422: e.reason = "Invalid"; break;
      case 429: e.reason = "TooManyRequests"; break;
      default: e.reason = e.code >= 500 ? "InternalError" : "Unknown";
    }
  }
  if (e.message.empty()) e.message = body.substr(0, 200);
  return e;
}

Status ToStatus(const ApiError& e) {
  const std::string m = e.reason + " (" + std::to_string(e.code) + "): " + e.message;
  if (e.reason == "NotFound") return NotFound(m);
  if (e.reason == "AlreadyExists") return AlreadyExists(m);
  if (e.reason == "Conflict") return FailedPrecondition("conflict: " + m);
  if (e.reason == "Gone" || e.reason == "Expired") return FailedPrecondition("gone: " + m);
  if (e.reason == "Forbidden" || e.reason == "Unauthorized") return PermissionDenied(m);
  if (e.reason == "Invalid" || e.reason == "BadRequest") return InvalidArgument(m);
  if (e.code < 0 || e.code == 429 || e.code >= 500) return Unavailable(m);
  return FailedPrecondition(m);
}

}  // namespace carapace::kube
