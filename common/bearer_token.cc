// Constant-time bearer token checks (see bearer_token.h).
#include "common/bearer_token.h"

#include <string>

#include "common/hash.h"

namespace carapace {

bool BearerTokenMatches(std::string_view authorization, std::string_view token) {
  const std::string got = Sha256Hex(authorization);
  const std::string want = Sha256Hex("Bearer " + std::string(token));
  // Every byte is looked at whatever the first difference: no early exit.
  unsigned char diff = 0;
  for (size_t i = 0; i < got.size(); ++i) diff |= static_cast<unsigned char>(got[i] ^ want[i]);
  return diff == 0 && !token.empty();
}

}  // namespace carapace
