// The C++ model of an AgentRun (carapace.dev/v1alpha1), shared by the worker, the CLI and
// the operator. Field names follow the YAML a user writes; see "The AgentRun spec" in README.md.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace carapace {

inline constexpr const char* kAgentRunApiVersion = "carapace.dev/v1alpha1";
inline constexpr const char* kAgentRunKind = "AgentRun";

// How a tool call may be repeated after a crash (DESIGN.md, durable execution).
enum class Effect { kReadOnly, kIdempotent, kSideEffecting };
const char* EffectName(Effect e);  // "read_only", "idempotent", "side_effecting"
std::optional<Effect> ParseEffect(const std::string& s);

// What to do with a side-effecting call whose outcome is unknown after a crash.
enum class UnknownOutcomePolicy { kAsk, kTellModel, kFail };
const char* UnknownOutcomePolicyName(UnknownOutcomePolicy p);

enum class Durability { kSync, kBatch };
const char* DurabilityName(Durability d);

struct ToolCallSpec {
  std::string name;
  nlohmann::json arguments = nlohmann::json::object();
};

// One reply of the scripted backend.
struct ScriptedReply {
  std::string text;
  std::vector<ToolCallSpec> tool_calls;
};

struct ModelSpec {
  std::string backend;                // registry name: "scripted", ...
  std::vector<ScriptedReply> script;  // scripted backend only
};

// The backend that turns text into vectors for memory search. Unset: memory search ranks
// by keywords only.
struct EmbeddingSpec {
  std::string backend;      // registry name; "scripted" gives deterministic vectors for tests
  int64_t dimensions = 768;
};

// A header the http tool adds to every request: a literal value, or a secret read at start
// from an environment variable or a file (in a cluster: a mounted Secret). Secret values
// are redacted from the event log and the logs.
struct HeaderSpec {
  std::string name;
  std::string value;       // literal
  std::string from_env;    // or: the environment variable holding it
  std::string from_file;   // or: the file holding it (trailing newline dropped)
  bool secret() const { return !from_env.empty() || !from_file.empty(); }
};

// Headers the http tool sets itself, which neither the spec nor the model may give: Host
// would reach other virtual hosts behind an allowed address, the framing headers are the
// client's, and the runtime's Idempotency-Key is what makes retries safe. Case-insensitive.
bool IsToolManagedHeader(std::string_view name);

struct HttpToolOptions {
  // "host:port" or "host" (any port), internal addresses included; "*" adds any host whose
  // addresses are all public.
  std::vector<std::string> allowed_hosts;
  int64_t timeout_seconds = 30;
  int64_t max_response_bytes = 1 << 20;
  int64_t max_redirects = 5;
  std::vector<HeaderSpec> headers;
};

// An MCP server reached over streamable HTTP. Every tool it lists becomes a tool of the run.
struct McpToolOptions {
  std::string url;                                // http(s)://host:port/path
  std::vector<HeaderSpec> headers;                // e.g. Authorization from a Secret
  int64_t timeout_seconds = 30;
  std::vector<std::string> require_approval_for;  // server tool names that wait for a person
};

struct ToolSpec {
  std::string name;
  std::string kind;
  std::optional<Effect> effect;  // unset: the kind's default
  bool require_approval = false;
  // Output larger than this is kept whole in the run's artifacts; the log and the model get
  // a preview (DESIGN: tool output goes back capped).
  int64_t max_output_bytes = 64 * 1024;
  HttpToolOptions http;
  McpToolOptions mcp;
};

struct BudgetSpec {
  int64_t max_steps = 50;
  int64_t max_tokens = 200000;
  int64_t max_tool_calls = 200;
  int64_t max_wall_clock_seconds = 3600;
};

struct AgentRunSpec {
  std::string instructions;
  std::string goal;
  ModelSpec model;
  std::optional<EmbeddingSpec> embedding;
  std::vector<ToolSpec> tools;
  BudgetSpec budget;
  UnknownOutcomePolicy unknown_outcome = UnknownOutcomePolicy::kAsk;
  Durability durability = Durability::kSync;
};

struct ObjectMeta {
  std::string name;
  std::string ns = "default";
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
};

struct AgentRun {
  ObjectMeta metadata;
  AgentRunSpec spec;

  // Canonical JSON of the spec (keys sorted); its hash identifies "the same AgentRun".
  nlohmann::json SpecJson() const;
  std::string SpecHash() const;
};

// Parses and validates an AgentRun document. Every problem is reported with its position
// and field path; `file` names the source in messages. Errors: kInvalidArgument.
Result<AgentRun> ParseAgentRun(const std::string& text, const std::string& file);
Result<AgentRun> LoadAgentRunFile(const std::string& path);

}  // namespace carapace
