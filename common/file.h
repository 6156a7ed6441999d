// Reading small files whole: manifests, certificates, tokens mounted from Secrets.
#pragma once

#include <string>

#include "common/status.h"

namespace carapace {

// The file's bytes. Errors: kNotFound ("PATH: no such file"), kIoError ("PATH: cannot read:
// REASON").
Result<std::string> ReadFile(const std::string& path);

// `s` without trailing line breaks and spaces: a value as it is kept in a file (echo adds
// a newline; a Secret may too).
std::string TrimLineEnd(std::string s);

// A bearer token kept in a file: read whole, line end trimmed. The worker and the CLI read
// their token files alike, so the same file always gives the same token.
Result<std::string> ReadTokenFile(const std::string& path);

}  // namespace carapace
