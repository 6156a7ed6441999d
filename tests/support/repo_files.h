// Reading the repository's files (manifests, charts, rules) in tests. A file that cannot be
// read fails the test where it is read, naming it. Test code only (Catch2 assertions).
#pragma once

#include <catch2/catch_test_macros.hpp>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "common/file.h"
#include "common/manifest.h"

namespace carapace::testing {

inline std::string ReadText(const std::string& path) {
  auto text = carapace::ReadFile(path);
  INFO(path);
  REQUIRE(text.ok());
  return text.value();
}

// One YAML document as JSON (YAML 1.2 typing, as the AgentRun parser reads it).
inline nlohmann::json LoadYamlAsJson(const std::string& path) {
  auto node = carapace::LoadYamlFile(path);
  INFO(path);
  REQUIRE(node.ok());
  return carapace::YamlToJson(*node);
}

// Every mapping document of a multi-document YAML stream (kubectl or helm output).
inline std::vector<nlohmann::json> ParseYamlDocs(const std::string& yaml) {
  std::vector<nlohmann::json> docs;
  for (const auto& node : YAML::LoadAll(yaml)) {
    if (node.IsMap()) docs.push_back(carapace::YamlToJson(node));
  }
  return docs;
}

}  // namespace carapace::testing
