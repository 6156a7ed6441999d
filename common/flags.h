// Command-line flags as Carapace's binaries take them: `--flag VALUE` or `--flag=VALUE`
// for valued flags, a bare `--switch` for the others, `-h`/`--help` for the usage.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace carapace {

struct ParsedFlags {
  std::map<std::string, std::string> values;  // switches given map to "1"
  bool help = false;

  bool Has(const std::string& name) const { return values.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& fallback = "") const {
    auto it = values.find(name);
    return it == values.end() ? fallback : it->second;
  }
};

// Errors: kInvalidArgument "unknown flag --x" or "--x needs a value".
Result<ParsedFlags> ParseFlags(int argc, char** argv, const std::vector<std::string>& valued,
                               const std::vector<std::string>& switches = {});

}  // namespace carapace
