// Parsing and validation of AgentRun manifests. The rules here and the CRD schema in
// crds/ must agree; each rule reports the field path the user has to fix.
#include "common/agentrun/spec.h"

#include <algorithm>
#include <cctype>
#include <regex>
#include <set>

#include "common/hash.h"
#include "common/manifest.h"
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
const std::vector<std::string> kModelBackends = {"scripted"};
const std::vector<std::string> kToolKinds = {"workspace", "http", "memory", "mcp"};
const std::vector<std::string> kEffects = {"read_only", "idempotent", "side_effecting"};

const std::regex kDnsLabel("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$");
const std::regex kToolName("^[A-Za-z_][A-Za-z0-9_-]{0,63}$");

void ParseMetadata(ObjectReader& r, ObjectMeta* meta, ManifestErrors* errs) {
  if (auto name = r.String("name", true)) {
    if (name->size() > 63 || !std::regex_match(*name, kDnsLabel)) {
      r.Error("name", "must be a DNS label: lower-case letters, digits and '-', at most 63 characters");
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
      if (!kv.second.IsScalar()) {
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

void ParseModel(ObjectReader& r, ModelSpec* model, ManifestErrors* errs) {
  if (!r.valid()) return;
  if (auto backend = r.Enum("backend", kModelBackends)) model->backend = *backend;
  else if (!r.Has("backend")) r.Error("backend", "is required");
  YAML::Node script = r.Child("script");
  if (model->backend == "scripted") {
    if (!script.IsDefined() || script.IsNull()) {
      r.Error("script", "is required for the scripted backend");
    } else if (!script.IsSequence() || script.size() == 0) {
      errs->Add(script, r.PathOf("script"), "must be a non-empty list of replies");
    } else {
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
        if (!reply.Has("text") && out.tool_calls.empty()) {
          errs->Add(script[i], path, "needs text or toolCalls");
        }
        reply.Finish();
        model->script.push_back(std::move(out));
      }
    }
  } else if (script.IsDefined() && !script.IsNull()) {
    r.Error("script", "is only valid with backend: scripted");
  }
  r.Finish();
}

// Calls fn(reader) for each item of the list at `path` that is a mapping. An absent list is
// empty; a non-list (`list_error`) and non-mapping items are reported.
template <typename Fn>
void ForEachMapping(const YAML::Node& node, const std::string& path, const char* list_error, ManifestErrors* errs,
                    Fn fn) {
  if (!node.IsDefined() || node.IsNull()) return;
  if (!node.IsSequence()) {
    errs->Add(node, path, list_error);
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

void ParseHeaders(const YAML::Node& node, const std::string& path, std::vector<HeaderSpec>* out, ManifestErrors* errs) {
  ForEachMapping(node, path, "must be a list of {name, value} or {name, valueFrom}", errs, [&](ObjectReader& r) {
    HeaderSpec h;
    if (auto name = r.String("name", true)) {
      if (!IsHttpToken(*name)) {
        r.Error("name", "must be an HTTP header name");
      } else if (IsToolManagedHeader(*name)) {
        r.Error("name", "\"" + *name + "\" is set by the tool and cannot be configured");
      }
      h.name = *name;
    }
    if (auto value = r.String("value")) h.value = *value;
    ObjectReader from(r.Child("valueFrom"), r.PathOf("valueFrom"), errs);
    if (from.valid()) {
      if (auto env = from.String("env")) h.from_env = *env;
      if (auto file = from.String("file")) h.from_file = *file;
      if (h.from_env.empty() == h.from_file.empty()) from.Error("env", "give exactly one of env or file");
      from.Finish();
    }
    if (r.Has("value") == from.valid()) r.Error("value", "give exactly one of value or valueFrom");
    r.Finish();
    out->push_back(std::move(h));
  });
}

void ParseTools(const YAML::Node& node, const std::string& path, std::vector<ToolSpec>* tools,
                ManifestErrors* errs) {
  std::set<std::string> names;
  ForEachMapping(node, path, "must be a list", errs, [&](ObjectReader& r) {
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
        if (!std::regex_match(*url, std::regex("^https?://[^/\\s]+(/\\S*)?$"))) {
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

}  // namespace

static Result<AgentRun> ParseAgentRunNode(const YAML::Node& root, const std::string& file) {
  ManifestErrors errs(file);
  AgentRun run;
  ObjectReader top(root, "", &errs);
  if (!top.valid()) {
    if (!root.IsMap()) errs.Add(root, "", "an AgentRun must be a mapping");
    return errs.ToStatus();
  }
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
      if (auto backend = embedding.Enum("backend", kModelBackends)) e.backend = *backend;
      else if (!embedding.Has("backend")) embedding.Error("backend", "is required");
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
    budget.Finish();

    ObjectReader recovery(spec.Child("recovery"), "spec.recovery", &errs);
    if (auto v = recovery.Enum("unknownOutcome", {"ask", "tell_model", "fail"})) {
      s.unknown_outcome = *v == "ask"          ? UnknownOutcomePolicy::kAsk
                          : *v == "tell_model" ? UnknownOutcomePolicy::kTellModel
                                               : UnknownOutcomePolicy::kFail;
    }
    recovery.Finish();
    if (auto v = spec.Enum("durability", {"sync", "batch"})) {
      s.durability = *v == "sync" ? Durability::kSync : Durability::kBatch;
    }
    spec.Finish();
  }
  top.Finish();
  if (!errs.empty()) return errs.ToStatus();
  return run;
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
    if (!h.from_env.empty()) hj["valueFrom"] = {{"env", h.from_env}};
    else if (!h.from_file.empty()) hj["valueFrom"] = {{"file", h.from_file}};
    else hj["value"] = h.value;
    out.push_back(hj);
  }
  return out;
}

nlohmann::json AgentRun::SpecJson() const {
  nlohmann::json j;
  j["instructions"] = spec.instructions;
  j["goal"] = spec.goal;
  nlohmann::json model = {{"backend", spec.model.backend}};
  nlohmann::json script = nlohmann::json::array();
  for (const auto& reply : spec.model.script) {
    nlohmann::json r = {{"text", reply.text}, {"toolCalls", nlohmann::json::array()}};
    for (const auto& c : reply.tool_calls) {
      r["toolCalls"].push_back({{"name", c.name}, {"arguments", c.arguments}});
    }
    script.push_back(r);
  }
  model["script"] = script;
  j["model"] = model;
  if (spec.embedding) j["embedding"] = {{"backend", spec.embedding->backend}, {"dimensions", spec.embedding->dimensions}};
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
  j["recovery"] = {{"unknownOutcome", UnknownOutcomePolicyName(spec.unknown_outcome)}};
  j["durability"] = DurabilityName(spec.durability);
  return j;
}

std::string AgentRun::SpecHash() const { return Sha256Hex(SpecJson().dump()); }

}  // namespace carapace
