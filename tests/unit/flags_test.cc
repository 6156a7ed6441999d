// Command-line flags shared by carapace-worker and carapace-operator.
#include <catch2/catch_test_macros.hpp>

#include <vector>

#include "common/flags.h"

using namespace carapace;

namespace {
Result<ParsedFlags> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "bin");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return ParseFlags(static_cast<int>(argv.size()), argv.data(), {"--spec", "--port"}, {"--verbose"});
}
}  // namespace

TEST_CASE("flags take `--flag value`, `--flag=value` and bare switches", "[flags]") {
  auto f = Parse({"--spec", "a.yaml", "--port=7070", "--verbose"});
  REQUIRE(f.ok());
  CHECK(f->Get("--spec") == "a.yaml");
  CHECK(f->Get("--port") == "7070");
  CHECK(f->Has("--verbose"));
  CHECK_FALSE(f->help);
  CHECK(f->Get("--missing", "dflt") == "dflt");
  auto eq = Parse({"--spec=x=y"});
  REQUIRE(eq.ok());
  CHECK(eq->Get("--spec") == "x=y");  // only the first '=' splits
  CHECK(Parse({"-h"})->help);
}

TEST_CASE("an unknown flag or a missing value is named", "[flags]") {
  CHECK(Parse({"--nope"}).status().message() == "unknown flag --nope");
  CHECK(Parse({"--spec"}).status().message() == "--spec needs a value");
  CHECK(Parse({"--verbose=1"}).status().message() == "unknown flag --verbose");
}
