// Parsing command-line flags (see flags.h).
#include "common/flags.h"

#include <algorithm>
#include <optional>

namespace carapace {

Result<ParsedFlags> ParseFlags(int argc, char** argv, const std::vector<std::string>& valued,
                               const std::vector<std::string>& switches) {
  ParsedFlags out;
  auto known = [](const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      out.help = true;
      continue;
    }
    if (known(switches, a)) {
      out.values[a] = "1";
      continue;
    }
    std::optional<std::string> value;
    if (size_t eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq + 1);
      a.resize(eq);
    }
    if (!known(valued, a)) return InvalidArgument("unknown flag " + a);
    if (!value && i + 1 >= argc) return InvalidArgument(a + " needs a value");
    out.values[a] = value ? *value : argv[++i];
  }
  return out;
}

}  // namespace carapace
