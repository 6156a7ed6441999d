// Loading the headers a tool is configured with (http, mcp): literal values, and secrets
// from environment variables or files, which are registered for redaction.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/agentrun/spec.h"
#include "common/status.h"

namespace carapace {

struct LoadedHeaders {
  std::vector<std::pair<std::string, std::string>> values;  // (name, value)
  std::vector<std::string> secret_names;                    // lower-case
};

// One value: the literal, or the secret from its environment variable or file, registered
// for redaction. Errors: kInvalidArgument prefixed with `where`.
Result<std::string> LoadHeaderValue(const HeaderSpec& header, const std::string& where);

// `where` prefixes error messages ("tool \"api\": http.headers"). Errors: kInvalidArgument
// naming the header when a secret is missing, empty, not UTF-8 or too short to redact.
Result<LoadedHeaders> LoadHeaders(const std::vector<HeaderSpec>& headers, const std::string& where);

}  // namespace carapace
