// The images cannot be built here (no container engine), so this keeps their runtime stage
// honest: every shared library the binaries load (by `ldd`) must come from a package the
// runtime stage of deploy/docker/Dockerfile installs (by `dpkg -S` on this Debian 12).
#include <catch2/catch_test_macros.hpp>

#include <fnmatch.h>

#include <algorithm>
#include <filesystem>
#include <regex>
#include <set>
#include <sstream>
#include <vector>

#include "common/file.h"
#include "tests/support/child_process.h"

using namespace carapace;
using namespace carapace::testing;

namespace {

// The packages of `ARG RUNTIME_PACKAGES="..."` (continued over lines with '\').
std::set<std::string> RuntimePackages(const std::string& dockerfile) {
  const size_t at = dockerfile.find("ARG RUNTIME_PACKAGES=\"");
  REQUIRE(at != std::string::npos);
  const size_t start = at + std::string("ARG RUNTIME_PACKAGES=\"").size();
  const size_t end = dockerfile.find('"', start);
  REQUIRE(end != std::string::npos);
  std::istringstream words(dockerfile.substr(start, end - start));
  std::set<std::string> out;
  for (std::string w; words >> w;) {
    if (w != "\\") out.insert(w);
  }
  return out;
}

// The package that owns `path`, trying the merged-/usr twin as dpkg may know either.
std::string OwningPackage(const std::string& path) {
  for (const std::string& p : {path, path.rfind("/usr", 0) == 0 ? path.substr(4) : "/usr" + path}) {
    CommandResult r = RunCommand({"/usr/bin/dpkg", "-S", p});
    if (r.exit_code == 0) return r.out.substr(0, r.out.find(':'));
  }
  return "";
}

// The exclusion patterns of a .dockerignore ('!' exceptions left out: they only re-include).
std::vector<std::string> IgnorePatterns(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    line = std::regex_replace(line, std::regex(R"(^\s+|\s+$)"), "");
    if (line.empty() || line[0] == '#' || line[0] == '!') continue;
    while (!line.empty() && line.front() == '/') line.erase(0, 1);  // Docker reads "/x" as "x"
    while (!line.empty() && line.back() == '/') line.pop_back();
    out.push_back(line);
  }
  return out;
}

// Whether Docker leaves `path` (relative to the context) out: a pattern that matches the
// path or any directory above it excludes it.
bool Ignored(const std::vector<std::string>& patterns, const std::string& path) {
  for (size_t end = path.find('/');; end = path.find('/', end + 1)) {
    const std::string prefix = path.substr(0, end);
    for (const auto& p : patterns) {
      if (fnmatch(p.c_str(), prefix.c_str(), FNM_PATHNAME) == 0) return true;
    }
    if (end == std::string::npos) return false;
  }
}

}  // namespace

TEST_CASE("the .dockerignore leaves out the build trees but nothing the Dockerfile copies", "[deploy]") {
  namespace fs = std::filesystem;
  const fs::path root = CARAPACE_SOURCE_DIR;
  auto dockerfile = ReadFile((root / "deploy/docker/Dockerfile").string());
  auto dockerignore = ReadFile((root / ".dockerignore").string());
  REQUIRE(dockerfile.ok());
  REQUIRE(dockerignore.ok());
  const std::vector<std::string> patterns = IgnorePatterns(*dockerignore);
  for (const char* local : {".git", "build", "build-chart", ".tools", ".cache", "tests/support/mcp/node_modules"}) {
    INFO(local);
    CHECK(Ignored(patterns, local));
  }
  // Every source of a COPY from the context (not --from another stage), and each file in it.
  std::istringstream lines(*dockerfile);
  int copied = 0;
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::vector<std::string> w;
    for (std::string word; words >> word;) w.push_back(word);
    if (w.empty() || w[0] != "COPY") continue;
    if (std::any_of(w.begin(), w.end(), [](const std::string& x) { return x.rfind("--from=", 0) == 0; })) continue;
    std::vector<std::string> sources;
    for (size_t i = 1; i + 1 < w.size(); ++i) {
      if (w[i].rfind("--", 0) != 0) sources.push_back(w[i]);
    }
    for (const auto& source : sources) {
      INFO(line);
      REQUIRE(fs::exists(root / source));
      CHECK_FALSE(Ignored(patterns, source));
      ++copied;
      if (!fs::is_directory(root / source)) continue;
      for (const auto& e : fs::recursive_directory_iterator(root / source)) {
        const std::string rel = fs::relative(e.path(), root).string();
        if (Ignored(patterns, rel)) FAIL_CHECK(rel << " is copied by the Dockerfile but left out by .dockerignore");
      }
    }
  }
  CHECK(copied >= 5);  // CMakeLists.txt, proto, common, worker, operator
}

TEST_CASE("the runtime image installs every shared library the binaries load", "[deploy]") {
#if defined(__SANITIZE_ADDRESS__)
  // The image builds Release binaries; make sanitize's Debug ones load more (the sanitizer
  // runtimes, gflags through RocksDB's debug link), so only the normal build answers this.
  SKIP("a sanitizer build's binaries are not the image's");
#endif
  auto dockerfile = ReadFile(std::string(CARAPACE_SOURCE_DIR) + "/deploy/docker/Dockerfile");
  REQUIRE(dockerfile.ok());
  const std::set<std::string> installed = RuntimePackages(*dockerfile);
  CHECK(installed.count("ca-certificates"));  // TLS to model services and the API server
  std::set<std::string> needed;
  for (const std::string bin : {WORKER_BIN, OPERATOR_BIN, CARAPACE_BIN}) {
    CommandResult ldd = RunCommand({"/usr/bin/ldd", bin});
    INFO(bin << ": " << ldd.err);
    REQUIRE(ldd.exit_code == 0);
    CHECK(ldd.out.find("not found") == std::string::npos);
    static const std::regex kResolved(R"(=>\s+(/\S+)\s+\(0x)");
    for (std::sregex_iterator it(ldd.out.begin(), ldd.out.end(), kResolved), end; it != end; ++it) {
      const std::string lib = (*it)[1];
      const std::string package = OwningPackage(lib);
      INFO(bin << " loads " << lib);
      CHECK_FALSE(package.empty());
      if (package.empty()) continue;
      needed.insert(package);
      CHECK(installed.count(package) == 1);
    }
  }
  CHECK(needed.size() >= 10);  // the parse found the libraries (gRPC, absl, cpprest, ...)
}
