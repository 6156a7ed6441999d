// What a real kube-apiserver does to built-in objects beyond storing them, as pure functions
// for the API double: defaulting, quantity canonicalisation, name and label rules, and the
// immutable fields of updates. Each rule names the Kubernetes source it follows.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace carapace::testing::kube_double {

// Fills what the scheme's defaulting functions fill (apps/v1 and core/v1 defaults.go) and
// writes every resource quantity in canonical form (resource.Quantity round trip). Returns
// the decode error a real server gives for a malformed quantity (a 400 BadRequest), or
// nullopt. Applied to what a create or update sends, so the store holds what a real one does.
std::optional<std::string> DefaultAndCanonicalise(const std::string& kind, nlohmann::json* object);

// metadata.generation is kept only by kinds whose registry strategy sets it
// (pkg/registry/apps/*/strategy.go, apiextensions customresourcedefinition/strategy.go,
// customresource/strategy.go).
bool KeepsGeneration(const std::string& group, const std::string& kind, bool custom_resource);

// Field errors ("metadata.name: Invalid value: ...") of a new object's name for kinds whose
// names are stricter than an RFC 1123 subdomain (Service: DNS-1035 label; Namespace: RFC
// 1123 label), and of labels (metadata.labels and a pod template's) on any object.
std::vector<std::string> ValidateNameAndLabels(const std::string& kind, const nlohmann::json& object);

// A PersistentVolumeClaim's spec.resources.requests.storage in bytes; nullopt when it has
// none or it is not a quantity.
std::optional<int64_t> ClaimStorageRequest(const nlohmann::json& claim);

// Field errors of an update (old and updated both defaulted): the fields the kind's
// ValidateXUpdate holds immutable (StatefulSet spec, PersistentVolumeClaim spec, Service
// cluster IPs).
std::vector<std::string> ValidateUpdate(const std::string& kind, const nlohmann::json& old,
                                        const nlohmann::json& updated);

// Service: what the registry carries over from the stored object when an update leaves it
// out (pkg/registry/core/service/storage/storage.go, patchAllocatedValues): cluster IPs and
// IP families.
void KeepAllocatedServiceFields(const nlohmann::json& old, nlohmann::json* updated);

// Service: fills clusterIP/clusterIPs ("None" stays headless; `allocate` gives a new IP when
// none was asked for), ipFamilies and ipFamilyPolicy, as the service registry's allocator
// does (pkg/registry/core/service/storage/alloc.go) in a single-stack IPv4 cluster.
void AllocateServiceIps(const std::function<std::string()>& allocate, nlohmann::json* service);

// A StatefulSet's spec.replicas (1 when unset, as apps/v1 defaults it).
int64_t StatefulSetReplicas(const nlohmann::json& sts);

// "quantities must match the regular expression ..." (resource.ErrFormatWrong).
extern const char kQuantityFormatError[];

}  // namespace carapace::testing::kube_double
