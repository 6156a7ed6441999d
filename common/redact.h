// Secrets never reach the event log, the logs or metric labels: every value the process
// loads as a secret (an API key, a header from a Secret) is registered here, and text bound
// for storage or output passes through Redact first. Process-wide, because logs are; one
// worker runs one AgentRun. Thread-safe.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace carapace {

inline constexpr const char* kRedacted = "[REDACTED]";

// Registers a secret value. Values shorter than 6 characters are refused (false): redacting
// them would blank out ordinary words, and they are too short to be real credentials.
bool RegisterSecret(const std::string& value);
// Forgets every registered secret (tests).
void ClearSecretsForTesting();

// `text` with every registered secret replaced by [REDACTED].
std::string Redact(std::string_view text);
// A copy of `j` with secrets replaced in every string (keys included).
nlohmann::json RedactJson(const nlohmann::json& j);
// True when no secret is registered (the common case; callers may skip work).
bool NoSecrets();

}  // namespace carapace
