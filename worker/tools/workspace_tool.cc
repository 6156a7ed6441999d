// Workspace file operations with path confinement. Writes go to a temporary file that is
// fsync'ed and renamed, so a crash never leaves a half-written file behind.
#include "worker/tools/workspace_tool.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/json_text.h"

namespace carapace {
namespace fs = std::filesystem;

WorkspaceTool::WorkspaceTool(std::string name, std::string root) : name_(std::move(name)) {
  std::error_code ec;
  fs::create_directories(root, ec);
  fs::path canonical = fs::weakly_canonical(root, ec);
  root_ = ec ? root : canonical.string();
}

ToolSchema WorkspaceTool::Schema() const {
  return {name_,
          "Read, write, list and delete files in the agent's workspace. Paths are relative to the workspace.",
          {{"type", "object"},
           {"properties",
            {{"op", {{"type", "string"}, {"enum", {"read", "write", "list", "delete"}}}},
             {"path", {{"type", "string"}}},
             {"content", {{"type", "string"}}}}},
           {"required", {"op"}}}};
}

Result<std::string> WorkspaceTool::Resolve(const std::string& relative) const {
  if (relative.empty()) return std::string(root_);
  if (relative.find('\0') != std::string::npos) return InvalidArgument("path contains a NUL byte");
  fs::path p(relative);
  if (p.is_absolute()) return PermissionDenied("path \"" + relative + "\" is absolute; use a path inside the workspace");
  for (const auto& part : p) {
    if (part == "..") return PermissionDenied("path \"" + relative + "\" uses \"..\"; it must stay inside the workspace");
  }
  fs::path full = fs::path(root_) / p;
  std::error_code ec;
  // weakly_canonical follows every symlink that exists; what remains must still be under root.
  fs::path resolved = fs::weakly_canonical(full, ec);
  if (ec) return InvalidArgument("path \"" + relative + "\": " + ec.message());
  std::string r = resolved.string();
  if (r != root_ && r.rfind(root_ + "/", 0) != 0) {
    return PermissionDenied("path \"" + relative + "\" leads outside the workspace through a symlink");
  }
  return r;
}

namespace {

Status WriteFileAtomically(const std::string& path, const std::string& content) {
  std::string tmp = path + ".carapace-tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return IoError(std::strerror(errno));
  const char* p = content.data();
  size_t left = content.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return IoError(std::strerror(err));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fdatasync(fd) != 0) {
    int err = errno;
    ::close(fd);
    return IoError(std::strerror(err));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return IoError(std::strerror(errno));
  return Status::Ok();
}

}  // namespace

ToolResult WorkspaceTool::Call(const nlohmann::json& args, const ToolContext&) {
  if (!args.is_object()) return ToolResult::Fail("arguments must be an object");
  if (!args.contains("op") || !args["op"].is_string()) {
    return ToolResult::Fail("\"op\" (read, write, list or delete) is required");
  }
  std::string op = args["op"].get<std::string>();
  if (!args.contains("path") && op != "list") return ToolResult::Fail("\"path\" is required for " + op);
  if (args.contains("path") && !args["path"].is_string()) return ToolResult::Fail("\"path\" must be a string");
  std::string rel = args.value("path", "");
  auto resolved = Resolve(rel);
  if (!resolved.ok()) return ToolResult::Fail(resolved.status().message());
  const std::string& path = *resolved;
  std::error_code ec;

  if (op == "read") {
    auto status = fs::status(path, ec);
    if (ec || !fs::exists(status)) return ToolResult::Fail("no such file: " + rel);
    if (fs::is_directory(status)) return ToolResult::Fail(rel + " is a directory");
    // What is checked is what is read: the open file itself. O_NONBLOCK so that a FIFO put
    // there in the meantime cannot block the open.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return ToolResult::Fail("cannot read " + rel + ": " + std::strerror(errno));
    struct stat st {};
    const bool stat_ok = ::fstat(fd, &st) == 0;
    std::string refused;
    // Only regular files: a FIFO or device would block or never end.
    if (!stat_ok || !S_ISREG(st.st_mode)) refused = rel + " is not a regular file";
    // A second name for a file can be a hard link planted from outside the workspace: its
    // path says nothing of where its data lives, so such a file is not read.
    else if (st.st_nlink > 1) refused = rel + " has " + std::to_string(st.st_nlink) + " hard links; a file with more than one is not read (it may be a link to a file outside the workspace)";
    else if (static_cast<uint64_t>(st.st_size) > kMaxFileBytes) refused = rel + " is larger than 1 MiB";
    std::string content;
    if (refused.empty()) {
      char chunk[64 * 1024];
      for (;;) {
        const ssize_t n = ::read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
          refused = "cannot read " + rel + ": " + std::strerror(errno);
          break;
        }
        if (n == 0) break;
        content.append(chunk, static_cast<size_t>(n));
        if (content.size() > kMaxFileBytes) {
          refused = rel + " is larger than 1 MiB";
          break;
        }
      }
    }
    ::close(fd);
    if (!refused.empty()) return ToolResult::Fail(refused);
    if (!IsValidUtf8(content)) {
      return ToolResult::Ok({{"path", rel}, {"binary", true}, {"bytes", content.size()},
                             {"content", "(binary file of " + std::to_string(content.size()) + " bytes; not shown)"}});
    }
    return ToolResult::Ok({{"path", rel}, {"content", content}});
  }
  if (op == "write") {
    if (!args.contains("content") || !args["content"].is_string()) {
      return ToolResult::Fail("\"content\" (a string) is required for write");
    }
    std::string content = args["content"].get<std::string>();
    if (content.size() > kMaxFileBytes) return ToolResult::Fail("content is larger than 1 MiB");
    if (path == root_) return ToolResult::Fail("path must name a file");
    fs::create_directories(fs::path(path).parent_path(), ec);
    if (ec) return ToolResult::Fail("cannot create the folder for " + rel + ": " + ec.message());
    // The parent may have been created through a symlink: check again after creating it.
    auto again = Resolve(rel);
    if (!again.ok()) return ToolResult::Fail(again.status().message());
    Status st = WriteFileAtomically(path, content);
    if (!st.ok()) return ToolResult::Fail("cannot write " + rel + ": " + st.message());
    return ToolResult::Ok({{"path", rel}, {"bytes", content.size()}});
  }
  if (op == "list") {
    if (!fs::is_directory(path, ec)) return ToolResult::Fail("no such folder: " + (rel.empty() ? "." : rel));
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      std::string name = entry.path().filename().string();
      if (name.size() > 13 && name.compare(name.size() - 13, 13, ".carapace-tmp") == 0) continue;
      std::error_code dir_ec;
      names.push_back(name + (entry.is_directory(dir_ec) ? "/" : ""));
    }
    std::sort(names.begin(), names.end());
    return ToolResult::Ok({{"path", rel.empty() ? "." : rel}, {"entries", names}});
  }
  if (op == "delete") {
    if (path == root_) return ToolResult::Fail("refusing to delete the workspace itself");
    // A symlink is deleted itself, never the file it points to (which Resolve followed).
    fs::path literal = fs::path(root_) / rel;
    bool existed = fs::is_symlink(fs::symlink_status(literal, ec)) ? fs::remove(literal, ec) : fs::remove(path, ec);
    if (ec) return ToolResult::Fail("cannot delete " + rel + ": " + ec.message());
    // Deleting what is already gone succeeds: the call is idempotent.
    return ToolResult::Ok({{"path", rel}, {"deleted", existed}});
  }
  return ToolResult::Fail("\"op\" must be one of read, write, list, delete; got \"" + op + "\"");
}

}  // namespace carapace
