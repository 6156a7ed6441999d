// The CRD's schema (crds/carapace.dev_agentruns.yaml) and the C++ parser (ParseAgentRun)
// must accept and reject the same manifests: every example and sample, the good-but-unusual
// ones in tests/manifests/valid/ and the bad ones in tests/manifests/invalid/ (one problem each,
// its field path in a "# field:" comment). The schema side is tests/support/crd_validate.py
// (jsonschema plus a small CEL evaluator), run with Debian's python3. Schema defaults are
// applied as the API server applies them, and must not change the parsed spec's hash.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/agentrun/spec.h"
#include "common/file.h"
#include "common/manifest.h"
#include "tests/support/child_process.h"
#include "tests/support/repo_files.h"

using carapace::AgentRun;
using carapace::ParseAgentRun;
using carapace::testing::CommandResult;
using carapace::testing::RunCommand;
using carapace::testing::ReadText;
using carapace::testing::TempDir;
using Catch::Matchers::ContainsSubstring;
using nlohmann::json;

namespace {

const std::string kSource = CARAPACE_SOURCE_DIR;
const std::string kPython = CARAPACE_PYTHON3;
const std::string kValidator = kSource + "/tests/support/crd_validate.py";
const std::string kCrd = kSource + "/crds/carapace.dev_agentruns.yaml";
const std::string kManifests = kSource + "/tests/manifests";

std::vector<std::string> YamlFiles(const std::string& dir, const std::string& suffix = ".yaml") {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string p = e.path().string();
    if (p.size() >= suffix.size() && p.compare(p.size() - suffix.size(), suffix.size(), suffix) == 0) out.push_back(p);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The value of a leading "# key: value" comment of a test manifest; "" when absent.
std::string Comment(const std::string& path, const std::string& key) {
  std::istringstream in(ReadText(path));
  const std::string prefix = "# " + key + ": ";
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) return line.substr(prefix.size());
  }
  return "";
}

std::string Join(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// How the operator runs the agent: not in the SpecHash, so compared field by field.
json DeploymentJson(const AgentRun& run) {
  const auto& d = run.spec.deployment;
  json j = {{"suspend", d.suspend},   {"image", d.image},
            {"resources", d.resources}, {"size", d.storage.size},
            {"class", d.storage.storage_class}, {"whenDeleted", d.storage.when_deleted},
            {"whenScaled", d.storage.when_scaled},
            {"restoreFrom", {d.storage.restore_from.claim_name, d.storage.restore_from.path, d.storage.restore_from.fork}}};
  if (d.idle_timeout_seconds) j["idleTimeoutSeconds"] = *d.idle_timeout_seconds;
  return j;
}

// Everything wrong between the parser and the schema in `crd` over the whole corpus, one
// line each; empty when they agree.
// The AgentRuns users start from: examples/ and deploy/samples/ (less its kustomization).
std::vector<std::string> UserManifests() {
  std::vector<std::string> out = YamlFiles(kSource + "/examples");
  for (const auto& f : YamlFiles(kSource + "/examples/models")) out.push_back(f);
  for (const auto& f : YamlFiles(kSource + "/deploy/samples")) {
    if (std::filesystem::path(f).filename() != "kustomization.yaml") out.push_back(f);
  }
  return out;
}

std::vector<std::string> Disagreements(const std::string& crd) {
  std::vector<std::string> valid = UserManifests();
  for (const auto& f : YamlFiles(kManifests + "/valid")) valid.push_back(f);
  const std::vector<std::string> invalid = YamlFiles(kManifests + "/invalid");
  const std::vector<std::string> parser_only = YamlFiles(kManifests + "/parser-only");

  std::vector<std::string> argv = {kPython, kValidator, crd, "--json"};
  for (const std::vector<std::string>* list : std::initializer_list<const std::vector<std::string>*>{&valid, &invalid, &parser_only}) argv.insert(argv.end(), list->begin(), list->end());
  CommandResult r = RunCommand(argv, 120000);
  if (r.exit_code != 0) return {"crd_validate.py exited " + std::to_string(r.exit_code) + ": " + r.err};
  std::map<std::string, json> schema;
  for (const auto& res : json::parse(r.out)) schema[res["file"].get<std::string>()] = res;

  std::vector<std::string> out;
  auto schema_errors = [&](const std::string& f) { return Join(schema[f]["errors"].get<std::vector<std::string>>()); };
  for (const auto& f : valid) {
    auto parsed = ParseAgentRun(ReadText(f), f);
    if (!parsed.ok()) out.push_back(f + ": the parser rejects a valid manifest: " + parsed.status().message());
    if (!schema[f]["valid"].get<bool>()) out.push_back(f + ": the schema rejects a valid manifest: " + schema_errors(f));
    if (!parsed.ok() || !schema[f]["valid"].get<bool>()) continue;
    // What the API server would store, with the schema's defaults, is the same agent.
    const std::string defaulted_text = schema[f]["defaulted"].dump();
    auto defaulted = ParseAgentRun(defaulted_text, f + " (defaulted)");
    if (!defaulted.ok()) {
      out.push_back(f + ": the parser rejects the defaulted manifest: " + defaulted.status().message());
      continue;
    }
    if (defaulted.value().SpecHash() != parsed.value().SpecHash()) {
      out.push_back(f + ": the schema's defaults change the spec hash: " + parsed.value().SpecJson().dump() + " vs " +
                    defaulted.value().SpecJson().dump());
    }
    if (DeploymentJson(defaulted.value()) != DeploymentJson(parsed.value())) {
      out.push_back(f + ": the schema's defaults change how it runs: " + DeploymentJson(parsed.value()).dump() + " vs " +
                    DeploymentJson(defaulted.value()).dump());
    }
  }
  for (const auto& f : invalid) {
    const std::string field = Comment(f, "field");
    if (field.empty()) out.push_back(f + ": no '# field:' comment");
    auto parsed = ParseAgentRun(ReadText(f), f);
    if (parsed.ok()) out.push_back(f + ": the parser accepts an invalid manifest");
    else if (parsed.status().message().find(field + ":") == std::string::npos &&
             parsed.status().message().find(field + "[") == std::string::npos &&
             parsed.status().message().find(field + ".") == std::string::npos) {
      out.push_back(f + ": the parser's message does not name " + field + ": " + parsed.status().message());
    }
    if (schema[f]["valid"].get<bool>()) out.push_back(f + ": the schema accepts an invalid manifest");
    else if (schema_errors(f).find(field) == std::string::npos) {
      out.push_back(f + ": the schema's message does not name " + field + ": " + schema_errors(f));
    }
  }
  // Known gaps, kept honest: the schema cannot see these; the parser (and so the operator,
  // which reports InvalidSpec) does.
  for (const auto& f : parser_only) {
    const std::string field = Comment(f, "field");
    auto parsed = ParseAgentRun(ReadText(f), f);
    if (parsed.ok() || parsed.status().message().find(field) == std::string::npos) {
      out.push_back(f + ": the parser should reject it, naming " + field);
    }
    if (!schema[f]["valid"].get<bool>()) out.push_back(f + ": the schema now rejects it: move it to invalid/");
  }
  return out;
}

// The CRD as JSON (which is YAML) after `edit`, in `dir`.
template <typename Edit>
std::string EditedCrd(const TempDir& dir, Edit edit) {
  auto node = carapace::LoadYamlFile(kCrd);
  REQUIRE(node.ok());
  json crd = carapace::YamlToJson(node.value());
  edit(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]);
  const std::string path = dir.Sub("crd.json");
  std::ofstream(path) << crd.dump(1);
  return path;
}

bool Mentions(const std::vector<std::string>& lines, const std::string& what) {
  return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) { return l.find(what) != std::string::npos; });
}

}  // namespace

TEST_CASE("the CRD schema and the parser accept and reject the same manifests", "[crd]") {
  // Enough of each kind that a lost directory cannot pass unnoticed.
  CHECK(UserManifests().size() >= 9);
  CHECK(YamlFiles(kManifests + "/valid").size() >= 10);
  CHECK(YamlFiles(kManifests + "/invalid").size() >= 90);
  const auto problems = Disagreements(kCrd);
  INFO(Join(problems));
  CHECK(problems.empty());
}

TEST_CASE("transition rules: the storage class is fixed and the volume only grows", "[crd]") {
  const auto updates = YamlFiles(kManifests + "/updates", ".new.yaml");
  REQUIRE(updates.size() >= 6);
  for (const auto& next : updates) {
    const std::string prev = next.substr(0, next.size() - std::string(".new.yaml").size()) + ".old.yaml";
    const std::string expect = Comment(next, "expect");
    INFO(next << " expect: " << expect);
    // The parser has no notion of an update: both sides are valid manifests on their own.
    CHECK(ParseAgentRun(ReadText(prev), prev).ok());
    CHECK(ParseAgentRun(ReadText(next), next).ok());
    CommandResult r = RunCommand({kPython, kValidator, kCrd, next, "--old", prev});
    INFO(r.out << r.err);
    if (expect == "allowed") {
      CHECK(r.exit_code == 0);
    } else {
      REQUIRE(expect.rfind("refused ", 0) == 0);
      CHECK(r.exit_code == 1);
      CHECK_THAT(r.out, ContainsSubstring(expect.substr(std::string("refused ").size())));
    }
  }
}

TEST_CASE("the CRD documents every field, is structural, and is what crds/generate.py writes", "[crd]") {
  CommandResult lint = RunCommand({kPython, kValidator, kCrd, "--lint"});
  INFO(lint.out << lint.err);
  CHECK(lint.exit_code == 0);
  CHECK(lint.out.empty());
  CommandResult gen = RunCommand({kPython, kSource + "/crds/generate.py", "--check"});
  INFO(gen.out << gen.err);
  CHECK(gen.exit_code == 0);
}

TEST_CASE("a CEL function newer than the chart's minimum Kubernetes version is caught", "[crd]") {
  // --lint reads the oldest Kubernetes the chart admits from its kubeVersion (">=1.29.0-0");
  // the API server refuses a new CRD whose rules call a function it does not offer yet.
  TempDir dir;
  int n = 0;
  auto chart = [&](const std::string& text) {
    const std::string path = dir.Sub("Chart-" + std::to_string(n++) + ".yaml");
    std::ofstream(path) << text;
    return path;
  };
  auto lint = [&](const std::string& crd, const std::string& chart_path) {
    return RunCommand({kPython, kValidator, crd, "--lint", "--chart", chart_path});
  };
  CHECK(lint(kCrd, chart("kubeVersion: \">=1.29.0-0\"\n")).exit_code == 0);
  // The storage-size transition rule calls quantity(): usable in a new CRD from 1.29 only.
  CommandResult old = lint(kCrd, chart("kubeVersion: \">=1.28.0-0\"\n"));
  CHECK(old.exit_code == 1);
  CHECK_THAT(old.out, ContainsSubstring("spec.storage.size: quantity needs Kubernetes 1.29"));
  // A rule added with lowerAscii (extended strings library, 1.25) on a chart that allows 1.24.
  const std::string crd = EditedCrd(dir, [](json& spec) {
    spec["budget"]["x-kubernetes-validations"] =
        json::array({{{"rule", "'A'.lowerAscii() == 'a'"}, {"message", "m"}}});
  });
  CommandResult strings = lint(crd, chart("kubeVersion: \">= 1.24.0\"\n"));
  CHECK(strings.exit_code == 1);
  CHECK_THAT(strings.out, ContainsSubstring("spec.budget: lowerAscii needs Kubernetes 1.25"));
  // Without a readable lower bound nothing can be judged: that fails too.
  for (const std::string text : {"name: carapace\n", "kubeVersion: \"^1.29\"\n", "kubeVersion: \">=1.29.0-0 || 1.20\"\n",
                                 "kubeVersion: [\n"}) {
    INFO(text);
    CommandResult r = lint(kCrd, chart(text));
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.out, ContainsSubstring("the minimum Kubernetes version is unknown"));
  }
  CHECK(lint(kCrd, dir.Sub("no-such-Chart.yaml")).exit_code == 1);
}

TEST_CASE("a pattern with a regex shorthand the engines disagree on is caught", "[crd]") {
  // RE2's \s is [\t\n\f\r ]; Python's also matches U+00A0 and \v, std::regex's \v.
  TempDir dir;
  const std::string crd = EditedCrd(dir, [](json& spec) { spec["image"]["pattern"] = "^\\S+$"; });
  CommandResult r = RunCommand({kPython, kValidator, crd, "--lint"});
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.out, ContainsSubstring("spec.image: pattern uses a regex shorthand"));
}

TEST_CASE("a schema that drifts from the parser is caught", "[crd]") {
  TempDir dir;
  SECTION("a lost minimum") {
    auto problems = Disagreements(EditedCrd(dir, [](json& spec) {
      spec["budget"]["properties"]["maxSteps"].erase("minimum");
    }));
    CHECK(Mentions(problems, "range-maxsteps-zero.yaml: the schema accepts an invalid manifest"));
  }
  SECTION("a default that is not the parser's") {
    auto problems = Disagreements(EditedCrd(dir, [](json& spec) {
      spec["budget"]["properties"]["maxSteps"]["default"] = 51;
    }));
    CHECK(Mentions(problems, "the schema's defaults change the spec hash"));
  }
  SECTION("a lost CEL rule") {
    auto problems = Disagreements(EditedCrd(dir, [](json& spec) {
      auto& rules = spec["tools"]["items"]["x-kubernetes-validations"];
      rules.erase(std::remove_if(rules.begin(), rules.end(),
                                 [](const json& r) { return r["rule"] == "self.name != 'finish'"; }),
                  rules.end());
    }));
    CHECK(Mentions(problems, "cel-tool-finish-reserved.yaml: the schema accepts an invalid manifest"));
  }
  SECTION("a stricter schema than the parser") {
    auto problems = Disagreements(EditedCrd(dir, [](json& spec) { spec["instructions"]["maxLength"] = 3; }));
    CHECK(Mentions(problems, "the schema rejects a valid manifest"));
  }
  SECTION("a CEL rule the validator cannot evaluate fails loudly") {
    auto problems = Disagreements(EditedCrd(dir, [](json& spec) {
      spec["budget"]["x-kubernetes-validations"] = json::array({{{"rule", "self.maxSteps * 2 > 1"}}});
    }));
    REQUIRE(problems.size() == 1);
    CHECK_THAT(problems[0], ContainsSubstring("exited 2"));
    CHECK_THAT(problems[0], ContainsSubstring("cannot judge"));
  }
}

TEST_CASE("the CEL evaluator refuses what it does not know, and gets CEL's logic right", "[crd]") {
  TempDir dir;
  const std::string manifest = kSource + "/examples/hello.yaml";
  auto check = [&](const std::string& rule) {
    const std::string crd = EditedCrd(dir, [&](json& spec) {
      spec["budget"]["x-kubernetes-validations"] = json::array({{{"rule", rule}, {"message", "rule failed"}}});
    });
    return RunCommand({kPython, kValidator, crd, manifest});
  };
  // Unsupported syntax: exit 2, never a pass.
  for (const char* rule : {"self.maxSteps === 50", "{'a': 1}.size() == 1", "self.all(x, x > 0) && self.map(x, x)",
                           "self.maxSteps / 2 > 0", "int(self.maxSteps) > 0"}) {
    INFO(rule);
    CHECK(check(rule).exit_code == 2);
  }
  // Semantics: defaults are seen, errors absorbed by && / || as in CEL, runtime errors invalid.
  CHECK(check("self.maxSteps == 50 && self.maxTokens == 200000").exit_code == 0);
  CHECK(check("has(self.nothing) && self.nothing > 1 || !has(self.nothing)").exit_code == 0);
  CHECK(check("self.nothing == 1 || true").exit_code == 0);
  CHECK(check("self.nothing == 1").exit_code == 1);
  CHECK(check("size([1, 2, 3]) == 3 && 'ab'.matches('^a') && ('x' in ['x']) && (true ? 1 : 2) == 1").exit_code == 0);
  CHECK(check("quantity('1Gi').compareTo(quantity('1024Mi')) == 0 && quantity('2G').isGreaterThan(quantity('1Gi'))").exit_code == 0);
  CHECK(check("1 == true").exit_code == 1);
}

TEST_CASE("the CRD offers exactly the model families and tool-call formats the worker knows", "[crd]") {
  auto crd = carapace::LoadYamlFile(kCrd);
  REQUIRE(crd.ok());
  const nlohmann::json schema = carapace::YamlToJson(*crd)["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
  const nlohmann::json& triton = schema["properties"]["spec"]["properties"]["model"]["properties"]["triton"]["properties"];
  CHECK(triton["family"]["enum"].get<std::vector<std::string>>() == carapace::ModelFamilies());
  CHECK(triton["toolCallFormat"]["enum"].get<std::vector<std::string>>() == carapace::ToolCallFormats());
}
