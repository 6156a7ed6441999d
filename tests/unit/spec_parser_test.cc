// The AgentRun parser: every example parses; every rejected input names the field path and
// position the user has to fix.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <filesystem>

#include "common/agentrun/spec.h"

using namespace carapace;
using Catch::Matchers::ContainsSubstring;

namespace {

const std::string kValid = R"(apiVersion: carapace.dev/v1alpha1
kind: AgentRun
metadata:
  name: demo
spec:
  goal: "do it"
  model:
    backend: scripted
    script:
      - text: done
)";

// Replaces the spec's tail with `extra` fields (indented under spec).
std::string WithSpec(const std::string& extra) { return kValid + extra; }

std::string ErrorOf(const std::string& yaml) {
  auto r = ParseAgentRun(yaml, "test.yaml");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kInvalidArgument);
  return r.status().message();
}

}  // namespace

TEST_CASE("every manifest in examples/ parses", "[spec]") {
  int count = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(std::string(CARAPACE_SOURCE_DIR) + "/examples")) {
    if (entry.path().extension() != ".yaml") continue;
    auto r = LoadAgentRunFile(entry.path().string());
    INFO(entry.path().string() << ": " << r.status().ToString());
    CHECK(r.ok());
    ++count;
  }
  CHECK(count >= 1);
}

TEST_CASE("a minimal manifest gets the documented defaults", "[spec]") {
  auto r = ParseAgentRun(kValid, "test.yaml");
  REQUIRE(r.ok());
  CHECK(r->metadata.name == "demo");
  CHECK(r->metadata.ns == "default");
  CHECK(r->spec.budget.max_steps == 50);
  CHECK(r->spec.budget.max_tokens == 200000);
  CHECK(r->spec.budget.max_tool_calls == 200);
  CHECK(r->spec.budget.max_wall_clock_seconds == 3600);
  CHECK(r->spec.unknown_outcome == UnknownOutcomePolicy::kAsk);
  CHECK(r->spec.durability == Durability::kSync);
  REQUIRE(r->spec.model.script.size() == 1);
  CHECK(r->spec.model.script[0].text == "done");
}

TEST_CASE("the issue's example spec parses with every field", "[spec]") {
  auto r = ParseAgentRun(WithSpec(R"(  instructions: "standing orders"
  tools:
    - {name: notes, kind: workspace}
    - {name: api, kind: http, effect: side_effecting, requireApproval: true, http: {allowedHosts: ["127.0.0.1:8080"], timeoutSeconds: 5, maxResponseBytes: 1000}}
  budget: {maxSteps: 7, maxTokens: 100, maxToolCalls: 3, maxWallClockSeconds: 60}
  recovery: {unknownOutcome: tell_model}
  durability: batch
)"),
                          "t.yaml");
  REQUIRE(r.ok());
  REQUIRE(r->spec.tools.size() == 2);
  CHECK(r->spec.tools[1].effect == Effect::kSideEffecting);
  CHECK(r->spec.tools[1].require_approval);
  CHECK(r->spec.tools[1].http.allowed_hosts == std::vector<std::string>{"127.0.0.1:8080"});
  CHECK(r->spec.tools[1].http.timeout_seconds == 5);
  CHECK(r->spec.budget.max_steps == 7);
  CHECK(r->spec.unknown_outcome == UnknownOutcomePolicy::kTellModel);
  CHECK(r->spec.durability == Durability::kBatch);
  CHECK(r->spec.instructions == "standing orders");
}

TEST_CASE("tool call arguments keep their YAML types as JSON", "[spec]") {
  auto r = ParseAgentRun(R"(apiVersion: carapace.dev/v1alpha1
kind: AgentRun
metadata: {name: typed}
spec:
  goal: g
  model:
    backend: scripted
    script:
      - toolCalls: [{name: t, arguments: {"n": 3, f: 1.5, b: true, s: "3", z: null, list: [1, two]}}]
)",
                          "t.yaml");
  REQUIRE(r.ok());
  const auto& a = r->spec.model.script[0].tool_calls[0].arguments;
  CHECK(a["n"] == 3);
  CHECK(a["f"] == 1.5);
  CHECK(a["b"] == true);
  CHECK(a["s"] == "3");
  CHECK(a["z"].is_null());
  CHECK(a["list"][1] == "two");
}

TEST_CASE("plain scalars that kubectl's YAML 1.1 reads otherwise are refused, keys included", "[spec]") {
  // sigs.k8s.io/yaml (go-yaml v2) would send the API server true, 8, 1000, 31 or the key "true".
  CHECK_THAT(ErrorOf(WithSpec("  instructions: yes\n")),
             ContainsSubstring("spec.instructions: \"yes\" is read as the boolean true by kubectl (YAML 1.1)"));
  CHECK_THAT(ErrorOf(WithSpec("  instructions: yes\n")), ContainsSubstring("quote it"));
  CHECK_THAT(ErrorOf(WithSpec("  budget: {maxSteps: 010}\n")),
             ContainsSubstring("spec.budget.maxSteps: \"010\" is read as the number 8 by kubectl"));
  for (const char* arg : {"Off", "N", "1_000", "0x1F", "0o17", "0b101", "+.inf", ".NaN"}) {
    INFO(arg);
    CHECK_THAT(ErrorOf(WithSpec(std::string("  tools: [{name: t, kind: workspace, effect: ") + arg + "}]\n")),
               ContainsSubstring("spec.tools[0].effect: \"" + std::string(arg) + "\" is read as"));
  }
  CHECK_THAT(ErrorOf(R"(apiVersion: carapace.dev/v1alpha1
kind: AgentRun
metadata: {name: k}
spec:
  goal: g
  model: {backend: scripted, script: [{toolCalls: [{name: click, arguments: {x: 1, y: 2}}]}]}
)"),
             ContainsSubstring("spec.model.script[0].toolCalls[0].arguments.y: the key \"y\" is read as the boolean true"));
  // Read alike by both: quoted words, 1:30 (go-yaml has no base 60), dates, exponents, 08.
  auto same = ParseAgentRun(R"(apiVersion: carapace.dev/v1alpha1
kind: AgentRun
metadata: {name: same, labels: {enabled: "yes"}}
spec:
  goal: "no"
  model:
    backend: scripted
    script:
      - toolCalls: [{name: t, arguments: {"y": 1, true: 2, at: 1:30, day: 2024-01-01, big: 1e3, pad: 08, on_time: ok}}]
)",
                            "same.yaml");
  REQUIRE(same.ok());
  const auto& a = same->spec.model.script[0].tool_calls[0].arguments;
  CHECK(a["y"] == 1);
  CHECK(a["true"] == 2);
  CHECK(a["at"] == "1:30");
  CHECK(a["pad"] == 8);
  CHECK(same->spec.goal == "no");
  // JSON quotes its strings: nothing to misread.
  CHECK(ParseAgentRun(R"({"apiVersion":"carapace.dev/v1alpha1","kind":"AgentRun","metadata":{"name":"j"},
      "spec":{"goal":"yes","model":{"backend":"scripted","script":[{"text":"on"}]}}})",
                      "run.json")
            .ok());
}

TEST_CASE("an integer field takes an integral float, as the API server does", "[spec]") {
  auto r = ParseAgentRun(WithSpec("  budget: {maxSteps: 50.0, maxTokens: 2e5}\n  resources: {limits: {cpu: 2.0}}\n"),
                         "f.yaml");
  REQUIRE(r.ok());
  CHECK(r->spec.budget.max_steps == 50);
  CHECK(r->spec.budget.max_tokens == 200000);
  CHECK(r->spec.deployment.resources["limits"]["cpu"] == 2);
  CHECK(r->SpecHash() == ParseAgentRun(WithSpec("  budget: {maxSteps: 50, maxTokens: 200000}\n"), "i.yaml")->SpecHash());
  CHECK_THAT(ErrorOf(WithSpec("  budget: {maxSteps: 1.5}\n")), ContainsSubstring("spec.budget.maxSteps: must be an integer"));
  CHECK_THAT(ErrorOf(WithSpec("  budget: {maxSteps: 1e7}\n")), ContainsSubstring("spec.budget.maxSteps: must be <= 1000000"));
  CHECK_THAT(ErrorOf(WithSpec("  resources: {requests: {cpu: -1}}\n")), ContainsSubstring("spec.resources"));
  CHECK_THAT(ErrorOf(WithSpec("  resources: {requests: {cpu: \"-500m\"}}\n")), ContainsSubstring("spec.resources"));
}

TEST_CASE("rejected manifests name the field, its position and the rule", "[spec]") {
  struct Case {
    std::string yaml;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {WithSpec("  budget: {maxSteps: 0}\n"), "test.yaml:11:22: spec.budget.maxSteps: must be >= 1"},
      {WithSpec("  budget: {maxTokens: lots}\n"), "spec.budget.maxTokens: must be an integer, got \"lots\""},
      {WithSpec("  budget: {maxSteps: 5, maxStep: 3}\n"), "spec.budget.maxStep: unknown field"},
      {WithSpec("  colour: blue\n"), "test.yaml:11:3: spec.colour: unknown field"},
      {WithSpec("  durability: sometimes\n"), "spec.durability: must be one of sync, batch, got \"sometimes\""},
      {WithSpec("  recovery: {unknownOutcome: retry}\n"), "spec.recovery.unknownOutcome: must be one of ask, tell_model, fail"},
      {WithSpec("  tools: [{name: a, kind: teleport}]\n"), "spec.tools[0].kind: must be one of workspace, http"},
      {WithSpec("  tools: [{kind: workspace}]\n"), "spec.tools[0].name: is required"},
      {WithSpec("  tools: [{name: a, kind: workspace}, {name: a, kind: workspace}]\n"), "spec.tools[1].name: duplicate tool name \"a\""},
      {WithSpec("  tools: [{name: finish, kind: workspace}]\n"), "spec.tools[0].name: \"finish\" is reserved"},
      {WithSpec("  tools: [{name: a, kind: workspace, effect: harmless}]\n"), "spec.tools[0].effect: must be one of read_only, idempotent, side_effecting"},
      {WithSpec("  tools: [{name: a, kind: http}]\n"), "spec.tools[0].http: http.allowedHosts must list at least one host"},
      {WithSpec("  tools: [{name: a, kind: workspace, http: {allowedHosts: [x]}}]\n"), "spec.tools[0].http: is only valid for tools of kind http"},
      {WithSpec("  tools: [{name: a, kind: http, http: {allowedHosts: [x], timeoutSeconds: 0}}]\n"), "spec.tools[0].http.timeoutSeconds: must be >= 1"},
      {WithSpec("  tools: [{name: a, kind: http, http: {allowedHosts: [x], maxRedirects: 21}}]\n"), "spec.tools[0].http.maxRedirects: must be <= 20"},
      {WithSpec("  tools: [{name: a, kind: http, http: {allowedHosts: [x], headers: [{name: X}]}}]\n"), "spec.tools[0].http.headers[0].value: give exactly one of value or valueFrom"},
      {WithSpec("  tools: [{name: a, kind: http, http: {allowedHosts: [x], headers: [{name: X, value: v, valueFrom: {env: E}}]}}]\n"), "spec.tools[0].http.headers[0].value: give exactly one of value or valueFrom"},
      {WithSpec("  tools: [{name: a, kind: http, http: {allowedHosts: [x], headers: [{name: X, valueFrom: {env: E, file: /f}}]}}]\n"), "spec.tools[0].http.headers[0].valueFrom.env: give exactly one of env, file or secretKeyRef"},
      {WithSpec("  tools: [{name: a, kind: http, http: {allowedHosts: [x], headers: [{name: Host, value: evil}]}}]\n"), "spec.tools[0].http.headers[0].name: \"Host\" is set by the tool"},
      {WithSpec("  tools: [{name: a, kind: http, http: {allowedHosts: [x], headers: [{name: 'X Y', value: v}]}}]\n"), "spec.tools[0].http.headers[0].name: must be an HTTP header name"},
      {WithSpec("  tools: [{name: a, kind: workspace, maxOutputBytes: 10}]\n"), "spec.tools[0].maxOutputBytes: must be >= 1024"},
      {WithSpec("  tools: [{name: a, kind: mcp}]\n"), "spec.tools[0].mcp: mcp.url is required for tools of kind mcp"},
      {WithSpec("  tools: [{name: a, kind: mcp, mcp: {url: \"ftp://x/\"}}]\n"), "spec.tools[0].mcp.url: must be an http:// or https:// URL"},
      {WithSpec("  tools: [{name: a, kind: workspace, mcp: {url: \"http://x/mcp\"}}]\n"), "spec.tools[0].mcp: is only valid for tools of kind mcp"},
      {WithSpec("  tools: [{name: a, kind: mcp, mcp: {url: \"http://x/mcp\", timeoutSeconds: 0}}]\n"), "spec.tools[0].mcp.timeoutSeconds: must be >= 1"},
      {WithSpec("  tools: [{name: a, kind: http, http: {allowedHosts: [\"http://x/\"]}}]\n"), "spec.tools[0].http.allowedHosts: \"http://x/\" is not a host, host:port or \"*\""},
      {WithSpec("  tools: [{name: 'a b', kind: workspace}]\n"), "spec.tools[0].name: must match"},
      {WithSpec("  tools: {name: a}\n"), "spec.tools: must be a list"},
      {WithSpec("  tools: [{name: a, kind: workspace, requireApproval: maybe}]\n"), "spec.tools[0].requireApproval: must be true or false"},
      {R"(apiVersion: carapace.dev/v1
kind: AgentRun
metadata: {name: x}
spec: {goal: g, model: {backend: scripted, script: [{text: hi}]}})", "apiVersion: must be carapace.dev/v1alpha1, got \"carapace.dev/v1\""},
      {R"(apiVersion: carapace.dev/v1alpha1
kind: Pod
metadata: {name: x}
spec: {goal: g, model: {backend: scripted, script: [{text: hi}]}})", "kind: must be AgentRun, got \"Pod\""},
      {R"(apiVersion: carapace.dev/v1alpha1
kind: AgentRun
metadata: {name: Not_A_Name}
spec: {goal: g, model: {backend: scripted, script: [{text: hi}]}})", "metadata.name: must start with a lower-case letter"},
      {R"(apiVersion: carapace.dev/v1alpha1
kind: AgentRun
spec: {goal: g, model: {backend: scripted, script: [{text: hi}]}})", "metadata: is required"},
      {R"(apiVersion: carapace.dev/v1alpha1
kind: AgentRun
metadata: {name: x}
spec: {model: {backend: scripted, script: [{text: hi}]}})", "spec.goal: is required"},
      {R"(apiVersion: carapace.dev/v1alpha1
kind: AgentRun
metadata: {name: x}
spec: {goal: "", model: {backend: scripted, script: [{text: hi}]}})", "spec.goal: must not be empty"},
      {R"(apiVersion: carapace.dev/v1alpha1
kind: AgentRun
metadata: {name: x}
spec: {goal: g})", "spec.model: is required"},
      {R"(apiVersion: carapace.dev/v1alpha1
kind: AgentRun
metadata: {name: x}
spec: {goal: g, model: {backend: gpt}})", "spec.model.backend: must be one of scripted, openai, triton, got \"gpt\""},
      {R"(apiVersion: carapace.dev/v1alpha1
kind: AgentRun
metadata: {name: x}
spec: {goal: g, model: {backend: scripted}})", "spec.model.script: is required for the scripted backend"},
      {R"(apiVersion: carapace.dev/v1alpha1
kind: AgentRun
metadata: {name: x}
spec: {goal: g, model: {backend: scripted, script: [{}]}})", "spec.model.script[0]: needs text or toolCalls"},
      {R"(apiVersion: carapace.dev/v1alpha1
kind: AgentRun
metadata: {name: x}
spec: {goal: g, model: {backend: scripted, script: [{toolCalls: [{arguments: {}}]}]}})", "spec.model.script[0].toolCalls[0].name: is required"},
      {R"(apiVersion: carapace.dev/v1alpha1
kind: AgentRun
metadata: {name: x}
spec: {goal: g, model: {backend: scripted, script: [{toolCalls: [{name: t, arguments: [1]}]}]}})", "spec.model.script[0].toolCalls[0].arguments: must be a mapping"},
      {R"(apiVersion: carapace.dev/v1alpha1
kind: AgentRun
metadata: {name: x}
spec: {goal: g, model: {backend: scripted, script: [{toolCalls: [~]}]}})", "spec.model.script[0].toolCalls[0]: must be a mapping with name and arguments"},
      {"apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: x}\nspec: {goal: \"caf\xe9\"}\n", "test.yaml:4: not valid UTF-8"},
      {"just a string", "an AgentRun must be a mapping"},
      {"spec: [unclosed", "test.yaml:1:1: not valid YAML"},
      {"", "the document is empty"},
  };
  for (const auto& c : cases) {
    INFO(c.yaml);
    std::string err = ErrorOf(c.yaml);
    INFO("error was: " << err);
    CHECK_THAT(err, ContainsSubstring(c.expected));
  }
}

TEST_CASE("all errors of a document are reported together", "[spec]") {
  std::string err = ErrorOf(WithSpec("  budget: {maxSteps: 0, maxTokens: -1}\n  colour: red\n"));
  CHECK_THAT(err, ContainsSubstring("spec.budget.maxSteps"));
  CHECK_THAT(err, ContainsSubstring("spec.budget.maxTokens"));
  CHECK_THAT(err, ContainsSubstring("spec.colour"));
}

TEST_CASE("a missing file is reported by name", "[spec]") {
  auto r = LoadAgentRunFile("/nonexistent/agent.yaml");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kNotFound);
  CHECK_THAT(r.status().message(), ContainsSubstring("/nonexistent/agent.yaml"));
}

TEST_CASE("JSON manifests are read too", "[spec]") {
  auto r = ParseAgentRun(
      R"({"apiVersion":"carapace.dev/v1alpha1","kind":"AgentRun","metadata":{"name":"j"},
          "spec":{"goal":"g","model":{"backend":"scripted","script":[{"text":"ok"}]},"budget":{"maxSteps":3}}})",
      "run.json");
  REQUIRE(r.ok());
  CHECK(r->spec.budget.max_steps == 3);
}

TEST_CASE("the spec hash changes with the spec and not with metadata", "[spec]") {
  auto a = ParseAgentRun(kValid, "a.yaml");
  auto b = ParseAgentRun(WithSpec("  budget: {maxSteps: 9}\n"), "b.yaml");
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(a->SpecHash() != b->SpecHash());
  AgentRun c = *a;
  c.metadata.labels["team"] = "x";
  CHECK(c.SpecHash() == a->SpecHash());
}

TEST_CASE("http headers take literal values or references to secrets, and the spec keeps only references", "[spec]") {
  auto r = ParseAgentRun(WithSpec(R"(  tools:
    - name: api
      kind: http
      maxOutputBytes: 4096
      http:
        allowedHosts: ["*", "10.0.0.5:8443"]
        maxRedirects: 0
        headers:
          - {name: Authorization, valueFrom: {env: API_TOKEN}}
          - {name: X-Api-Key, valueFrom: {file: /var/run/secrets/api/key}}
          - {name: X-Team, value: blue}
)"),
                         "t.yaml");
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  const auto& t = r->spec.tools[0];
  CHECK(t.max_output_bytes == 4096);
  CHECK(t.http.max_redirects == 0);
  REQUIRE(t.http.headers.size() == 3);
  CHECK(t.http.headers[0].from_env == "API_TOKEN");
  CHECK(t.http.headers[0].secret());
  CHECK(t.http.headers[1].from_file == "/var/run/secrets/api/key");
  CHECK_FALSE(t.http.headers[2].secret());
  auto spec = r->SpecJson();
  CHECK(spec["tools"][0]["http"]["headers"][0]["valueFrom"]["env"] == "API_TOKEN");
  CHECK(spec["tools"][0]["http"]["headers"][2]["value"] == "blue");
}

TEST_CASE("the embedding backend and memory tools are part of the spec", "[spec]") {
  auto r = ParseAgentRun(WithSpec("  embedding: {backend: scripted, dimensions: 384}\n  tools: [{name: memory, kind: memory}]\n"), "t.yaml");
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  REQUIRE(r->spec.embedding.has_value());
  CHECK(r->spec.embedding->dimensions == 384);
  CHECK(r->spec.tools[0].kind == "memory");
  CHECK_THAT(ErrorOf(WithSpec("  embedding: {backend: scripted, dimensions: 4}\n")), ContainsSubstring("spec.embedding.dimensions: must be >= 8"));
  CHECK_THAT(ErrorOf(WithSpec("  embedding: {dimensions: 64}\n")), ContainsSubstring("spec.embedding.backend: is required"));
}

namespace {

std::string WithModel(const std::string& model) {
  return "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: m}\nspec:\n  goal: g\n  model:\n" + model;
}

}  // namespace

TEST_CASE("model endpoints: triton and openai settings with fallbacks, retries and a breaker", "[spec][model]") {
  auto r = ParseAgentRun(WithModel(R"(    backend: triton
    name: llama-3-8b
    endpoint: dns:///triton.models.svc:8001
    timeoutSeconds: 30
    maxTokens: 512
    temperature: 0.2
    topP: 0.9
    tls: {caFile: /etc/ca.pem}
    triton: {preset: tensorrtllm, template: llama3, stream: false, tensors: {textInput: prompt}}
    retry: {maxAttempts: 4, initialBackoffMs: 100, maxBackoffMs: 2000}
    circuitBreaker: {failureThreshold: 3, openSeconds: 10}
    fallbacks:
      - backend: openai
        name: gpt-4o-mini
        endpoint: https://api.openai.com/v1
        apiKey: {valueFrom: {env: OPENAI_API_KEY}}
)"),
                         "t.yaml");
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  const ModelSpec& m = r->spec.model;
  CHECK(m.backend == "triton");
  CHECK(m.endpoint == "dns:///triton.models.svc:8001");
  CHECK(m.timeout_seconds == 30);
  CHECK(*m.max_tokens == 512);
  CHECK(*m.temperature == 0.2);
  CHECK(m.tls.enabled);
  CHECK(m.tls.ca_file == "/etc/ca.pem");
  CHECK(m.triton.preset == "tensorrtllm");
  CHECK(m.triton.chat_template == "llama3");
  CHECK_FALSE(m.triton.stream);
  CHECK(m.triton.tensors.text_input == "prompt");
  CHECK(m.triton.tensors.text_output == "text_output");
  CHECK(m.retry.max_attempts == 4);
  CHECK(m.circuit_breaker.failure_threshold == 3);
  REQUIRE(m.fallbacks.size() == 1);
  CHECK(m.fallbacks[0].Describe() == "openai gpt-4o-mini@https://api.openai.com/v1");
  REQUIRE(m.fallbacks[0].api_key.has_value());
  CHECK(m.fallbacks[0].api_key->from_env == "OPENAI_API_KEY");
  // The spec keeps the reference to the key, never a value.
  CHECK(r->SpecJson()["model"]["fallbacks"][0]["apiKey"] == nlohmann::json{{"valueFrom", {{"env", "OPENAI_API_KEY"}}}});
}

TEST_CASE("bad model configuration is rejected at load with the field path", "[spec][model]") {
  struct Case {
    std::string model;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"    backend: gemini\n", "spec.model.backend: must be one of scripted, openai, triton, got \"gemini\""},
      {"    backend: triton\n    name: m\n", "spec.model.endpoint: is required for backend triton"},
      {"    backend: openai\n    endpoint: http://x/v1\n", "spec.model.name: is required for backend openai"},
      {"    backend: openai\n    name: m\n    endpoint: vllm:8000\n", "spec.model.endpoint: must be an http:// or https:// base URL"},
      {"    backend: openai\n    name: m\n    endpoint: \"https://user:sk-secret@api.example.com/v1\"\n", "without user@ or ?query (a key goes in apiKey)"},
      {"    backend: openai\n    name: m\n    endpoint: \"https://api.example.com/v1?api-key=sk-secret\"\n", "without user@ or ?query"},
      {"    backend: triton\n    name: m\n    endpoint: http://triton:8001\n", "spec.model.endpoint: must be a gRPC target"},
      {"    backend: openai\n    name: m\n    endpoint: http://x/v1\n    apiKey: {value: sk-123456}\n", "spec.model.apiKey.valueFrom: is required"},
      {"    backend: openai\n    name: m\n    endpoint: http://x/v1\n    temperature: 3\n", "spec.model.temperature: must be between 0 and 2"},
      {"    backend: openai\n    name: m\n    endpoint: http://x/v1\n    temperature: warm\n", "spec.model.temperature: must be a number, got \"warm\""},
      {"    backend: openai\n    name: m\n    endpoint: http://x/v1\n    triton: {preset: vllm}\n", "spec.model.triton: is only valid with backend: triton"},
      {"    backend: triton\n    name: m\n    endpoint: t:1\n    triton: {preset: onnx}\n", "spec.model.triton.preset: must be one of vllm, tensorrtllm"},
      {"    backend: triton\n    name: m\n    endpoint: t:1\n    triton: {template: llama3, templateFile: /t.yaml}\n", "spec.model.triton.templateFile: give template or templateFile, not both"},
      {"    backend: triton\n    name: m\n    endpoint: t:1\n    tls: {certFile: /c.pem}\n", "spec.model.tls.certFile: certFile and keyFile go together"},
      {"    backend: triton\n    name: m\n    endpoint: t:1\n    retry: {initialBackoffMs: 500, maxBackoffMs: 100}\n", "spec.model.retry.maxBackoffMs: must be >= initialBackoffMs"},
      {"    backend: triton\n    name: m\n    endpoint: t:1\n    fallbacks: [{backend: openai, name: m}]\n", "spec.model.fallbacks[0].endpoint: is required for backend openai"},
      {"    backend: triton\n    name: m\n    endpoint: t:1\n    fallbacks: [{backend: scripted, script: [{text: x}]}]\n", "spec.model.fallbacks[0].backend: a fallback must be openai or triton"},
      {"    backend: triton\n    name: m\n    endpoint: t:1\n    fallbacks: [{backend: openai, name: m, endpoint: 'http://x/v1', retry: {}}]\n", "spec.model.fallbacks[0].retry: unknown field"},
      {"    backend: scripted\n    name: m\n    script: [{text: x}]\n", "spec.model.name: is only valid with backend openai or triton"},
      {"    backend: triton\n    name: m\n    endpoint: t:1\n    script: [{text: x}]\n", "spec.model.script: is only valid for spec.model with backend: scripted"},
  };
  for (const auto& c : cases) {
    INFO(c.model);
    CHECK_THAT(ErrorOf(WithModel(c.model)), ContainsSubstring(c.expected));
  }
  CHECK_THAT(ErrorOf(WithModel("    backend: scripted\n    script: [{text: x}]\n") + "  embedding: {backend: triton, name: e}\n"),
             ContainsSubstring("spec.embedding.endpoint: is required for backend triton"));
}

TEST_CASE("a scripted run keeps the spec hash it had before model endpoints existed", "[spec][model]") {
  // Stored runs are bound to their spec hash; adding fields to the model spec must not
  // make an unchanged scripted manifest look changed.
  auto r = ParseAgentRun(kValid, "t.yaml");
  REQUIRE(r.ok());
  CHECK(r->SpecJson()["model"] == nlohmann::json::parse(R"({"backend":"scripted","script":[{"text":"done","toolCalls":[]}]})"));
}

TEST_CASE("the canonical manifest of every example parses back to the same spec hash", "[spec]") {
  // The operator gives the worker this form; a different hash would make the worker refuse
  // its own stored run as "a different spec".
  int count = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(std::string(CARAPACE_SOURCE_DIR) + "/examples")) {
    if (entry.path().extension() != ".yaml") continue;
    auto run = LoadAgentRunFile(entry.path().string());
    REQUIRE(run.ok());
    auto back = ParseAgentRun(run->ManifestJson().dump(), "canonical.json");
    INFO(entry.path().string() << ": " << back.status().ToString());
    REQUIRE(back.ok());
    CHECK(back->SpecHash() == run->SpecHash());
    CHECK(back->metadata.name == run->metadata.name);
    ++count;
  }
  CHECK(count >= 5);
  // And a schedule with cron prompts but no heartbeat (the canonical form says 0).
  auto cron_only = ParseAgentRun(WithSpec("  schedule: {cron: [{name: daily, schedule: \"0 9 * * *\", prompt: go}]}\n"), "c.yaml");
  REQUIRE(cron_only.ok());
  auto back = ParseAgentRun(cron_only->ManifestJson().dump(), "canonical.json");
  INFO(back.status().ToString());
  REQUIRE(back.ok());
  CHECK(back->SpecHash() == cron_only->SpecHash());
  CHECK(back->spec.schedule->heartbeat_seconds == 0);
}

TEST_CASE("deployment fields are parsed and checked, and never change the spec hash", "[spec][operator]") {
  auto plain = ParseAgentRun(kValid, "a.yaml");
  REQUIRE(plain.ok());
  auto deployed = ParseAgentRun(WithSpec(R"(  suspend: true
  idleTimeoutSeconds: 900
  image: ghcr.io/example/carapace-worker:1.2
  resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {memory: 256Mi}}
  storage: {size: 5Gi, storageClassName: fast, retention: {whenDeleted: Delete, whenScaled: Retain}}
)"), "b.yaml");
  REQUIRE(deployed.ok());
  const DeploymentSpec& d = deployed->spec.deployment;
  CHECK(d.suspend);
  CHECK(d.idle_timeout_seconds == 900);
  CHECK(d.image == "ghcr.io/example/carapace-worker:1.2");
  CHECK(d.resources["limits"]["memory"] == "256Mi");
  CHECK(d.storage.size == "5Gi");
  CHECK(d.storage.storage_class == "fast");
  CHECK(d.storage.when_deleted == "Delete");
  CHECK(deployed->SpecHash() == plain->SpecHash());
  CHECK_FALSE(plain->spec.deployment.suspend);
  CHECK(plain->spec.deployment.storage.size == "1Gi");
  CHECK(plain->spec.deployment.storage.when_deleted == "Retain");

  CHECK_THAT(ErrorOf(WithSpec("  storage: {size: lots}\n")), ContainsSubstring("spec.storage.size"));
  CHECK_THAT(ErrorOf(WithSpec("  storage: {retention: {whenDeleted: Later}}\n")),
             ContainsSubstring("spec.storage.retention.whenDeleted"));
  CHECK_THAT(ErrorOf(WithSpec("  idleTimeoutSeconds: 0\n")), ContainsSubstring("spec.idleTimeoutSeconds"));
  CHECK_THAT(ErrorOf(WithSpec("  resources: {cpu: 1}\n")), ContainsSubstring("spec.resources"));
  CHECK_THAT(ErrorOf(WithSpec("  image: \"\"\n")), ContainsSubstring("spec.image"));
  CHECK_THAT(ErrorOf(WithSpec("  suspend: maybe\n")), ContainsSubstring("spec.suspend"));
}

TEST_CASE("spec.storage.restoreFrom names a copy on a claim, inside it, and never with fromSnapshot", "[spec][restore]") {
  auto plain = ParseAgentRun(kValid, "a.yaml");
  REQUIRE(plain.ok());
  CHECK(plain->spec.deployment.storage.restore_from.claim_name.empty());
  auto restored = ParseAgentRun(WithSpec("  storage: {restoreFrom: {claimName: agent-moves, path: alice/notes.carapace}}\n"),
                                "b.yaml");
  REQUIRE(restored.ok());
  const RestoreSourceSpec& from = restored->spec.deployment.storage.restore_from;
  CHECK(from.claim_name == "agent-moves");
  CHECK(from.path == "alice/notes.carapace");
  CHECK_FALSE(from.fork);
  // Where the agent came from is how it runs, not what it does: the same spec hash.
  CHECK(restored->SpecHash() == plain->SpecHash());
  auto forked = ParseAgentRun(
      WithSpec("  storage: {restoreFrom: {claimName: agent-moves, path: backups/nightly, fork: true}}\n"), "c.yaml");
  REQUIRE(forked.ok());
  CHECK(forked->spec.deployment.storage.restore_from.fork);
  // '..' inside a name is not a '..' component.
  CHECK(ParseAgentRun(WithSpec("  storage: {restoreFrom: {claimName: m, path: a/..b/c..}}\n"), "d.yaml").ok());

  auto error = [](const std::string& restore_from) {
    return ErrorOf(WithSpec("  storage: {restoreFrom: " + restore_from + "}\n"));
  };
  CHECK_THAT(error("{claimName: Agent_Moves, path: a}"), ContainsSubstring("spec.storage.restoreFrom.claimName: must be"));
  CHECK_THAT(error("{path: a}"), ContainsSubstring("spec.storage.restoreFrom.claimName: is required"));
  CHECK_THAT(error("{claimName: m}"), ContainsSubstring("spec.storage.restoreFrom.path: is required"));
  for (const char* path : {"\"\"", "/etc/notes.carapace", "..", "../x", "a/../../x", "a/..", "./../x"}) {
    INFO(path);
    CHECK_THAT(error(std::string("{claimName: m, path: ") + path + "}"),
               ContainsSubstring("spec.storage.restoreFrom.path: must be a relative path inside the claim"));
  }
  CHECK_THAT(error("{claimName: m, path: " + std::string(1025, 'a') + "}"),
             ContainsSubstring("spec.storage.restoreFrom.path: must be at most 1024 characters"));
  CHECK(ParseAgentRun(WithSpec("  storage: {restoreFrom: {claimName: m, path: " + std::string(1024, 'a') + "}}\n"), "e.yaml")
            .ok());
  CHECK_THAT(error("{claimName: m, path: a, fork: \"yes\"}"), ContainsSubstring("spec.storage.restoreFrom.fork"));
  CHECK_THAT(error("{claimName: m, path: a, from: b}"), ContainsSubstring("spec.storage.restoreFrom.from"));
  CHECK_THAT(error("alice/notes.carapace"), ContainsSubstring("spec.storage.restoreFrom: must be a mapping"));
  CHECK_THAT(ErrorOf(WithSpec("  storage: {fromSnapshot: nightly, restoreFrom: {claimName: m, path: a}}\n")),
             ContainsSubstring("spec.storage.restoreFrom: give fromSnapshot or restoreFrom, not both"));
}

TEST_CASE("a model key can come from a Secret by reference, read from a derived variable", "[spec][operator]") {
  const std::string remote = R"(apiVersion: carapace.dev/v1alpha1
kind: AgentRun
metadata: {name: demo}
spec:
  goal: do it
  model:
    backend: openai
    name: m
    endpoint: http://vllm:8000/v1
    apiKey: {valueFrom: {secretKeyRef: {name: model-keys, key: openai.key}}}
)";
  auto run = ParseAgentRun(remote, "a.yaml");
  REQUIRE(run.ok());
  REQUIRE(run->spec.model.api_key);
  CHECK(run->spec.model.api_key->secret_name == "model-keys");
  CHECK(run->spec.model.api_key->secret_key == "openai.key");
  CHECK(run->spec.model.api_key->from_env == "CARAPACE_SECRET_MODEL_KEYS_OPENAI_KEY");
  CHECK(run->SpecJson()["model"]["apiKey"]["valueFrom"]["secretKeyRef"]["name"] == "model-keys");
  auto again = ParseAgentRun(run->ManifestJson().dump(), "manifest.json");
  REQUIRE(again.ok());
  CHECK(again->SpecHash() == run->SpecHash());

  std::string both = remote;
  both.replace(both.find("{secretKeyRef"), 13, "{env: X, secretKeyRef");
  CHECK_THAT(ErrorOf(both), ContainsSubstring("give exactly one of env, file or secretKeyRef"));
  std::string bad_name = remote;
  bad_name.replace(bad_name.find("model-keys"), 10, "Model_Keys");
  CHECK_THAT(ErrorOf(bad_name), ContainsSubstring("spec.model.apiKey.valueFrom.secretKeyRef.name"));
}

TEST_CASE("a triton spec that names no family keeps the form it had, so an upgrade does not change its hash", "[spec]") {
  auto triton_run = [](const std::string& triton) {
    return ParseAgentRun("apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: demo}\nspec:\n  goal: do it\n"
                         "  model: {backend: triton, name: m, endpoint: \"triton:8001\", triton: " + triton + "}\n",
                         "test.yaml");
  };
  auto plain = triton_run("{template: llama3}");
  REQUIRE(plain.ok());
  const nlohmann::json triton = plain->SpecJson()["model"]["triton"];
  CHECK(triton["template"] == "llama3");
  for (const char* key : {"family", "chatTemplate", "toolCallFormat", "stop", "templateVariables"}) CHECK_FALSE(triton.contains(key));
  for (const char* key : {"returnFinishReason", "finishReason", "returnNumInputTokens", "numInputTokens",
                          "returnNumOutputTokens", "numOutputTokens"}) {
    CHECK_FALSE(triton["tensors"].contains(key));
  }
  // Renamed, they are part of the spec (and of its hash).
  auto renamed = triton_run("{template: llama3, tensors: {numOutputTokens: output_lengths}}");
  REQUIRE(renamed.ok());
  CHECK(renamed->SpecJson()["model"]["triton"]["tensors"]["numOutputTokens"] == "output_lengths");
  CHECK(renamed->SpecHash() != plain->SpecHash());
  // And the new fields read back as written.
  auto family = triton_run("{family: gpt-oss, chatTemplate: {inline: \"{{ x }}\"}, stop: [\"<|return|>\"], "
                           "templateVariables: {reasoning_effort: low}}");
  REQUIRE(family.ok());
  auto back = ParseAgentRun(family->ManifestJson().dump(), "back.json");
  REQUIRE(back.ok());
  CHECK(back->spec.model.triton.family == "gpt-oss");
  CHECK(back->spec.model.triton.jinja.inline_text == "{{ x }}");
  CHECK(back->spec.model.triton.template_variables == nlohmann::json{{"reasoning_effort", "low"}});
  CHECK(back->SpecHash() == family->SpecHash());
}
