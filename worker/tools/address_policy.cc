// Address classification with inet_pton and getaddrinfo.
#include "worker/tools/address_policy.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cstring>

namespace carapace {

const char* AddressClassName(AddressClass c) {
  switch (c) {
    case AddressClass::kPublic: return "public";
    case AddressClass::kLoopback: return "loopback";
    case AddressClass::kLinkLocal: return "link-local";
    case AddressClass::kPrivate: return "private";
    case AddressClass::kUniqueLocal: return "unique-local";
    case AddressClass::kUnspecified: return "unspecified";
    case AddressClass::kMulticast: return "multicast";
    case AddressClass::kReserved: return "reserved";
  }
  return "reserved";
}

namespace {

AddressClass ClassifyV4(const unsigned char b[4]) {
  if (b[0] == 127) return AddressClass::kLoopback;
  if (b[0] == 169 && b[1] == 254) return AddressClass::kLinkLocal;
  if (b[0] == 10 || (b[0] == 172 && (b[1] & 0xf0) == 16) || (b[0] == 192 && b[1] == 168) ||
      (b[0] == 100 && (b[1] & 0xc0) == 64)) {
    return AddressClass::kPrivate;
  }
  if (b[0] == 0) return AddressClass::kUnspecified;
  if (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255) return AddressClass::kMulticast;
  if ((b[0] & 0xf0) == 224) return AddressClass::kMulticast;
  if ((b[0] & 0xf0) == 240) return AddressClass::kReserved;
  return AddressClass::kPublic;
}

AddressClass ClassifyV6(const unsigned char b[16]) {
  static const unsigned char kZero[16] = {0};
  static const unsigned char kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static const unsigned char kNat64Prefix[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  if (std::memcmp(b, kZero, 15) == 0 && b[15] == 1) return AddressClass::kLoopback;
  if (std::memcmp(b, kZero, 16) == 0) return AddressClass::kUnspecified;
  // Forms that carry an IPv4 address are judged by it: IPv4-mapped (::ffff:a.b.c.d),
  // IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:AABB:CCDD::).
  if (std::memcmp(b, kMappedPrefix, 12) == 0 || std::memcmp(b, kZero, 12) == 0 ||
      std::memcmp(b, kNat64Prefix, 12) == 0) {
    return ClassifyV4(b + 12);
  }
  if (b[0] == 0x20 && b[1] == 0x02) return ClassifyV4(b + 2);
  // Local-use NAT64 (64:ff9b:1::/48), Teredo (2001::/32), site-local (fec0::/10): no agent
  // has business there, and they can lead to internal networks.
  if (b[0] == 0 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4] == 0 && b[5] == 1) return AddressClass::kReserved;
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0) return AddressClass::kReserved;
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return AddressClass::kReserved;
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return AddressClass::kLinkLocal;
  if ((b[0] & 0xfe) == 0xfc) return AddressClass::kUniqueLocal;
  if (b[0] == 0xff) return AddressClass::kMulticast;
  return AddressClass::kPublic;
}

}  // namespace

Result<AddressClass> ClassifyAddress(const std::string& ip) {
  unsigned char buf[16];
  if (::inet_pton(AF_INET, ip.c_str(), buf) == 1) return ClassifyV4(buf);
  std::string v6 = ip.size() > 2 && ip.front() == '[' && ip.back() == ']' ? ip.substr(1, ip.size() - 2) : ip;
  if (::inet_pton(AF_INET6, v6.c_str(), buf) == 1) return ClassifyV6(buf);
  return InvalidArgument("\"" + ip + "\" is not a numeric IP address");
}

Result<std::vector<std::string>> ResolveHost(const std::string& host) {
  std::string name = host.size() > 2 && host.front() == '[' && host.back() == ']' ? host.substr(1, host.size() - 2) : host;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(name.c_str(), nullptr, &hints, &res);
  if (rc != 0) return Unavailable("cannot resolve " + name + ": " + ::gai_strerror(rc));
  std::vector<std::string> out;
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN] = {0};
    const void* addr = a->ai_family == AF_INET ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr)
                                               : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
    if (::inet_ntop(a->ai_family, addr, text, sizeof text) != nullptr) out.emplace_back(text);
  }
  ::freeaddrinfo(res);
  if (out.empty()) return Unavailable("cannot resolve " + name + ": no addresses");
  return out;
}

}  // namespace carapace
