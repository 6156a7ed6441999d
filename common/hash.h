// Content hashes used for identities that must be stable across processes and versions:
// the spec hash of a run, idempotency keys of tool calls.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace carapace {

// SHA-256 of data that comes in pieces (an archive of a gigabyte store, read in chunks).
class Sha256 {
 public:
  Sha256();
  void Update(std::string_view data);
  // Lower-case hex; the object is spent afterwards.
  std::string FinishHex();

 private:
  std::array<uint32_t, 8> h_;
  unsigned char buffer_[64];
  size_t buffered_ = 0;
  uint64_t total_ = 0;
};

// Lower-case hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);

}  // namespace carapace
