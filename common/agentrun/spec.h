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

// A header the http tool adds to every request: a literal value, or a secret read at start
// from an environment variable or a file (in a cluster: a mounted Secret). Secret values
// are redacted from the event log and the logs.
struct HeaderSpec {
  std::string name;
  std::string value;       // literal
  std::string from_env;    // or: the environment variable holding it
  std::string from_file;   // or: the file holding it (trailing newline dropped)
  // Or a key of a Kubernetes Secret (`valueFrom.secretKeyRef`). The operator passes it to
  // the worker in the environment variable SecretEnvName(name, key), which from_env then
  // names, so a local `carapace run` reads the same variable.
  std::string secret_name = {};
  std::string secret_key = {};
  bool secret() const { return !from_env.empty() || !from_file.empty(); }
};

// "CARAPACE_SECRET_<NAME>_<KEY>", upper-cased, other characters as '_'.
std::string SecretEnvName(const std::string& secret_name, const std::string& key);

// Headers the http tool sets itself, which neither the spec nor the model may give: Host
// would reach other virtual hosts behind an allowed address, the framing headers are the
// client's, and the runtime's Idempotency-Key is what makes retries safe. Case-insensitive.
bool IsToolManagedHeader(std::string_view name);

// TLS to a model service. For triton it is on when `enabled` (a dns:/// target has no
// scheme to say so); for openai an https:// endpoint turns it on. Without ca_file the
// system roots are trusted.
struct TlsOptions {
  bool enabled = false;
  std::string ca_file;
  std::string cert_file;  // client certificate (mutual TLS), with key_file
  std::string key_file;
};

// Tensor names of a Triton / KServe v2 model. The defaults are those of Triton's vLLM
// backend and of the TensorRT-LLM ensemble, which agree on the text tensors.
struct TritonTensorNames {
  std::string text_input = "text_input";    // BYTES: the rendered prompt
  std::string text_output = "text_output";  // BYTES: generated text
  std::string stream = "stream";            // BOOL
  std::string exclude_input_in_output = "exclude_input_in_output";  // BOOL
  std::string sampling_parameters = "sampling_parameters";          // BYTES JSON (vllm preset)
  std::string max_tokens = "max_tokens";    // INT32 (tensorrtllm preset)
  std::string temperature = "temperature";  // FP32 (tensorrtllm preset)
  std::string top_p = "top_p";              // FP32 (tensorrtllm preset)
  std::string stop_words = "stop_words";    // BYTES (tensorrtllm preset): the template's stops
  std::string embedding = "embedding";      // FP32 output of an embedding model
  // What the server knows: Triton's vLLM backend's additional outputs
  // (docs/additional_outputs.md of triton-inference-server/vllm_backend). A BOOL input asks
  // for each; it is sent only when the model's config declares it, as Triton refuses an
  // input a model does not declare. finish_reason (r24.12 on) is "None" until the sequence
  // has finished, then "stop", "length" or "abort"; num_input_tokens is the prompt's count
  // on every response; num_output_tokens is each response's own count, so a stream's sum is
  // the reply's. An output the model declares without an asking input (a TensorRT-LLM
  // model's output length, named here) is read too.
  std::string return_finish_reason = "return_finish_reason";        // BOOL input
  std::string finish_reason = "finish_reason";                      // BYTES output
  std::string return_num_input_tokens = "return_num_input_tokens";  // BOOL input
  std::string num_input_tokens = "num_input_tokens";                // UINT32 output
  std::string return_num_output_tokens = "return_num_output_tokens";  // BOOL input
  std::string num_output_tokens = "num_output_tokens";              // UINT32 output
};

// The model's own Jinja chat template (spec.model.triton.chatTemplate): from a file, a
// ConfigMap key the operator mounts, or inline.
struct ChatTemplateSource {
  std::string file;         // chat_template.jinja or tokenizer_config.json
  std::string config_map;   // a ConfigMap in the AgentRun's namespace...
  std::string key;          // ...and its key
  std::string inline_text;  // the template itself
  std::string name;         // one of a tokenizer_config.json's named templates
  // How a tool call's arguments reach the template: "mapping" (as vLLM passes them) or
  // "string" (the JSON text, as OpenAI's API has them, for templates that concatenate it).
  std::string arguments_as = "mapping";

  bool given() const { return !file.empty() || !config_map.empty() || !inline_text.empty(); }
  // Where the worker reads it: `file`, or where the operator mounts the ConfigMap's key.
  std::string Path() const;
};

// Where the operator mounts a chat template ConfigMap in the worker's pod.
std::string ChatTemplateMountDir(const std::string& config_map);

// spec.model.triton.family: the model families the worker knows (model_families.cc).
const std::vector<std::string>& ModelFamilies();
// spec.model.triton.toolCallFormat: the formats the worker parses (reply_parser.h).
const std::vector<std::string>& ToolCallFormats();

struct TritonOptions {
  // "vllm": sampling parameters as one JSON string tensor; "tensorrtllm": separate tensors.
  std::string preset = "vllm";
  // A built-in chat template ("chatml", "llama3"), or a template file (docs/models.md).
  std::string chat_template = "chatml";
  std::string template_file;
  // A model family (worker/model/model_families.h): template, tool-call format and stops
  // in one name. "" = none.
  std::string family;
  ChatTemplateSource jinja;      // the model's own template; replaces the family's
  std::string tool_call_format;  // "" = the family's, else detected from the template
  std::optional<std::vector<std::string>> stop;  // unset = the family's or the template's
  // Variables a Jinja template (the family's or chatTemplate) gets besides the conversation:
  // enable_thinking, reasoning_effort, ...
  nlohmann::json template_variables = nlohmann::json::object();
  bool stream = true;  // ModelStreamInfer (decoupled model); false: one unary ModelInfer
  TritonTensorNames tensors;
};

// One model service: the backend kind, the model's name there, and how to reach it.
struct ModelEndpointSpec {
  std::string backend;                // registry name: "scripted", "openai", "triton"
  std::string name;                   // the model's name at the service
  std::string endpoint;               // openai: base URL (".../v1"); triton: gRPC target
  std::optional<HeaderSpec> api_key;  // a secret (valueFrom env or file), sent as a bearer token
  int64_t timeout_seconds = 120;      // deadline of one call, a streamed reply included
  std::optional<int64_t> max_tokens;  // per reply
  std::optional<double> temperature;
  std::optional<double> top_p;
  TlsOptions tls;
  TritonOptions triton;
  std::vector<ScriptedReply> script;  // scripted backend only

  // "triton model@endpoint", or "scripted": for messages, metrics and the event log.
  std::string Describe() const;
};

// Retries of one endpoint before the first token (UNAVAILABLE, RESOURCE_EXHAUSTED, HTTP
// 429/503): exponential backoff with full jitter.
struct RetrySpec {
  int64_t max_attempts = 3;  // attempts in all, the first included
  int64_t initial_backoff_ms = 250;
  int64_t max_backoff_ms = 5000;
};

// After `failure_threshold` failures in a row an endpoint is skipped for `open_seconds`;
// then one trial call decides whether it is used again.
struct CircuitBreakerSpec {
  int64_t failure_threshold = 5;
  int64_t open_seconds = 30;
};

struct ModelSpec : ModelEndpointSpec {
  // The model's context window in tokens (prompt and reply together). Unset: what the service
  // says (vLLM's GET /v1/models max_model_len), else kDefaultContextTokens (docs/context.md).
  std::optional<int64_t> context_tokens;
  // Tokens kept free for the reply. Unset: maxTokens when set, else kDefaultReplyReserveTokens.
  std::optional<int64_t> reply_reserve_tokens;
  // Tried in order when the endpoint before could not answer (unavailable, deadline,
  // circuit open) or refused its own key or model name. A request the service found bad
  // would be bad everywhere, and does not fall over.
  std::vector<ModelEndpointSpec> fallbacks;
  RetrySpec retry;
  CircuitBreakerSpec circuit_breaker;
};

// The backend that turns text into vectors for memory search. Unset: memory search ranks
// by keywords only. "scripted" gives deterministic vectors for tests.
struct EmbeddingSpec : ModelEndpointSpec {
  int64_t dimensions = 768;
};

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

// Limits for one turn (the goal, one message or one cron prompt). Unset: no limit per turn.
struct TurnBudgetSpec {
  std::optional<int64_t> max_steps;
  std::optional<int64_t> max_tokens;
  std::optional<int64_t> max_tool_calls;
};

// Tokens in a rolling window of `seconds` (e.g. a day): work waits until the window allows.
struct PeriodBudgetSpec {
  int64_t seconds = 86400;
  int64_t max_tokens = 0;
};

// The lifetime totals (max_*) end the run as BudgetExhausted; a spec revision that raises
// the exhausted one wakes it. A per-turn budget ends only that turn; a period budget defers
// work. See docs/long-life.md.
struct BudgetSpec {
  int64_t max_steps = 50;
  int64_t max_tokens = 200000;
  int64_t max_tool_calls = 200;
  int64_t max_wall_clock_seconds = 3600;
  std::optional<TurnBudgetSpec> per_turn;
  std::optional<PeriodBudgetSpec> per_period;
};

// A scheduled prompt: at each time the expression matches (UTC), `prompt` is queued in the
// inbox as a message from "cron:<name>". Occurrences missed while the worker was down are
// coalesced into one.
struct CronSpec {
  std::string name;
  std::string schedule;  // 5-field cron expression
  std::string prompt;
};

// When a long-lived worker wakes up on its own. A wake-up with nothing to do (an empty inbox,
// no cron prompt due) calls no model: an idle agent spends no tokens.
struct ScheduleSpec {
  int64_t heartbeat_seconds = 0;  // 0: no heartbeat
  std::vector<CronSpec> cron;
};

// spec.storage.restoreFrom (StorageSpec::restore_from).
struct RestoreSourceSpec {
  std::string claim_name;  // a PersistentVolumeClaim holding the copy
  std::string path;        // relative to that claim's root: an archive file or a backup directory
  bool fork = false;       // true: a new agent (a new run id) from the copy; the copy stays usable
};

// Where and how the operator runs the agent: none of it changes what the agent does, so none
// of it is in SpecJson or the SpecHash (changing the image or suspending never starts a new
// run). `carapace run` ignores it.
struct StorageSpec {
  std::string size = "1Gi";            // the state volume's size (a Kubernetes quantity)
  std::string storage_class;           // "" : the cluster's default class
  std::string when_deleted = "Retain"; // persistentVolumeClaimRetentionPolicy: Retain or Delete
  std::string when_scaled = "Retain";
  // A VolumeSnapshot (snapshot.storage.k8s.io/v1) in the AgentRun's namespace: the volume is
  // created as its copy (the claim's dataSource). Only read when the claim is made.
  std::string from_snapshot;
  // spec.storage.restoreFrom: a backup directory or an export archive on another claim in the
  // AgentRun's namespace, restored into the state dir by the pod's init container before the
  // worker starts (carapace restore --skip-if-restored, so a pod started again keeps its run).
  // Unset: claim_name is empty.
  RestoreSourceSpec restore_from;
};

struct DeploymentSpec {
  bool suspend = false;                       // scale to zero, keep the volume
  std::optional<int64_t> idle_timeout_seconds;  // idle longer than this: scale to zero until the next wake-up
  std::string image;                          // the worker image; "" : the operator's default
  nlohmann::json resources;                   // a container's resources (requests/limits), as given
  StorageSpec storage;
  // spec.restartGeneration: raising it starts a fresh run (from the goal) in a new state
  // directory on the same volume; the old run stays there, readable and forkable.
  int64_t restart_generation = 0;
};

inline constexpr int64_t kDefaultContextTokens = 8192;
inline constexpr int64_t kDefaultReplyReserveTokens = 1024;

// How the context the model sees is kept inside its window (docs/context.md).
struct ContextSpec {
  // Compact when the next prompt is estimated above this share of the window.
  double compact_at_ratio = 0.8;
  // The newest messages kept word for word at a compaction, as a share of the window
  // (0.05..0.35: always less than compact_at_ratio's 0.4..0.95).
  double keep_recent_ratio = 0.3;
  // Tool results older than the kept messages and larger than this are replaced by a short
  // reference in what the model sees (the log keeps them whole).
  int64_t prune_tool_results_over_bytes = 2048;
  // Writes the summaries instead of spec.model (a cheaper one); openai or triton. Unset:
  // spec.model, with its fallbacks.
  std::optional<ModelEndpointSpec> summary_model;
};

// How much history an agent keeps on its volume (docs/context.md, "Retention"). Unset: all
// of it. Only what a checkpoint and a compaction summary cover is removed: old events,
// checkpoints and transcript messages, and the artifacts only those messages refer to; never
// memory entries, never what the current state or a waiting call needs.
struct RetentionSpec {
  std::optional<int64_t> max_age_days;  // history older than this many days
  std::optional<int64_t> max_events;    // events beyond the newest this many
};

struct AgentRunSpec {
  std::string instructions;
  std::string goal;
  ModelSpec model;
  std::optional<EmbeddingSpec> embedding;
  std::vector<ToolSpec> tools;
  BudgetSpec budget;
  std::optional<ContextSpec> context;  // unset: ContextSpec's defaults
  std::optional<RetentionSpec> retention;  // unset: keep everything
  UnknownOutcomePolicy unknown_outcome = UnknownOutcomePolicy::kAsk;
  // recovery.modelUnavailableSeconds: how long a one-shot `carapace run` waits for a model
  // service that cannot be reached before it exits resumable. The long-lived worker waits
  // for as long as it takes. Unset: 300.
  std::optional<int64_t> model_unavailable_seconds;
  Durability durability = Durability::kSync;
  std::optional<ScheduleSpec> schedule;
  DeploymentSpec deployment;  // spec.suspend, idleTimeoutSeconds, image, resources, storage
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
  // A manifest of this AgentRun with its canonical spec: what the operator hands the worker
  // (in a ConfigMap). Parsing it gives the same SpecHash, so the worker's stored run matches.
  nlohmann::json ManifestJson() const;
};

// Parses and validates an AgentRun document. Every problem is reported with its position
// and field path; `file` names the source in messages. Errors: kInvalidArgument.
Result<AgentRun> ParseAgentRun(const std::string& text, const std::string& file);
Result<AgentRun> LoadAgentRunFile(const std::string& path);

}  // namespace carapace
