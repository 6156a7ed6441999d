// A Kubernetes API server double for tests, on loopback (plain HTTP, HTTP/1.1): discovery,
// CRUD with resourceVersion and optimistic concurrency, metadata.generation, the status
// subresource, merge/JSON/strategic patches, watch streams with bookmarks and 410 Gone past
// a history window, deletionTimestamp with finalizers, asynchronous owner-reference garbage
// collection, label and field selectors, fault injection, and RBAC checked against the
// operator's role in deploy/rbac/. Writes get the real server's defaults, canonical
// quantities, admission and validation (kube_api_double_semantics.h; custom resources:
// their CRD's schema and CEL rules). Real kubectl works against it. Test code only; never shipped.
//
// Thread-safety: every method may be called from any thread while the server runs.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace carapace::testing {

struct KubeApiDoubleOptions {
  // Requests bearing this token act as the operator's service account and are checked
  // against the rules of these RBAC files (ClusterRole and Role YAML; a missing permission
  // is a 403 Forbidden naming verb and resource). Other requests (kubectl, tests) act as
  // cluster admin.
  std::string operator_token = "carapace-operator-token";
  std::vector<std::string> rbac_files;  // e.g. deploy/rbac/cluster_role.yaml
  std::string operator_namespace = "carapace-system";  // where the Role applies
  int64_t watch_history = 10000;  // changes kept for watches; older resourceVersions get 410
  int bookmark_interval_ms = 1000;
  int port = 0;  // the port Start() listens on; 0: a free one
  // Custom resources are pruned, defaulted and validated against their CRD's schema and
  // x-kubernetes-validations rules by this script (tests/support/crd_validate.py, run with
  // /usr/bin/python3 --serve; DefaultCrdValidator() names it); empty: stored as sent.
  std::string crd_validator;
  // How long the garbage collector and the controllers the double plays (StatefulSet claims,
  // volume expansion) take to act after the change that wakes them, as the real ones do
  // asynchronously.
  int controller_delay_ms = 100;
  // The StatefulSetAutoDeletePVC feature gate (on by default since Kubernetes 1.27). Off, the
  // server drops spec.persistentVolumeClaimRetentionPolicy from what it stores
  // (pkg/registry/apps/statefulset/strategy.go, dropStatefulSetDisabledFields).
  bool statefulset_auto_delete_pvc = true;
};

// The path of tests/support/crd_validate.py in this source tree.
std::string DefaultCrdValidator();

class KubeApiDouble {
 public:
  explicit KubeApiDouble(KubeApiDoubleOptions options = {});
  ~KubeApiDouble();  // stops

  // Listens on 127.0.0.1 on a free port. Errors: kUnavailable.
  Status Start();
  void Stop();
  int port() const;
  std::string url() const;  // http://127.0.0.1:PORT
  // Writes a kubeconfig for this server with `token` to `path`.
  Status WriteKubeconfig(const std::string& path, const std::string& token) const;

  // In-process access (as cluster admin, same semantics as the REST API). `api_version` is
  // "v1", "apps/v1", "carapace.dev/v1alpha1"; `plural` the resource.
  Result<nlohmann::json> Get(const std::string& api_version, const std::string& plural, const std::string& ns,
                             const std::string& name) const;
  std::vector<nlohmann::json> List(const std::string& api_version, const std::string& plural,
                                   const std::string& ns = "", const std::string& label_selector = "") const;
  Result<nlohmann::json> Create(const std::string& api_version, const std::string& plural, const std::string& ns,
                                const nlohmann::json& object);
  Result<nlohmann::json> Update(const std::string& api_version, const std::string& plural, const std::string& ns,
                                const nlohmann::json& object);
  Result<nlohmann::json> UpdateStatus(const std::string& api_version, const std::string& plural,
                                      const std::string& ns, const nlohmann::json& object);
  Status Delete(const std::string& api_version, const std::string& plural, const std::string& ns,
                const std::string& name);
  // Called after every change (type ADDED/MODIFIED/DELETED) with the object's apiVersion and
  // plural: the process kubelet follows StatefulSets this way. Returns an id for Unsubscribe.
  int Subscribe(std::function<void(const std::string& type, const std::string& api_version,
                                   const std::string& plural, const nlohmann::json& object)> fn);
  void Unsubscribe(int id);

  // Faults.
  // The next `count` requests whose method matches (empty: any) and whose path contains
  // `path_part` are answered with `code` (429 carries Retry-After: 1).
  void FailNext(int code, int count, const std::string& method = "", const std::string& path_part = "");
  void SetLatency(int ms);  // added before every reply
  void DropWatches();        // closes every open watch stream at once
  void ExpireHistory();      // forgets the change history: every resumed watch gets 410 Gone

  // Counters of answered REST requests (not in-process calls), by the operator's token only
  // when `operator_only`: method GET/POST/PUT/PATCH/DELETE, or "" for all; "WATCH" counts
  // watch requests. Requests to Leases count apart as LEASE_<method> (leader election).
  int64_t Requests(const std::string& method = "", bool operator_only = true) const;
  void ResetCounters();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace carapace::testing
