// Running the built `carapace` CLI from a test: its path is CARAPACE_BIN, which every test
// target defines (tests/CMakeLists.txt). Test code only (Catch2 assertions).
#pragma once

#include <catch2/catch_test_macros.hpp>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/child_process.h"

namespace carapace::testing {

// `carapace ARGS...`, waited for; its exit code and output.
inline CommandResult Carapace(std::vector<std::string> args) {
  args.insert(args.begin(), CARAPACE_BIN);
  return RunCommand(args);
}

// Every event of the run in `state_dir`, as `carapace inspect --json` shows them.
inline nlohmann::json Events(const std::string& state_dir) {
  CommandResult r = Carapace({"inspect", "--state-dir", state_dir, "--json"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return nlohmann::json::parse(r.out)["events"];
}

}  // namespace carapace::testing
