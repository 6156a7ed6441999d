// Content hashes used for identities that must be stable across processes and versions:
// the spec hash of a run, idempotency keys of tool calls.
#pragma once

#include <string>
#include <string_view>

namespace carapace {

// Lower-case hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);

}  // namespace carapace
