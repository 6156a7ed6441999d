// Parsing and validation of AgentRun manifests. The rules here and the CRD schema in
// crds/ must agree; each rule reports the field path the user has to fix.
#include "common/agentrun/spec.h"

#include "common/cron.h"

#include <algorithm>
#include <tuple>
#include <cctype>
#include <cmath>
#include <limits>
#include <regex>
#include <set>

#include "common/hash.h"
#include "common/manifest.h"
#include "common/yaml11.h"
#include "common/text.h"

namespace carapace {

const char* EffectName(Effect e) {
  switch (e) {
    case Effect::kReadOnly: return "read_only";
    case Effect::kIdempotent: return "idempotent";
    case Effect::kSideEffecting: return "side_effecting";
  }
  return "side_effecting";
}

std::optional<Effect> ParseEffect(const std::string& s) {
  if (s == "read_only") return Effect::kReadOnly;
  if (s == "idempotent") return Effect::kIdempotent;
  if (s == "side_effecting") return Effect::kSideEffecting;
  return std::nullopt;
}

const char* UnknownOutcomePolicyName(UnknownOutcomePolicy p) {
  switch (p) {
    case UnknownOutcomePolicy::kAsk: return "ask";
    case UnknownOutcomePolicy::kTellModel: return "tell_model";
    case UnknownOutcomePolicy::kFail: return "fail";
  }
  return "ask";
}

const char* DurabilityName(Durability d) { return d == Durability::kSync ? "sync" : "batch"; }

bool IsToolManagedHeader(std::string_view name) {
  const std::string lower = AsciiLower(name);
  return lower == "host" || lower == "idempotency-key" || lower == "content-length" || lower == "transfer-encoding" ||
         lower == "connection";
}

namespace {

// Model backends and tool kinds this build knows. The worker's registries hold the
// implementations; these lists let a manifest be validated where no registry exists
// (the operator), with the field path in the error.
const std::vector<std::string> kModelBackends = {"scripted", "openai", "triton"};
const std::vector<std::string> kToolKinds = {"workspace", "http", "memory", "mcp"};
const std::vector<std::string> kEffects = {"read_only", "idempotent", "side_effecting"};
// Variables a chat template is always given (worker/model/jinja_chat_template.cc): the spec
// may not set them.
const std::vector<std::string> kReservedTemplateVariables = {"messages", "tools", "add_generation_prompt",
                                                             "bos_token", "eos_token"};

const std::regex kDnsLabel("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$");
// An AgentRun's name (crds/generate.py, AGENTRUN_NAME): a DNS-1035 label, since it names a
// Service, of at most 52 characters, since its pods carry NAME-<10-character hash> in a label.
const std::regex kAgentRunName("^[a-z]([-a-z0-9]*[a-z0-9])?$");
constexpr size_t kMaxAgentRunName = 52;
const std::regex kDnsSubdomain("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$");
const std::regex kSecretKey("^[-._a-zA-Z0-9]+$");
// A Kubernetes quantity such as 1Gi, 500M or 10G (no fractions or exponents: storage).
const std::regex kStorageQuantity("^[1-9][0-9]*(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$");
const std::regex kToolName("^[A-Za-z_][A-Za-z0-9_-]{0,63}$");
// resource.Quantity's serialized form, as the core API's OpenAPI schema has it, without its
// leading sign: a request or limit is never negative (the API server refuses one for a pod).
const std::regex kQuantity(
    "^(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$");

// Bounds the CRD schema (crds/generate.py) sets so that the API server's estimate of its
// CEL rules' cost stays within budget; the parser keeps the same ones so both agree.
constexpr size_t kMaxTools = 128;
constexpr size_t kMaxHeaders = 64;
constexpr size_t kMaxFallbacks = 8;
constexpr size_t kMaxHeaderName = 256;
constexpr size_t kMaxUrl = 2048;
constexpr size_t kMaxPath = 4096;
constexpr size_t kMaxEnvName = 256;
constexpr size_t kMaxStorageSize = 20;
constexpr size_t kMaxRestorePath = 1024;

// Reports `key` when its value is longer than `max` characters: code points, as the API
// server's maxLength counts them, not bytes.
void CheckLength(ObjectReader& r, const char* key, const std::string& v, size_t max) {
  if (Utf8Length(v) > max) r.Error(key, "must be at most " + std::to_string(max) + " characters");
}

void ParseMetadata(ObjectReader& r, ObjectMeta* meta, ManifestErrors* errs) {
  if (auto name = r.String("name", true)) {
    if (name->size() > kMaxAgentRunName || !std::regex_match(*name, kAgentRunName)) {
      r.Error("name", "must start with a lower-case letter and hold only lower-case letters, digits and '-' "
                      "(it names a Service), at most 52 characters (its pods' labels need the rest)");
    } else {
      meta->name = *name;
    }
  }
  if (auto ns = r.String("namespace")) meta->ns = *ns;
  for (const char* key : {"labels", "annotations"}) {
    YAML::Node n = r.Child(key);
    if (!n.IsDefined() || n.IsNull()) continue;
    if (!n.IsMap()) {
      errs->Add(n, r.PathOf(key), "must be a mapping of strings");
      continue;
    }
    auto& target = std::string(key) == "labels" ? meta->labels : meta->annotations;
    for (const auto& kv : n) {
      if (!kv.second.IsScalar() || !YamlToJson(kv.second).is_string()) {
        errs->Add(kv.second, r.PathOf(key) + "." + kv.first.Scalar(), "must be a string");
        continue;
      }
      target[kv.first.Scalar()] = kv.second.Scalar();
    }
  }
  // Fields the API server sets; present when a manifest comes from `kubectl get -o yaml`.
  for (const char* key : {"uid", "resourceVersion", "generation", "creationTimestamp",
                          "managedFields", "finalizers", "ownerReferences", "generateName",
                          "deletionTimestamp", "deletionGracePeriodSeconds"}) {
    r.Ignore(key);
  }
  r.Finish();
}

void ParseToolCall(const YAML::Node& node, const std::string& path, ToolCallSpec* out,
                   ManifestErrors* errs) {
  if (!node.IsMap()) {
    errs->Add(node, path, "must be a mapping with name and arguments");
    return;
  }
  ObjectReader r(node, path, errs);
  if (auto name = r.String("name", true)) out->name = *name;
  if (auto args = r.Json("arguments")) {
    if (!args->is_object()) {
      r.Error("arguments", "must be a mapping");
    } else {
      out->arguments = *args;
    }
  }
  r.Finish();
}

// Calls fn(reader) for each item of the list at `path` that is a mapping. An absent list is
// empty; a non-list (`list_error`) and non-mapping items are reported.
template <typename Fn>
void ForEachMapping(const YAML::Node& node, const std::string& path, const char* list_error, size_t max_items,
                    ManifestErrors* errs, Fn fn) {
  if (!node.IsDefined() || node.IsNull()) return;
  if (!node.IsSequence()) {
    errs->Add(node, path, list_error);
    return;
  }
  if (node.size() > max_items) {
    errs->Add(node, path, "must have at most " + std::to_string(max_items) + " items");
    return;
  }
  for (size_t i = 0; i < node.size(); ++i) {
    std::string p = path + "[" + std::to_string(i) + "]";
    ObjectReader r(node[i], p, errs);
    if (!r.valid()) {
      if (!node[i].IsMap()) errs->Add(node[i], p, "must be a mapping");
      continue;
    }
    fn(r);
  }
}

// Reads `valueFrom: {env: NAME}`, `{file: PATH}` or `{secretKeyRef: {name, key}}` of `r`
// into h; false when absent.
bool ParseValueFrom(ObjectReader& r, HeaderSpec* h, ManifestErrors* errs) {
  ObjectReader from(r.Child("valueFrom"), r.PathOf("valueFrom"), errs);
  if (!from.valid()) return false;
  if (auto env = from.String("env")) {
    CheckLength(from, "env", *env, kMaxEnvName);
    h->from_env = *env;
  }
  if (auto file = from.String("file")) {
    CheckLength(from, "file", *file, kMaxPath);
    h->from_file = *file;
  }
  ObjectReader ref(from.Child("secretKeyRef"), from.PathOf("secretKeyRef"), errs);
  if (ref.valid()) {
    if (auto name = ref.String("name", true)) {
      if (name->size() > 253 || !std::regex_match(*name, kDnsSubdomain)) ref.Error("name", "must be a Secret name (a DNS subdomain)");
      h->secret_name = *name;
    }
    if (auto key = ref.String("key", true)) {
      if (key->empty() || key->size() > 253 || !std::regex_match(*key, kSecretKey)) {
        ref.Error("key", "must be a Secret key: letters, digits, '-', '_' or '.'");
      }
      h->secret_key = *key;
    }
    ref.Finish();
  }
  int given = !h->from_env.empty() + !h->from_file.empty() + ref.valid();
  if (given != 1) from.Error("env", "give exactly one of env, file or secretKeyRef");
  if (ref.valid() && given == 1) h->from_env = SecretEnvName(h->secret_name, h->secret_key);
  from.Finish();
  return true;
}

void ParseHeaders(const YAML::Node& node, const std::string& path, std::vector<HeaderSpec>* out, ManifestErrors* errs) {
  ForEachMapping(node, path, "must be a list of {name, value} or {name, valueFrom}", kMaxHeaders, errs,
                 [&](ObjectReader& r) {
    HeaderSpec h;
    if (auto name = r.String("name", true)) {
      if (Utf8Length(*name) > kMaxHeaderName) {
        CheckLength(r, "name", *name, kMaxHeaderName);
      } else if (!IsHttpToken(*name)) {
        r.Error("name", "must be an HTTP header name");
      } else if (IsToolManagedHeader(*name)) {
        r.Error("name", "\"" + *name + "\" is set by the tool and cannot be configured");
      }
      h.name = *name;
    }
    if (auto value = r.String("value")) h.value = *value;
    bool from = ParseValueFrom(r, &h, errs);
    if (r.Has("value") == from) r.Error("value", "give exactly one of value or valueFrom");
    r.Finish();
    out->push_back(std::move(h));
  });
}

void ParseScript(ObjectReader& r, std::vector<ScriptedReply>* out_script, ManifestErrors* errs) {
  YAML::Node script = r.Child("script");
  if (!script.IsDefined() || script.IsNull()) {
    r.Error("script", "is required for the scripted backend");
    return;
  }
  if (!script.IsSequence() || script.size() == 0) {
    errs->Add(script, r.PathOf("script"), "must be a non-empty list of replies");
    return;
  }
  for (size_t i = 0; i < script.size(); ++i) {
    std::string path = r.PathOf("script") + "[" + std::to_string(i) + "]";
    ObjectReader reply(script[i], path, errs);
    if (!reply.valid()) {
      if (script[i].IsNull() || !script[i].IsDefined()) errs->Add(script[i], path, "must be a mapping");
      continue;
    }
    ScriptedReply out;
    if (auto text = reply.String("text")) out.text = *text;
    YAML::Node calls = reply.Child("toolCalls");
    if (calls.IsDefined() && !calls.IsNull()) {
      if (!calls.IsSequence()) {
        errs->Add(calls, path + ".toolCalls", "must be a list");
      } else {
        for (size_t j = 0; j < calls.size(); ++j) {
          ToolCallSpec call;
          ParseToolCall(calls[j], path + ".toolCalls[" + std::to_string(j) + "]", &call, errs);
          out.tool_calls.push_back(std::move(call));
        }
      }
    }
    if (!reply.Has("text") && out.tool_calls.empty()) errs->Add(script[i], path, "needs text or toolCalls");
    reply.Finish();
    out_script->push_back(std::move(out));
  }
}

// A gRPC target as grpc::CreateChannel takes it: host:port, dns:///host:port, ipv4:..., unix:...
bool IsGrpcTarget(const std::string& t) {
  // [^\t\n\f\r ] is RE2's \S (the API server's); std::regex's and Python's \S differ (\v, U+00A0).
  static const std::regex kTarget(
      R"(^((dns:(//[^/]*)?/)?[A-Za-z0-9.-]+:[0-9]+|(ipv4|ipv6|unix|unix-abstract):[^\t\n\f\r ]+|\[[0-9a-fA-F:]+\]:[0-9]+)$)");
  return std::regex_match(t, kTarget);
}

void ParseTls(ObjectReader& parent, TlsOptions* tls, ManifestErrors* errs) {
  ObjectReader r(parent.Child("tls"), parent.PathOf("tls"), errs);
  if (!r.valid()) return;
  tls->enabled = true;
  if (auto v = r.Bool("enabled")) tls->enabled = *v;
  std::pair<const char*, std::string*> files[] = {
      {"caFile", &tls->ca_file}, {"certFile", &tls->cert_file}, {"keyFile", &tls->key_file}};
  for (auto& [key, target] : files) {
    if (auto v = r.String(key)) {
      CheckLength(r, key, *v, kMaxPath);
      *target = *v;
    }
  }
  if (tls->cert_file.empty() != tls->key_file.empty()) r.Error("certFile", "certFile and keyFile go together");
  r.Finish();
}

void ParseChatTemplateSource(ObjectReader& parent, ChatTemplateSource* c, ManifestErrors* errs) {
  ObjectReader r(parent.Child("chatTemplate"), parent.PathOf("chatTemplate"), errs);
  if (!r.valid()) return;
  if (auto v = r.String("file")) c->file = *v;
  ObjectReader cm(r.Child("configMap"), r.PathOf("configMap"), errs);
  if (cm.valid()) {
    if (auto v = cm.String("name", true)) {
      if (!std::regex_match(*v, kDnsSubdomain) || v->size() > 253) cm.Error("name", "must be a ConfigMap name (a DNS subdomain), got \"" + *v + "\"");
      c->config_map = *v;
    }
    if (auto v = cm.String("key", true)) {
      if (!std::regex_match(*v, kSecretKey)) cm.Error("key", "must be a ConfigMap key (letters, digits, '-', '_', '.'), got \"" + *v + "\"");
      if (*v == "." || *v == "..") cm.Error("key", "must be a ConfigMap key, got \"" + *v + "\"");
      c->key = *v;
    }
    cm.Finish();
  }
  if (auto v = r.String("inline")) {
    if (v->empty()) r.Error("inline", "must not be empty");
    c->inline_text = *v;
  }
  const int sources = r.Has("file") + r.Has("configMap") + r.Has("inline");
  if (sources != 1) parent.Error("chatTemplate", "give exactly one of file, configMap or inline");
  if (auto v = r.String("name")) c->name = *v;
  if (auto v = r.Enum("argumentsAs", {"mapping", "string"})) c->arguments_as = *v;
  r.Finish();
}

void ParseTriton(ObjectReader& parent, TritonOptions* t, ManifestErrors* errs) {
  ObjectReader r(parent.Child("triton"), parent.PathOf("triton"), errs);
  if (!r.valid()) return;
  if (auto v = r.Enum("preset", {"vllm", "tensorrtllm"})) t->preset = *v;
  if (auto v = r.Enum("template", {"chatml", "llama3"})) t->chat_template = *v;
  if (auto v = r.String("templateFile")) {
    if (r.Has("template")) r.Error("templateFile", "give template or templateFile, not both");
    t->template_file = *v;
  }
  const bool fixed_template = r.Has("template") || r.Has("templateFile");
  if (auto v = r.Enum("family", ModelFamilies())) {
    if (fixed_template) r.Error("family", "give family, template or templateFile, not more than one");
    t->family = *v;
  }
  ParseChatTemplateSource(r, &t->jinja, errs);
  if (r.Has("chatTemplate") && fixed_template) {
    r.Error("chatTemplate", "is the model's own template: give it alone or with family, not with template or templateFile");
  }
  for (const char* key : {"toolCallFormat", "stop"}) {
    if (r.Has(key) && fixed_template) r.Error(key, "goes with family or chatTemplate; a templateFile sets its own");
  }
  if (auto v = r.Enum("toolCallFormat", ToolCallFormats())) t->tool_call_format = *v;
  if (auto v = r.Json("templateVariables")) {
    if (!v->is_object()) {
      r.Error("templateVariables", "must be a mapping of variable names to values");
    } else {
      for (auto it = v->begin(); it != v->end(); ++it) {
        if (std::find(kReservedTemplateVariables.begin(), kReservedTemplateVariables.end(), it.key()) !=
            kReservedTemplateVariables.end()) {
          r.Error("templateVariables", "\"" + it.key() + "\" is set by the worker for every prompt");
        }
      }
      t->template_variables = *v;
    }
    if (fixed_template) r.Error("templateVariables", "goes with family or chatTemplate (a Jinja template)");
  }
  if (auto v = r.StringList("stop")) {
    for (const auto& stop : *v) {
      if (stop.empty()) r.Error("stop", "must not contain an empty string: it would end every reply at once");
    }
    t->stop = *v;
  }
  if (auto v = r.Bool("stream")) t->stream = *v;
  ObjectReader n(r.Child("tensors"), r.PathOf("tensors"), errs);
  if (n.valid()) {
    TritonTensorNames& names = t->tensors;
    std::pair<const char*, std::string*> fields[] = {
        {"textInput", &names.text_input},         {"textOutput", &names.text_output},
        {"stream", &names.stream},                {"excludeInputInOutput", &names.exclude_input_in_output},
        {"samplingParameters", &names.sampling_parameters}, {"maxTokens", &names.max_tokens},
        {"temperature", &names.temperature},      {"topP", &names.top_p},
        {"stopWords", &names.stop_words},
        {"embedding", &names.embedding},
        {"returnFinishReason", &names.return_finish_reason}, {"finishReason", &names.finish_reason},
        {"returnNumInputTokens", &names.return_num_input_tokens}, {"numInputTokens", &names.num_input_tokens},
        {"returnNumOutputTokens", &names.return_num_output_tokens}, {"numOutputTokens", &names.num_output_tokens}};
    for (auto& [key, target] : fields) {
      if (auto v = n.String(key)) {
        if (v->empty()) n.Error(key, "must not be empty");
        *target = *v;
      }
    }
    n.Finish();
  }
  r.Finish();
}

// The fields every model endpoint has: spec.model, each of spec.model.fallbacks, spec.embedding.
// `chat`: spec.model and its fallbacks (a scripted one needs a script); else spec.embedding.
void ParseEndpoint(ObjectReader& r, ModelEndpointSpec* m, bool chat, ManifestErrors* errs) {
  if (auto backend = r.Enum("backend", kModelBackends)) m->backend = *backend;
  else if (!r.Has("backend")) r.Error("backend", "is required");
  const bool remote = m->backend == "openai" || m->backend == "triton";
  if (auto v = r.String("name")) m->name = *v;
  if (auto v = r.String("endpoint")) {
    // No user:password@ and no ?query: the endpoint appears in logs and the event log, so
    // credentials belong in apiKey.
    static const std::regex kBaseUrl(R"(^https?://[^/\t\n\f\r @?#]+(/[^\t\n\f\r ?#]*)?$)");
    if (Utf8Length(*v) > kMaxUrl) {
      CheckLength(r, "endpoint", *v, kMaxUrl);
    } else if (m->backend == "openai" && !std::regex_match(*v, kBaseUrl)) {
      r.Error("endpoint", "must be an http:// or https:// base URL such as http://vllm:8000/v1, without user@ or "
                          "?query (a key goes in apiKey), got \"" + *v + "\"");
    } else if (m->backend == "triton" && !IsGrpcTarget(*v)) {
      r.Error("endpoint", "must be a gRPC target such as triton:8001 or dns:///triton.models:8001, got \"" + *v + "\"");
    }
    m->endpoint = *v;
  }
  if (remote) {
    if (!r.Has("name")) r.Error("name", "is required for backend " + m->backend);
    if (!r.Has("endpoint")) r.Error("endpoint", "is required for backend " + m->backend);
  }
  ObjectReader key(r.Child("apiKey"), r.PathOf("apiKey"), errs);
  if (key.valid()) {
    HeaderSpec h;
    h.name = "Authorization";
    if (!ParseValueFrom(key, &h, errs)) key.Error("valueFrom", "is required: the key comes from a Secret (env or file), never the manifest");
    key.Finish();
    m->api_key = h;
  }
  if (auto v = r.Int("timeoutSeconds", 1, 3600)) m->timeout_seconds = *v;
  if (auto v = r.Int("maxTokens", 1, 1 << 20)) m->max_tokens = *v;
  if (auto v = r.Number("temperature", 0, 2)) m->temperature = *v;
  if (auto v = r.Number("topP", 0, 1)) m->top_p = *v;
  ParseTls(r, &m->tls, errs);
  ParseTriton(r, &m->triton, errs);
  if (m->backend == "scripted" && chat) {
    ParseScript(r, &m->script, errs);
  } else if (r.Has("script")) {
    r.Child("script");
    r.Error("script", "is only valid for spec.model with backend: scripted");
  }
  if (r.Has("triton") && m->backend != "triton") r.Error("triton", "is only valid with backend: triton");
  if (!remote) {
    for (const char* k : {"name", "endpoint", "apiKey", "tls"}) {
      if (r.Has(k)) r.Error(k, "is only valid with backend openai or triton");
    }
  }
}

void ParseModel(ObjectReader& r, ModelSpec* model, ManifestErrors* errs) {
  if (!r.valid()) return;
  ParseEndpoint(r, model, true, errs);
  model->context_tokens = r.Int("contextTokens", 256, 1 << 24);
  model->reply_reserve_tokens = r.Int("replyReserveTokens", 1, 1 << 20);
  if (model->context_tokens && model->reply_reserve_tokens && *model->reply_reserve_tokens * 2 >= *model->context_tokens) {
    r.Error("replyReserveTokens", "must be less than half of contextTokens (" + std::to_string(*model->context_tokens) + ")");
  }
  ObjectReader retry(r.Child("retry"), r.PathOf("retry"), errs);
  if (auto v = retry.Int("maxAttempts", 1, 10)) model->retry.max_attempts = *v;
  if (auto v = retry.Int("initialBackoffMs", 1, 60000)) model->retry.initial_backoff_ms = *v;
  if (auto v = retry.Int("maxBackoffMs", 1, 300000)) model->retry.max_backoff_ms = *v;
  if (model->retry.max_backoff_ms < model->retry.initial_backoff_ms) {
    retry.Error("maxBackoffMs", "must be >= initialBackoffMs");
  }
  retry.Finish();
  ObjectReader breaker(r.Child("circuitBreaker"), r.PathOf("circuitBreaker"), errs);
  if (auto v = breaker.Int("failureThreshold", 1, 1000)) model->circuit_breaker.failure_threshold = *v;
  if (auto v = breaker.Int("openSeconds", 1, 3600)) model->circuit_breaker.open_seconds = *v;
  breaker.Finish();
  ForEachMapping(r.Child("fallbacks"), r.PathOf("fallbacks"), "must be a list of model endpoints", kMaxFallbacks, errs,
                 [&](ObjectReader& f) {
                   ModelEndpointSpec e;
                   ParseEndpoint(f, &e, true, errs);
                   if (e.backend == "scripted") f.Error("backend", "a fallback must be openai or triton");
                   f.Finish();
                   model->fallbacks.push_back(std::move(e));
                 });
  r.Finish();
}

void ParseTools(const YAML::Node& node, const std::string& path, std::vector<ToolSpec>* tools,
                ManifestErrors* errs) {
  std::set<std::string> names;
  ForEachMapping(node, path, "must be a list", kMaxTools, errs, [&](ObjectReader& r) {
    ToolSpec tool;
    if (auto name = r.String("name", true)) {
      if (!std::regex_match(*name, kToolName)) {
        r.Error("name", "must match [A-Za-z_][A-Za-z0-9_-]*, at most 64 characters");
      } else if (*name == "finish") {
        r.Error("name", "\"finish\" is reserved: every run has the built-in finish tool");
      } else if (!names.insert(*name).second) {
        r.Error("name", "duplicate tool name \"" + *name + "\"");
      }
      tool.name = *name;
    }
    if (auto kind = r.Enum("kind", kToolKinds)) tool.kind = *kind;
    else if (!r.Has("kind")) r.Error("kind", "is required");
    if (auto effect = r.Enum("effect", kEffects)) tool.effect = ParseEffect(*effect);
    if (auto approval = r.Bool("requireApproval")) tool.require_approval = *approval;
    if (auto cap = r.Int("maxOutputBytes", 1024, 16 << 20)) tool.max_output_bytes = *cap;
    ObjectReader http(r.Child("http"), r.PathOf("http"), errs);
    if (http.valid()) {
      if (tool.kind != "http") r.Error("http", "is only valid for tools of kind http");
      if (auto hosts = http.StringList("allowedHosts")) {
        for (const auto& h : *hosts) {
          if (h.empty() || h.find_first_of("/ ?#@") != std::string::npos) {
            http.Error("allowedHosts", "\"" + h + "\" is not a host, host:port or \"*\"");
          }
        }
        tool.http.allowed_hosts = *hosts;
      }
      if (auto t = http.Int("timeoutSeconds", 1, 3600)) tool.http.timeout_seconds = *t;
      if (auto m = http.Int("maxResponseBytes", 1, 64 << 20)) tool.http.max_response_bytes = *m;
      if (auto m = http.Int("maxRedirects", 0, 20)) tool.http.max_redirects = *m;
      ParseHeaders(http.Child("headers"), http.PathOf("headers"), &tool.http.headers, errs);
      http.Finish();
    }
    ObjectReader mcp(r.Child("mcp"), r.PathOf("mcp"), errs);
    if (mcp.valid()) {
      if (tool.kind != "mcp") r.Error("mcp", "is only valid for tools of kind mcp");
      if (auto url = mcp.String("url", true)) {
        static const std::regex kMcpUrl(R"(^https?://[^/\t\n\f\r ]+(/[^\t\n\f\r ]*)?$)");
        if (Utf8Length(*url) > kMaxUrl) {
          CheckLength(mcp, "url", *url, kMaxUrl);
        } else if (!std::regex_match(*url, kMcpUrl)) {
          mcp.Error("url", "must be an http:// or https:// URL, got \"" + *url + "\"");
        }
        tool.mcp.url = *url;
      }
      ParseHeaders(mcp.Child("headers"), mcp.PathOf("headers"), &tool.mcp.headers, errs);
      if (auto t = mcp.Int("timeoutSeconds", 1, 3600)) tool.mcp.timeout_seconds = *t;
      if (auto names = mcp.StringList("requireApprovalFor")) tool.mcp.require_approval_for = *names;
      mcp.Finish();
    } else if (tool.kind == "mcp") {
      r.Error("mcp", "mcp.url is required for tools of kind mcp");
    }
    if (tool.kind == "http" && tool.http.allowed_hosts.empty()) {
      r.Error("http", "http.allowedHosts must list at least one host the tool may call");
    }
    r.Finish();
    tools->push_back(std::move(tool));
  });
}

// Whether `path` names a place inside the claim it is read from: relative, and never
// stepping out of it through a `..` component.
bool InsideClaim(const std::string& path) {
  if (path.empty() || path[0] == '/') return false;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t end = std::min(path.find('/', start), path.size());
    if (path.compare(start, end - start, "..") == 0 && end - start == 2) return false;
    start = end + 1;
  }
  return true;
}

// spec.storage.restoreFrom: where the pod's init container restores the agent from.
void ParseRestoreFrom(ObjectReader& storage, StorageSpec* s, ManifestErrors* errs) {
  ObjectReader r(storage.Child("restoreFrom"), storage.PathOf("restoreFrom"), errs);
  if (!r.valid()) return;  // absent, or reported as not a mapping
  if (auto v = r.String("claimName", true)) {
    if (v->empty() || v->size() > 253 || !std::regex_match(*v, kDnsSubdomain)) {
      r.Error("claimName", "must be a PersistentVolumeClaim's name in the AgentRun's namespace (a DNS subdomain)");
    }
    s->restore_from.claim_name = *v;
  }
  if (auto v = r.String("path", true)) {
    if (!InsideClaim(*v)) {
      r.Error("path", "must be a relative path inside the claim (not empty, no leading '/', no '..' component), got \"" +
                          *v + "\"");
    }
    CheckLength(r, "path", *v, kMaxRestorePath);
    s->restore_from.path = *v;
  }
  if (auto v = r.Bool("fork")) s->restore_from.fork = *v;
  r.Finish();
  // A snapshot already holds a state: restoring over it would throw one of the two away.
  if (storage.Has("fromSnapshot")) {
    storage.Error("restoreFrom", "give fromSnapshot or restoreFrom, not both: a volume made from a snapshot already holds an agent");
  }
}

}  // namespace

// spec.suspend, idleTimeoutSeconds, image, resources and storage: how the operator runs the
// agent. Checked here so an invalid value is refused with its field path before anything is
// created for it.
static void ParseDeployment(ObjectReader& spec, DeploymentSpec* d, ManifestErrors* errs) {
  if (auto v = spec.Bool("suspend")) d->suspend = *v;
  if (auto v = spec.Int("idleTimeoutSeconds", 1, 365LL * 24 * 3600)) d->idle_timeout_seconds = *v;
  if (auto v = spec.Int("restartGeneration", 0, 1000000)) d->restart_generation = *v;
  if (auto v = spec.String("image")) {
    static const std::regex kImage(R"(^[^\t\n\f\r @]+(@sha256:[0-9a-f]{64})?$)");
    if (v->empty() || !std::regex_match(*v, kImage)) spec.Error("image", "must be a container image reference such as ghcr.io/org/carapace-worker:1.0");
    d->image = *v;
  }
  if (auto v = spec.Json("resources")) {
    // Null entries (requests: null, cpu: null) are dropped, as the API server prunes them
    // (its pruning follows additionalProperties into the quantity maps).
    bool valid = v->is_object();
    nlohmann::json resources = nlohmann::json::object();
    for (auto it = v->begin(); valid && it != v->end(); ++it) {
      valid = it.key() == "requests" || it.key() == "limits";
      if (!valid || it->is_null()) continue;
      valid = it->is_object();
      nlohmann::json quantities = nlohmann::json::object();
      // A quantity: a non-negative integer (an integral float counts, as for any integer
      // field) or a string of resource.Quantity's form (int-or-string in the CRD).
      for (auto q = it->begin(); valid && q != it->end(); ++q) {
        if (q->is_null()) continue;
        if (q->is_number_integer()) {
          valid = q->get<int64_t>() >= 0;
          quantities[q.key()] = *q;
        } else if (q->is_number_float()) {
          const double f = q->get<double>();
          valid = f >= 0 && f < 9.2e18 && f == std::floor(f);
          if (valid) quantities[q.key()] = static_cast<int64_t>(f);
        } else {
          valid = q->is_string() && std::regex_match(q->get<std::string>(), kQuantity);
          quantities[q.key()] = *q;
        }
      }
      resources[it.key()] = std::move(quantities);
    }
    if (!valid) spec.Error("resources", "must be {requests: {cpu: 500m, memory: 1Gi}, limits: {...}} with non-negative quantities");
    else d->resources = std::move(resources);
  }
  ObjectReader storage(spec.Child("storage"), spec.PathOf("storage"), errs);
  if (storage.valid()) {
    if (auto v = storage.String("size")) {
      if (v->size() > kMaxStorageSize || !std::regex_match(*v, kStorageQuantity)) {
        storage.Error("size", "must be a quantity such as 1Gi or 500Mi, got \"" + *v + "\"");
      }
      d->storage.size = *v;
    }
    if (auto v = storage.String("storageClassName")) {
      // A StorageClass name; "" means the cluster's default, as unset does.
      if (!v->empty() && (v->size() > 253 || !std::regex_match(*v, kDnsSubdomain))) {
        storage.Error("storageClassName", "must be a StorageClass name (a DNS subdomain)");
      }
      d->storage.storage_class = *v;
    }
    if (auto v = storage.String("fromSnapshot")) {
      if (v->empty() || v->size() > 253 || !std::regex_match(*v, kDnsSubdomain)) {
        storage.Error("fromSnapshot", "must be a VolumeSnapshot's name in the AgentRun's namespace (a DNS subdomain)");
      }
      d->storage.from_snapshot = *v;
    }
    ParseRestoreFrom(storage, &d->storage, errs);
    ObjectReader retention(storage.Child("retention"), storage.PathOf("retention"), errs);
    if (auto v = retention.Enum("whenDeleted", {"Retain", "Delete"})) d->storage.when_deleted = *v;
    if (auto v = retention.Enum("whenScaled", {"Retain", "Delete"})) d->storage.when_scaled = *v;
    retention.Finish();
    storage.Finish();
  }
}

static Result<AgentRun> ParseAgentRunNode(const YAML::Node& root, const std::string& file) {
  ManifestErrors errs(file);
  errs.set_strict_strings(true);  // as the API server types them (crds/)
  AgentRun run;
  ObjectReader top(root, "", &errs);
  if (!top.valid()) {
    if (!root.IsMap()) errs.Add(root, "", "an AgentRun must be a mapping");
    return errs.ToStatus();
  }
  // kubectl and Helm read YAML 1.1: `goal: yes` or a tool argument `y: 2` would reach the
  // cluster as something else than what this parser (YAML 1.2) and `carapace run` read.
  CheckYaml11Scalars(root, "", &errs);
  if (auto api = top.String("apiVersion", true); api && *api != kAgentRunApiVersion) {
    top.Error("apiVersion", std::string("must be ") + kAgentRunApiVersion + ", got \"" + *api + "\"");
  }
  if (auto kind = top.String("kind", true); kind && *kind != kAgentRunKind) {
    top.Error("kind", std::string("must be ") + kAgentRunKind + ", got \"" + *kind + "\"");
  }
  ObjectReader meta(top.Child("metadata"), "metadata", &errs);
  if (!meta.valid() && !top.Has("metadata")) top.Error("metadata", "is required");
  ParseMetadata(meta, &run.metadata, &errs);
  top.Ignore("status");  // written by the operator; never read as input

  ObjectReader spec(top.Child("spec"), "spec", &errs);
  if (!spec.valid()) {
    if (!top.Has("spec")) top.Error("spec", "is required");
  } else {
    AgentRunSpec& s = run.spec;
    if (auto v = spec.String("instructions")) s.instructions = *v;
    if (auto v = spec.String("goal", true)) {
      if (v->empty()) spec.Error("goal", "must not be empty");
      s.goal = *v;
    }
    ObjectReader model(spec.Child("model"), "spec.model", &errs);
    if (!spec.Has("model")) spec.Error("model", "is required");
    ParseModel(model, &s.model, &errs);
    ObjectReader embedding(spec.Child("embedding"), "spec.embedding", &errs);
    if (embedding.valid()) {
      EmbeddingSpec e;
      ParseEndpoint(embedding, &e, false, &errs);
      if (auto d = embedding.Int("dimensions", 8, 8192)) e.dimensions = *d;
      embedding.Finish();
      s.embedding = e;
    }
    ParseTools(spec.Child("tools"), "spec.tools", &s.tools, &errs);

    ObjectReader budget(spec.Child("budget"), "spec.budget", &errs);
    constexpr int64_t kMax = int64_t{1} << 40;
    if (auto v = budget.Int("maxSteps", 1, 1000000)) s.budget.max_steps = *v;
    if (auto v = budget.Int("maxTokens", 1, kMax)) s.budget.max_tokens = *v;
    if (auto v = budget.Int("maxToolCalls", 1, 10000000)) s.budget.max_tool_calls = *v;
    if (auto v = budget.Int("maxWallClockSeconds", 1, 365LL * 24 * 3600)) s.budget.max_wall_clock_seconds = *v;
    ObjectReader per_turn(budget.Child("perTurn"), budget.PathOf("perTurn"), &errs);
    if (per_turn.valid()) {
      TurnBudgetSpec t;
      t.max_steps = per_turn.Int("maxSteps", 1, 1000000);
      t.max_tokens = per_turn.Int("maxTokens", 1, kMax);
      t.max_tool_calls = per_turn.Int("maxToolCalls", 1, 10000000);
      per_turn.Finish();
      s.budget.per_turn = t;
    }
    ObjectReader per_period(budget.Child("perPeriod"), budget.PathOf("perPeriod"), &errs);
    if (per_period.valid()) {
      PeriodBudgetSpec p;
      if (auto v = per_period.Int("seconds", 60, 31LL * 24 * 3600)) p.seconds = *v;
      if (auto v = per_period.Int("maxTokens", 1, kMax)) p.max_tokens = *v;
      else if (!per_period.Has("maxTokens")) per_period.Error("maxTokens", "is required");
      per_period.Finish();
      s.budget.per_period = p;
    }
    budget.Finish();

    ObjectReader context(spec.Child("context"), "spec.context", &errs);
    if (context.valid()) {
      ContextSpec ctx;
      // Ranges that never meet: what a compaction keeps is always less than what starts one.
      if (auto v = context.Number("compactAtRatio", 0.4, 0.95)) ctx.compact_at_ratio = *v;
      if (auto v = context.Number("keepRecentRatio", 0.05, 0.35)) ctx.keep_recent_ratio = *v;
      if (auto v = context.Int("pruneToolResultsOverBytes", 256, 1 << 24)) ctx.prune_tool_results_over_bytes = *v;
      ObjectReader summary(context.Child("summaryModel"), context.PathOf("summaryModel"), &errs);
      if (summary.valid()) {
        ModelEndpointSpec e;
        ParseEndpoint(summary, &e, true, &errs);
        if (e.backend == "scripted") summary.Error("backend", "a summary model must be openai or triton");
        summary.Finish();
        ctx.summary_model = std::move(e);
      }
      context.Finish();
      s.context = ctx;
    }

    ObjectReader retention(spec.Child("retention"), "spec.retention", &errs);
    if (retention.valid()) {
      RetentionSpec r;
      r.max_age_days = retention.Int("maxAgeDays", 1, 36500);
      // At least 10,000: what `events` and fork reach never shrinks to a few turns.
      r.max_events = retention.Int("maxEvents", 10000, int64_t{1} << 40);
      if (!retention.Has("maxAgeDays") && !retention.Has("maxEvents")) {
        retention.Error("maxAgeDays", "or maxEvents is required (leave spec.retention out to keep everything)");
      }
      retention.Finish();
      s.retention = r;
    }

    ObjectReader recovery(spec.Child("recovery"), "spec.recovery", &errs);
    if (auto v = recovery.Enum("unknownOutcome", {"ask", "tell_model", "fail"})) {
      s.unknown_outcome = *v == "ask"          ? UnknownOutcomePolicy::kAsk
                          : *v == "tell_model" ? UnknownOutcomePolicy::kTellModel
                                               : UnknownOutcomePolicy::kFail;
    }
    s.model_unavailable_seconds = recovery.Int("modelUnavailableSeconds", 0, 7LL * 24 * 3600);
    recovery.Finish();
    ObjectReader schedule(spec.Child("schedule"), "spec.schedule", &errs);
    if (schedule.valid()) {
      ScheduleSpec sched;
      // 0 (what the canonical manifest says when none is set): no heartbeat.
      if (auto v = schedule.Int("heartbeatSeconds", 0, 7 * 24 * 3600)) sched.heartbeat_seconds = *v;
      std::set<std::string> cron_names;
      ForEachMapping(schedule.Child("cron"), schedule.PathOf("cron"), "must be a list of {name, schedule, prompt}",
                     std::numeric_limits<size_t>::max(), &errs,
                     [&](ObjectReader& c) {
                       CronSpec cron;
                       if (auto v = c.String("name", true)) {
                         if (v->size() > 63 || !std::regex_match(*v, kDnsLabel)) {
                           c.Error("name", "must be a DNS label: lower-case letters, digits and '-', at most 63 characters");
                         } else if (!cron_names.insert(*v).second) {
                           c.Error("name", "duplicate cron name \"" + *v + "\"");
                         }
                         cron.name = *v;
                       }
                       if (auto v = c.String("schedule", true)) {
                         auto parsed = CronSchedule::Parse(*v);
                         if (!parsed.ok()) c.Error("schedule", parsed.status().message());
                         cron.schedule = *v;
                       }
                       if (auto v = c.String("prompt", true)) {
                         if (v->empty()) c.Error("prompt", "must not be empty");
                         cron.prompt = *v;
                       }
                       c.Finish();
                       sched.cron.push_back(std::move(cron));
                     });
      schedule.Finish();
      s.schedule = sched;
    }
    if (auto v = spec.Enum("durability", {"sync", "batch"})) {
      s.durability = *v == "sync" ? Durability::kSync : Durability::kBatch;
    }
    ParseDeployment(spec, &s.deployment, &errs);
    spec.Finish();
  }
  top.Finish();
  if (!errs.empty()) return errs.ToStatus();
  return run;
}

std::string SecretEnvName(const std::string& secret_name, const std::string& key) {
  std::string out = "CARAPACE_SECRET_";
  for (const std::string* part : {&secret_name, &key}) {
    if (part == &key) out += '_';
    for (char c : *part) out += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::toupper(c)) : '_';
  }
  return out;
}

Result<AgentRun> ParseAgentRun(const std::string& text, const std::string& file) {
  CARAPACE_ASSIGN_OR_RETURN(YAML::Node root, ParseYaml(text, file));
  return ParseAgentRunNode(root, file);
}

Result<AgentRun> LoadAgentRunFile(const std::string& path) {
  CARAPACE_ASSIGN_OR_RETURN(YAML::Node root, LoadYamlFile(path));
  return ParseAgentRunNode(root, path);
}

// References to secrets, never their values: the spec is stored and hashed.
static nlohmann::json HeadersJson(const std::vector<HeaderSpec>& headers) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& h : headers) {
    nlohmann::json hj = {{"name", h.name}};
    if (!h.secret_name.empty()) hj["valueFrom"] = {{"secretKeyRef", {{"name", h.secret_name}, {"key", h.secret_key}}}};
    else if (!h.from_env.empty()) hj["valueFrom"] = {{"env", h.from_env}};
    else if (!h.from_file.empty()) hj["valueFrom"] = {{"file", h.from_file}};
    else hj["value"] = h.value;
    out.push_back(hj);
  }
  return out;
}

// Scripted endpoints keep the short form they always had, so the hash of a stored scripted
// run does not change with fields it does not use.
static nlohmann::json EndpointJson(const ModelEndpointSpec& m) {
  nlohmann::json j = {{"backend", m.backend}};
  if (m.backend == "scripted") {
    if (m.script.empty()) return j;
    nlohmann::json script = nlohmann::json::array();
    for (const auto& reply : m.script) {
      nlohmann::json r = {{"text", reply.text}, {"toolCalls", nlohmann::json::array()}};
      for (const auto& c : reply.tool_calls) r["toolCalls"].push_back({{"name", c.name}, {"arguments", c.arguments}});
      script.push_back(r);
    }
    j["script"] = script;
    return j;
  }
  j["name"] = m.name;
  j["endpoint"] = m.endpoint;
  j["timeoutSeconds"] = m.timeout_seconds;
  if (m.api_key) {
    j["apiKey"] = HeadersJson({*m.api_key})[0];
    j["apiKey"].erase("name");
  }
  if (m.max_tokens) j["maxTokens"] = *m.max_tokens;
  if (m.temperature) j["temperature"] = *m.temperature;
  if (m.top_p) j["topP"] = *m.top_p;
  if (m.tls.enabled) {
    j["tls"] = {{"enabled", true}, {"caFile", m.tls.ca_file}, {"certFile", m.tls.cert_file}, {"keyFile", m.tls.key_file}};
  }
  if (m.backend == "triton") {
    const TritonTensorNames& t = m.triton.tensors;
    j["triton"] = {{"preset", m.triton.preset},
                   {"stream", m.triton.stream},
                   {"tensors", {{"textInput", t.text_input}, {"textOutput", t.text_output}, {"stream", t.stream},
                                {"excludeInputInOutput", t.exclude_input_in_output},
                                {"samplingParameters", t.sampling_parameters}, {"maxTokens", t.max_tokens},
                                {"temperature", t.temperature}, {"topP", t.top_p}, {"stopWords", t.stop_words},
                                {"embedding", t.embedding}}}};
    // Names added later are written only when changed, so a spec that does not use them
    // keeps its hash across an upgrade (a new hash would roll every agent's pod).
    static const TritonTensorNames kDefaults;
    for (auto [key, name, fallback] :
         {std::tuple{"returnFinishReason", &t.return_finish_reason, &kDefaults.return_finish_reason},
          std::tuple{"finishReason", &t.finish_reason, &kDefaults.finish_reason},
          std::tuple{"returnNumInputTokens", &t.return_num_input_tokens, &kDefaults.return_num_input_tokens},
          std::tuple{"numInputTokens", &t.num_input_tokens, &kDefaults.num_input_tokens},
          std::tuple{"returnNumOutputTokens", &t.return_num_output_tokens, &kDefaults.return_num_output_tokens},
          std::tuple{"numOutputTokens", &t.num_output_tokens, &kDefaults.num_output_tokens}}) {
      if (*name != *fallback) j["triton"]["tensors"][key] = *name;
    }
    if (!m.triton.template_file.empty()) j["triton"]["templateFile"] = m.triton.template_file;
    else if (!m.triton.family.empty()) j["triton"]["family"] = m.triton.family;
    else if (!m.triton.jinja.given()) j["triton"]["template"] = m.triton.chat_template;
    const ChatTemplateSource& c = m.triton.jinja;
    if (c.given()) {
      nlohmann::json& ct = j["triton"]["chatTemplate"];
      if (!c.file.empty()) ct["file"] = c.file;
      if (!c.config_map.empty()) ct["configMap"] = {{"name", c.config_map}, {"key", c.key}};
      if (!c.inline_text.empty()) ct["inline"] = c.inline_text;
      if (!c.name.empty()) ct["name"] = c.name;
      if (c.arguments_as != "mapping") ct["argumentsAs"] = c.arguments_as;
    }
    if (!m.triton.tool_call_format.empty()) j["triton"]["toolCallFormat"] = m.triton.tool_call_format;
    if (m.triton.stop) j["triton"]["stop"] = *m.triton.stop;
    if (!m.triton.template_variables.empty()) j["triton"]["templateVariables"] = m.triton.template_variables;
  }
  return j;
}

nlohmann::json AgentRun::ManifestJson() const {
  return {{"apiVersion", kAgentRunApiVersion},
          {"kind", kAgentRunKind},
          {"metadata", {{"name", metadata.name}, {"namespace", metadata.ns}}},
          {"spec", SpecJson()}};
}

const std::vector<std::string>& ModelFamilies() {
  static const std::vector<std::string> kFamilies = {"chatml", "llama3", "llama3.1", "qwen2.5", "qwen3",
                                                     "qwen3-coder", "mistral", "deepseek-v3", "gpt-oss"};
  return kFamilies;
}

const std::vector<std::string>& ToolCallFormats() {
  static const std::vector<std::string> kFormats = {"hermes", "llama3", "mistral", "qwen3-coder", "deepseek", "harmony"};
  return kFormats;
}

std::string ChatTemplateMountDir(const std::string& config_map) { return "/etc/carapace/chat-templates/" + config_map; }

std::string ChatTemplateSource::Path() const {
  return config_map.empty() ? file : ChatTemplateMountDir(config_map) + "/" + key;
}

std::string ModelEndpointSpec::Describe() const {
  if (backend == "scripted") return "scripted";
  return backend + " " + name + "@" + endpoint;
}

nlohmann::json AgentRun::SpecJson() const {
  nlohmann::json j;
  j["instructions"] = spec.instructions;
  j["goal"] = spec.goal;
  nlohmann::json model = EndpointJson(spec.model);
  if (!spec.model.fallbacks.empty()) {
    model["fallbacks"] = nlohmann::json::array();
    for (const auto& f : spec.model.fallbacks) model["fallbacks"].push_back(EndpointJson(f));
  }
  // Written only when set, so a spec without them keeps its hash.
  if (spec.model.context_tokens) model["contextTokens"] = *spec.model.context_tokens;
  if (spec.model.reply_reserve_tokens) model["replyReserveTokens"] = *spec.model.reply_reserve_tokens;
  if (spec.context) {
    j["context"] = {{"compactAtRatio", spec.context->compact_at_ratio},
                    {"keepRecentRatio", spec.context->keep_recent_ratio},
                    {"pruneToolResultsOverBytes", spec.context->prune_tool_results_over_bytes}};
    if (spec.context->summary_model) j["context"]["summaryModel"] = EndpointJson(*spec.context->summary_model);
  }
  if (spec.retention) {
    j["retention"] = nlohmann::json::object();
    if (spec.retention->max_age_days) j["retention"]["maxAgeDays"] = *spec.retention->max_age_days;
    if (spec.retention->max_events) j["retention"]["maxEvents"] = *spec.retention->max_events;
  }
  if (spec.model.backend != "scripted") {
    model["retry"] = {{"maxAttempts", spec.model.retry.max_attempts},
                      {"initialBackoffMs", spec.model.retry.initial_backoff_ms},
                      {"maxBackoffMs", spec.model.retry.max_backoff_ms}};
    model["circuitBreaker"] = {{"failureThreshold", spec.model.circuit_breaker.failure_threshold},
                               {"openSeconds", spec.model.circuit_breaker.open_seconds}};
  }
  j["model"] = model;
  if (spec.embedding) {
    j["embedding"] = EndpointJson(*spec.embedding);
    j["embedding"]["dimensions"] = spec.embedding->dimensions;
  }
  nlohmann::json tools = nlohmann::json::array();
  for (const auto& t : spec.tools) {
    nlohmann::json tj = {{"name", t.name}, {"kind", t.kind}, {"requireApproval", t.require_approval},
                         {"maxOutputBytes", t.max_output_bytes}};
    if (t.effect) tj["effect"] = EffectName(*t.effect);
    if (t.kind == "http") {
      tj["http"] = {{"allowedHosts", t.http.allowed_hosts},
                    {"timeoutSeconds", t.http.timeout_seconds},
                    {"maxResponseBytes", t.http.max_response_bytes},
                    {"maxRedirects", t.http.max_redirects}};
      tj["http"]["headers"] = HeadersJson(t.http.headers);
    }
    if (t.kind == "mcp") {
      tj["mcp"] = {{"url", t.mcp.url}, {"headers", HeadersJson(t.mcp.headers)}, {"timeoutSeconds", t.mcp.timeout_seconds},
                   {"requireApprovalFor", t.mcp.require_approval_for}};
    }
    tools.push_back(tj);
  }
  j["tools"] = tools;
  j["budget"] = {{"maxSteps", spec.budget.max_steps},
                 {"maxTokens", spec.budget.max_tokens},
                 {"maxToolCalls", spec.budget.max_tool_calls},
                 {"maxWallClockSeconds", spec.budget.max_wall_clock_seconds}};
  // Limits added later are written only when set, so a spec without them keeps its hash.
  if (const auto& t = spec.budget.per_turn) {
    nlohmann::json per_turn = nlohmann::json::object();
    if (t->max_steps) per_turn["maxSteps"] = *t->max_steps;
    if (t->max_tokens) per_turn["maxTokens"] = *t->max_tokens;
    if (t->max_tool_calls) per_turn["maxToolCalls"] = *t->max_tool_calls;
    j["budget"]["perTurn"] = per_turn;
  }
  if (const auto& p = spec.budget.per_period) {
    j["budget"]["perPeriod"] = {{"seconds", p->seconds}, {"maxTokens", p->max_tokens}};
  }
  j["recovery"] = {{"unknownOutcome", UnknownOutcomePolicyName(spec.unknown_outcome)}};
  if (spec.model_unavailable_seconds) j["recovery"]["modelUnavailableSeconds"] = *spec.model_unavailable_seconds;
  j["durability"] = DurabilityName(spec.durability);
  if (spec.schedule) {
    nlohmann::json cron = nlohmann::json::array();
    for (const auto& c : spec.schedule->cron) cron.push_back({{"name", c.name}, {"schedule", c.schedule}, {"prompt", c.prompt}});
    j["schedule"] = {{"heartbeatSeconds", spec.schedule->heartbeat_seconds}, {"cron", cron}};
  }
  return j;
}

std::string AgentRun::SpecHash() const { return Sha256Hex(SpecJson().dump()); }

}  // namespace carapace
