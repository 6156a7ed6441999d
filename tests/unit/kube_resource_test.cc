// Kubernetes REST addressing: paths, list/watch queries, and error replies kept with their
// reason and code.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include "operator/kube/resource.h"

using namespace carapace;
using namespace carapace::kube;
using Catch::Matchers::ContainsSubstring;

TEST_CASE("resource paths for core and named groups, collections, objects and subresources", "[operator][kube]") {
  CHECK(ResourcePath(ConfigMaps(), "agents", "a1") == "/api/v1/namespaces/agents/configmaps/a1");
  CHECK(ResourcePath(StatefulSets(), "agents") == "/apis/apps/v1/namespaces/agents/statefulsets");
  CHECK(ResourcePath(AgentRuns()) == "/apis/carapace.dev/v1alpha1/agentruns");  // across namespaces
  CHECK(ResourcePath(AgentRuns(), "agents", "a1", "status") == "/apis/carapace.dev/v1alpha1/namespaces/agents/agentruns/a1/status");
  CHECK(ResourcePath(Leases(), "carapace-system", "carapace-operator") ==
        "/apis/coordination.k8s.io/v1/namespaces/carapace-system/leases/carapace-operator");
}

TEST_CASE("list and watch queries are percent-encoded", "[operator][kube]") {
  CHECK(ListQuery({}) == "");
  ListOptions o;
  o.label_selector = "app.kubernetes.io/managed-by=carapace,tier in (a,b)";
  o.limit = 500;
  o.continue_token = "eyJ2IjoibWV0YSJ9+/=";
  CHECK(ListQuery(o) == "?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dcarapace%2Ctier%20in%20%28a%2Cb%29&limit=500"
                        "&continue=eyJ2IjoibWV0YSJ9%2B%2F%3D");
  ListOptions w;
  w.watch = true;
  w.allow_watch_bookmarks = true;
  w.resource_version = "12345";
  w.timeout_seconds = 290;
  CHECK(ListQuery(w) == "?resourceVersion=12345&watch=true&allowWatchBookmarks=true&timeoutSeconds=290");
}

TEST_CASE("API errors keep the Status reason and code", "[operator][kube]") {
  ApiError conflict = ParseApiError(409, R"({"kind":"Status","apiVersion":"v1","status":"Failure","message":"Operation cannot be fulfilled on agentruns.carapace.dev \"a1\": the object has been modified","reason":"Conflict","code":409})");
  CHECK(conflict.reason == "Conflict");
  CHECK(conflict.code == 409);
  Status s = ToStatus(conflict);
  CHECK(s.code() == StatusCode::kFailedPrecondition);
  CHECK_THAT(s.message(), ContainsSubstring("conflict: Conflict (409): Operation cannot be fulfilled"));
  CHECK(ToStatus(ParseApiError(404, R"({"kind":"Status","reason":"NotFound","code":404,"message":"not found"})")).code() == StatusCode::kNotFound);
  CHECK(ToStatus(ParseApiError(410, R"({"kind":"Status","reason":"Expired","code":410,"message":"too old resource version"})")).message() ==
        "gone: Expired (410): too old resource version");
  CHECK(ToStatus(ParseApiError(403, "")).code() == StatusCode::kPermissionDenied);
  CHECK(ToStatus(ParseApiError(503, "<html>unavailable</html>")).code() == StatusCode::kUnavailable);
  CHECK(ToStatus(ParseApiError(429, "")).code() == StatusCode::kUnavailable);
  CHECK(ToStatus(ParseApiError(422, R"({"kind":"Status","reason":"Invalid","code":422,"message":"spec.replicas: Invalid value"})")).code() ==
        StatusCode::kInvalidArgument);
}
