// Which network addresses a tool may reach. Names are resolved first and every address they
// resolve to is classified, so a public-looking name that points at 127.0.0.1 or at the
// cloud metadata service (169.254.169.254) is refused like the address itself.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace carapace {

enum class AddressClass {
  kPublic,
  kLoopback,     // 127.0.0.0/8, ::1
  kLinkLocal,    // 169.254.0.0/16 (cloud metadata), fe80::/10
  kPrivate,      // 10/8, 172.16/12, 192.168/16, 100.64/10 (carrier-grade NAT)
  kUniqueLocal,  // fc00::/7
  kUnspecified,  // 0.0.0.0/8, ::
  kMulticast,    // 224/4, ff00::/8, 255.255.255.255
  kReserved,     // 240/4 and other ranges nobody should call
};

const char* AddressClassName(AddressClass c);  // "loopback", "link-local", ...

// Classifies a numeric IPv4 or IPv6 address (IPv4-mapped IPv6 is classified as the IPv4
// address it carries). Errors: kInvalidArgument when `ip` is not a numeric address.
Result<AddressClass> ClassifyAddress(const std::string& ip);

// Resolves `host` (a name or a numeric address) to numeric addresses.
// Errors: kUnavailable when the name does not resolve.
Result<std::vector<std::string>> ResolveHost(const std::string& host);

}  // namespace carapace
