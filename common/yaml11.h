// Manifests are read here as YAML 1.2, but kubectl and Helm read them as YAML 1.1 (through
// sigs.k8s.io/yaml, i.e. go-yaml v2) before the API server stores them. Where the two read
// an unquoted scalar differently, `carapace run` and the cluster would run different specs.
#pragma once

#include <string>

#include <yaml-cpp/yaml.h>

#include "common/manifest.h"

namespace carapace {

// Reports every plain (unquoted, untagged) scalar under `node`, keys included, that YAML 1.1
// types differently from YamlToJson: yes/no/on/off/y/n, 010 (octal), 1_000, 0x1F, 0b101,
// .inf. Such a scalar must be quoted (or a number written in plain decimal). `path` names
// `node`; "" for the document.
void CheckYaml11Scalars(const YAML::Node& node, const std::string& path, ManifestErrors* errors);

}  // namespace carapace
