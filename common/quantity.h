// Kubernetes resource quantities ("500m", "1.5Gi", "1e3", 2) as the API server stores them.
//
// The server decodes every quantity into resource.Quantity and writes it back in canonical
// form (k8s.io/apimachinery/pkg/api/resource/quantity.go, CanonicalizeBytes): "0.5" is
// stored as "500m", 1 as "1", "1024Mi" as "1Gi", "1.5Gi" as "1536Mi". Whoever compares what
// it asked for with what the server stored must compare canonical forms, or it sees a
// difference that never goes away.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace carapace {

// The canonical text of a quantity given as a string or a JSON number (the API accepts
// both), or nullopt when resource.ParseQuantity would refuse it. Precision beyond 10^-9 is
// rounded up, as the server does; values too large to hold exactly are refused.
std::optional<std::string> CanonicalQuantity(const std::string& text);
std::optional<std::string> CanonicalQuantity(const nlohmann::json& value);

// The value of a non-negative quantity in whole units (bytes for storage), rounded up;
// nullopt when invalid, negative or too large for int64.
std::optional<int64_t> QuantityValue(const std::string& text);

// A container's or claim's `resources` ({requests: {...}, limits: {...}}) as the server
// stores it: every quantity canonical, empty maps omitted. Entries that are not valid
// quantities are left as given (the server refuses them; nothing here hides that).
nlohmann::json CanonicalResources(const nlohmann::json& resources);

}  // namespace carapace
