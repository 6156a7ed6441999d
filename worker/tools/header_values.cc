// Header values and secrets.
#include "worker/tools/header_values.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/json_text.h"
#include "common/redact.h"
#include "common/text.h"

namespace carapace {

Result<std::string> LoadHeaderValue(const HeaderSpec& h, const std::string& where) {
  std::string value = h.value;
  if (!h.from_env.empty()) {
    const char* v = std::getenv(h.from_env.c_str());
    if (v == nullptr || *v == '\0') return InvalidArgument(where + ": environment variable " + h.from_env + " is not set");
    value = v;
  } else if (!h.from_file.empty()) {
    std::ifstream in(h.from_file, std::ios::binary);
    if (!in) return InvalidArgument(where + ": cannot read " + h.from_file);
    std::stringstream s;
    s << in.rdbuf();
    value = s.str();
    while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
    if (value.empty()) return InvalidArgument(where + ": " + h.from_file + " is empty");
  }
  if (value.find_first_of("\r\n") != std::string::npos) return InvalidArgument(where + ": the value has a line break");
  if (h.secret()) {
    // Redaction matches text: a secret must be valid UTF-8 to be found again after
    // cleaning, and long enough not to blank out ordinary words.
    if (!IsValidUtf8(value)) return InvalidArgument(where + ": the secret is not valid UTF-8");
    if (!RegisterSecret(value)) {
      return InvalidArgument(where + ": a secret shorter than 6 characters cannot be redacted reliably");
    }
    // "Bearer <token>": a service may echo the token alone.
    auto space = value.find(' ');
    if (space != std::string::npos) RegisterSecret(value.substr(space + 1));
  }
  return value;
}

Result<LoadedHeaders> LoadHeaders(const std::vector<HeaderSpec>& headers, const std::string& where_prefix) {
  LoadedHeaders out;
  for (size_t i = 0; i < headers.size(); ++i) {
    const HeaderSpec& h = headers[i];
    CARAPACE_ASSIGN_OR_RETURN(std::string value,
                              LoadHeaderValue(h, where_prefix + "[" + std::to_string(i) + "] (" + h.name + ")"));
    if (h.secret()) out.secret_names.push_back(AsciiLower(h.name));
    out.values.emplace_back(h.name, value);
  }
  return out;
}

}  // namespace carapace
