// Whole-file reads.
#include "common/file.h"

#include <cerrno>
#include <cstring>
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

std::string TrimLineEnd(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

Result<std::string> ReadTokenFile(const std::string& path) {
  CARAPACE_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return TrimLineEnd(std::move(text));
}

}  // namespace carapace
