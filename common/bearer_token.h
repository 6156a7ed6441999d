// Checking an `Authorization: Bearer <token>` value against the token a server holds: the
// worker's control API and `carapace ui`'s JSON endpoints both guard themselves this way.
#pragma once

#include <string_view>

namespace carapace {

// True when `authorization` (the header's whole value) is "Bearer " + `token`. The answer
// takes the same time for a missing, a wrong and a right value of any length: SHA-256
// digests of both are compared in constant time, so timing tells nothing of the token.
// An empty `token` matches nothing.
bool BearerTokenMatches(std::string_view authorization, std::string_view token);

}  // namespace carapace
