// A small tmpfs mounted for a test, to fill a real volume (root only: CI runs as root; a test
// skips without it). Unmounted on the way out. Test support only.
#pragma once

#include <cstdint>
#include <string>

namespace carapace::testing {

class SmallVolume {
 public:
  // Mounts a tmpfs of `size` ("3m") at `dir` (created).
  SmallVolume(std::string dir, const std::string& size);
  ~SmallVolume();
  SmallVolume(const SmallVolume&) = delete;
  SmallVolume& operator=(const SmallVolume&) = delete;

  bool mounted() const { return mounted_; }
  // Remounts it with another size, keeping what it holds.
  bool Grow(const std::string& size);
  // Fills it with a file (DIR/filler) until `leave` bytes are free, or frees the filler.
  bool FillLeaving(uint64_t leave);
  void Free();
  uint64_t FreeBytes() const;

 private:
  std::string dir_;
  bool mounted_ = false;
};

}  // namespace carapace::testing
