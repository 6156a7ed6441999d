// tmpfs for tests.
#include "tests/support/small_volume.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <filesystem>

#include "tests/support/child_process.h"

namespace carapace::testing {

SmallVolume::SmallVolume(std::string dir, const std::string& size) : dir_(std::move(dir)) {
  std::filesystem::create_directories(dir_);
  mounted_ = RunCommand({"/usr/bin/mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", dir_}).exit_code == 0;
}

SmallVolume::~SmallVolume() {
  if (mounted_) (void)RunCommand({"/usr/bin/umount", dir_});
}

bool SmallVolume::Grow(const std::string& size) {
  return RunCommand({"/usr/bin/mount", "-o", "remount,size=" + size, dir_}).exit_code == 0;
}

uint64_t SmallVolume::FreeBytes() const {
  struct statvfs vfs {};
  if (::statvfs(dir_.c_str(), &vfs) != 0) return 0;
  return static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
}

bool SmallVolume::FillLeaving(uint64_t leave) {
  const uint64_t free_bytes = FreeBytes();
  if (free_bytes <= leave) return true;
  const std::string path = dir_ + "/filler";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT, 0600);
  if (fd < 0) return false;
  const off_t end = ::lseek(fd, 0, SEEK_END);
  const int rc = ::posix_fallocate(fd, end, static_cast<off_t>(free_bytes - leave));
  ::close(fd);
  return rc == 0;
}

void SmallVolume::Free() { std::filesystem::remove(dir_ + "/filler"); }

}  // namespace carapace::testing
