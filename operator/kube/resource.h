// Addressing the Kubernetes REST API: resource paths (core and named groups, namespaced or
// cluster-wide, subresources), list and watch queries, and the API's error replies, whose
// Status reason and code are kept (a 409 Conflict is retried, a 404 is not an error on
// delete, and so on).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace carapace::kube {

struct Resource {
  std::string group;     // "" for the core group
  std::string version;   // "v1", "v1alpha1"
  std::string plural;    // "statefulsets", "agentruns"
  bool namespaced = true;
};

// Resources the operator uses.
Resource AgentRuns();
Resource StatefulSets();
Resource Services();
Resource ConfigMaps();
Resource Secrets();
Resource PersistentVolumeClaims();
Resource Leases();
Resource Events();  // core/v1 Events, as `kubectl describe` shows them
Resource Pods();
Resource NetworkPolicies();
Resource Certificates();  // cert-manager.io/v1, with --worker-tls-issuer

// "/api/v1/namespaces/NS/configmaps/NAME" or "/apis/GROUP/VERSION/...". Empty `ns` lists
// across namespaces; empty `name` addresses the collection; `subresource` e.g. "status".
std::string ResourcePath(const Resource& r, const std::string& ns = "", const std::string& name = "",
                         const std::string& subresource = "");

struct ListOptions {
  std::string label_selector;
  std::string field_selector;
  int64_t limit = 0;               // 0: no paging
  std::string continue_token;
  std::string resource_version;    // list or watch from here
  bool watch = false;
  bool allow_watch_bookmarks = false;
  int64_t timeout_seconds = 0;     // server-side watch timeout
};

// "?labelSelector=...&limit=500" (or "" when nothing is set), values percent-encoded.
std::string ListQuery(const ListOptions& options);

// An error reply of the API server: its Status object's reason and message, and the code.
struct ApiError {
  int code = 0;            // HTTP status
  std::string reason;      // "Conflict", "NotFound", "AlreadyExists", "Forbidden", "Expired", ...
  std::string message;
};

// Reads a reply body that should be a Status object; falls back to the HTTP code's meaning.
ApiError ParseApiError(int http_code, const std::string& body);
// As our Status: NotFound -> kNotFound, AlreadyExists -> kAlreadyExists, Conflict ->
// kFailedPrecondition ("conflict: ..."), Forbidden/Unauthorized -> kPermissionDenied,
// Invalid/BadRequest -> kInvalidArgument, Gone/Expired -> kFailedPrecondition ("gone: ..."),
// 429, 5xx and no reply (code -1) -> kUnavailable. The message keeps the reason and code.
Status ToStatus(const ApiError& e);

// Percent-encoding for a query value.
std::string QueryEscape(const std::string& value);

}  // namespace carapace::kube
