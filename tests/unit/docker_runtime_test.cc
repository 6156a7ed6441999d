// The images cannot be built here (no container engine), so this keeps their runtime stage
// honest: every shared library the binaries load (by `ldd`) must come from a package the
// runtime stage of deploy/docker/Dockerfile installs (by `dpkg -S` on this Debian 12).
#include <catch2/catch_test_macros.hpp>

#include <regex>
#include <set>
#include <sstream>

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

}  // namespace

TEST_CASE("the runtime image installs every shared library the binaries load", "[deploy]") {
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
