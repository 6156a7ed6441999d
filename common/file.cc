// Whole-file reads, and whole-file writes that a crash cannot leave half done.
#include "common/file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace carapace {

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    if (err == ENOENT) return NotFound(path + ": no such file");
    return IoError(path + ": cannot read: " + std::strerror(err));
  }
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

Status WriteFileAtomic(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".writing";
  auto failed = [&](const std::string& what) {
    const int err = errno;
    ::unlink(tmp.c_str());
    const std::string message = path + ": cannot " + what + ": " + std::strerror(err);
    return err == ENOSPC || err == EDQUOT ? VolumeFull(message) : IoError(message);
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return failed("create");
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return failed("write");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    return failed("sync");
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return failed("rename");
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  (void)SyncDirectory(dir);  // the rename is done; a directory that cannot be synced does not undo it
  return Status::Ok();
}

namespace {

Status SyncPath(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return IoError(path + ": cannot open to sync: " + std::strerror(errno));
  const bool ok = ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  return ok ? Status::Ok() : IoError(path + ": cannot sync: " + std::strerror(err));
}

}  // namespace

Status SyncDirectory(const std::string& dir) { return SyncPath(dir, true); }

Status SyncTree(const std::string& dir) {
  std::error_code ec;
  for (std::filesystem::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const auto st = it->symlink_status(ec);
    if (ec) break;
    if (std::filesystem::is_regular_file(st) || std::filesystem::is_directory(st)) {
      CARAPACE_RETURN_IF_ERROR(SyncPath(it->path().string(), std::filesystem::is_directory(st)));
    }
  }
  if (ec) return IoError(dir + ": cannot list to sync: " + ec.message());
  return SyncDirectory(dir);
}

uint64_t DirectoryBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (std::filesystem::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec)) total += it->file_size(ec);
  }
  return total;
}

std::string TrimLineEnd(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

Result<std::string> ReadTokenFile(const std::string& path) {
  CARAPACE_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return TrimLineEnd(std::move(text));
}

}  // namespace carapace
