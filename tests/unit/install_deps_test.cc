// scripts/install-deps.sh on a machine that is not Debian 12 says what to install instead,
// and changes nothing.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <fstream>

#include "tests/support/child_process.h"

using carapace::testing::RunCommand;
using carapace::testing::TempDir;
using Catch::Matchers::ContainsSubstring;

TEST_CASE("install-deps refuses another distribution and lists what to install", "[scripts]") {
  TempDir tmp;
  std::ofstream(tmp.Sub("os-release")) << "ID=fedora\nVERSION_ID=40\nPRETTY_NAME=\"Fedora Linux 40\"\n";
  auto r = RunCommand({"/usr/bin/env", "CARAPACE_OS_RELEASE=" + tmp.Sub("os-release"), "bash",
                       std::string(CARAPACE_SOURCE_DIR) + "/scripts/install-deps.sh"});
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, ContainsSubstring("supports Debian 12 (bookworm); found 'Fedora Linux 40'"));
  CHECK_THAT(r.err, ContainsSubstring("RocksDB"));
  CHECK_THAT(r.err, ContainsSubstring("Catch2 v3"));
}

TEST_CASE("install-deps on this Debian 12 machine finds everything installed", "[scripts]") {
  // make test ran it before building, so a second run must be a quick no-op.
  auto r = RunCommand({"/bin/bash", std::string(CARAPACE_SOURCE_DIR) + "/scripts/install-deps.sh"});
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, ContainsSubstring("all dependencies present"));
}
