#!/usr/bin/python3
"""Writes crds/carapace.dev_agentruns.yaml, the AgentRun CustomResourceDefinition.

The schema is kept here, not by hand in the YAML, because a structural schema cannot refer
to a shared definition: spec.model, each of its fallbacks and spec.embedding repeat the
endpoint fields, and every header repeats valueFrom. Edit this file, then run

    /usr/bin/python3 crds/generate.py          # rewrite the YAML
    /usr/bin/python3 crds/generate.py --check  # exit 1 when the YAML is stale (the tests do)

The rules mirror the C++ parser (common/agentrun/spec.cc); tests/unit/crd_schema_test.cc
proves the two accept and reject the same manifests. Standard library only.
"""

import json
import os
import re
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, "carapace.dev_agentruns.yaml")

# Shapes the parser checks with a regular expression. RE2 (the API server) and Python's re
# (the test's validator) both read them, and std::regex reads the parser's copies; keep to
# the syntax all three share. No \s, \S, \d or \w: RE2's \s is [\t\n\f\r ], Python's also
# matches \v and Unicode spaces (U+00A0), std::regex's \v; so whitespace is spelled out as
# SPACE (crd_validate.py --lint refuses the shorthands).
SPACE = r"\t\n\f\r "
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# An AgentRun's name names its headless Service, which must be a DNS-1035 label (a leading
# letter: k8s.io/apimachinery/pkg/util/validation, IsDNS1035Label), and its StatefulSet,
# whose pods carry "controller-revision-hash: NAME-<10 characters>" in a 63-character label.
AGENTRUN_NAME = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
AGENTRUN_NAME_MAX = 52
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"
HTTP_TOKEN = r"^[-!#$%&'*+.^_`|~0-9A-Za-z]+$"
TOOL_NAME = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
OPENAI_BASE_URL = rf"^https?://[^/{SPACE}@?#]+(/[^{SPACE}?#]*)?$"
GRPC_TARGET = (rf"^((dns:(//[^/]*)?/)?[A-Za-z0-9.-]+:[0-9]+|(ipv4|ipv6|unix|unix-abstract):[^{SPACE}]+"
               r"|\[[0-9a-fA-F:]+\]:[0-9]+)$")
MCP_URL = rf"^https?://[^/{SPACE}]+(/[^{SPACE}]*)?$"
IMAGE = rf"^[^{SPACE}@]+(@sha256:[0-9a-f]{{64}})?$"
STORAGE_QUANTITY = r"^[1-9][0-9]*(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"
# resource.Quantity's serialized form (as the core API's OpenAPI has it) without the leading
# sign: requests and limits are never negative.
QUANTITY = r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
ALLOWED_HOST = r"^[^/ ?#@]+$"
TOOL_MANAGED_HEADERS = ["host", "idempotency-key", "content-length", "transfer-encoding", "connection"]

# Limits that keep the estimated cost of the CEL rules inside the API server's budget: a
# rule on a list item runs once per item, so those lists and the strings the rules read
# are bounded. The parser enforces the same numbers (spec.cc, kMax*).
MAX_TOOLS = 128
MAX_HEADERS = 64
MAX_FALLBACKS = 8
MAX_HEADER_NAME = 256
MAX_URL = 2048
MAX_PATH = 4096
# The model families and tool-call formats the worker knows (common/agentrun/spec.cc
# ModelFamilies and ToolCallFormats; a test checks they agree).
MODEL_FAMILIES = ["chatml", "llama3", "llama3.1", "qwen2.5", "qwen3", "qwen3-coder", "mistral", "deepseek-v3",
                  "gpt-oss"]
TOOL_CALL_FORMATS = ["hermes", "llama3", "mistral", "qwen3-coder", "deepseek", "harmony"]
MAX_ENV_NAME = 256
MAX_STORAGE_SIZE = 20


def cron_pattern():
    """A 5-field cron expression, each field's numbers and names in range (common/cron.cc).

    Numbers are at most 3 digits (leading zeros allowed). What a pattern cannot see, a range
    that goes backwards (5-1), is left to the parser; tests/manifests/parser-only/ shows it."""
    minute = r"(0{0,2}[0-9]|0?[1-5][0-9])"
    hour = r"(0{0,2}[0-9]|0?1[0-9]|0?2[0-3])"
    day = r"(0{0,2}[1-9]|0?[12][0-9]|0?3[01])"
    month = r"(0{0,2}[1-9]|0?1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))"
    weekday = r"(0{0,2}[0-7]|(?i:sun|mon|tue|wed|thu|fri|sat))"
    step = r"(/(0{0,2}[1-9]|0?[1-9][0-9]|[1-9][0-9][0-9]))?"

    def field(n):
        item = r"(\*|" + n + "(-" + n + ")?)" + step
        return item + "(," + item + ")*"

    fields = [field(n) for n in (minute, hour, day, month, weekday)]
    return "^ *" + " +".join(fields) + " *$"


# ---------------------------------------------------------------------------------------
# Schema builders. Every property gets a description: `kubectl explain` shows it.


def string(desc, **kw):
    return {"type": "string", "description": desc, **kw}


def integer(desc, minimum, maximum, default=None):
    s = {"type": "integer", "description": desc, "minimum": minimum, "maximum": maximum}
    if default is not None:
        s["default"] = default
    return s


def number(desc, minimum, maximum):
    return {"type": "number", "description": desc, "minimum": minimum, "maximum": maximum}


def boolean(desc, default=None):
    s = {"type": "boolean", "description": desc}
    if default is not None:
        s["default"] = default
    return s


def obj(desc, properties, required=None, rules=None, default=None, **kw):
    s = {"type": "object", "description": desc}
    if default is not None:
        s["default"] = default
    if required:
        s["required"] = required
    s.update(kw)
    s["properties"] = properties
    if rules:
        s["x-kubernetes-validations"] = rules
    return s


def array(desc, items, **kw):
    return {"type": "array", "description": desc, **kw, "items": items}


def rule(expr, message, field_path=None):
    r = {"rule": expr, "message": message}
    if field_path:
        r["fieldPath"] = field_path
    return r


def value_from(what):
    return obj(
        f"Where {what} comes from: exactly one of env, file or secretKeyRef. The value is a "
        "secret: it is redacted from the event log, the transcript and the logs, and the spec "
        "stores only this reference.",
        {
            "env": string("An environment variable of the worker holding the value.",
                          maxLength=MAX_ENV_NAME),
            "file": string("A file holding the value (a trailing newline is dropped), e.g. a "
                           "mounted Secret.", maxLength=MAX_PATH),
            "secretKeyRef": obj(
                "A key of a Kubernetes Secret in the AgentRun's namespace. The operator passes it "
                "to the worker as the environment variable CARAPACE_SECRET_<NAME>_<KEY> "
                "(upper-cased, other characters as _), which a local `carapace run` reads too.",
                {
                    "name": string("The Secret's name.", maxLength=253, pattern=DNS_SUBDOMAIN),
                    "key": string("The key within the Secret.", minLength=1, maxLength=253,
                                  pattern=SECRET_KEY),
                },
                required=["name", "key"]),
        },
        rules=[rule("(has(self.env) && self.env != '' ? 1 : 0) + (has(self.file) && self.file != '' ? 1 : 0)"
                    " + (has(self.secretKeyRef) ? 1 : 0) == 1",
                    "give exactly one of env, file or secretKeyRef", ".env")])


def headers(what):
    return array(
        f"Headers {what} adds to every request: a literal value, or a secret through valueFrom.",
        obj("One header: its name and exactly one of value or valueFrom.",
            {
                "name": string("The header's name (an HTTP token). Host, Idempotency-Key, "
                               "Content-Length, Transfer-Encoding and Connection are set by the "
                               "tool and cannot be given.", maxLength=MAX_HEADER_NAME,
                               pattern=HTTP_TOKEN),
                "value": string("A literal value, stored in the spec as written."),
                "valueFrom": value_from("the header's value"),
            },
            required=["name"],
            rules=[
                rule("has(self.value) != has(self.valueFrom)", "give exactly one of value or valueFrom",
                     ".value"),
                rule("!(self.name.lowerAscii() in " + json.dumps(TOOL_MANAGED_HEADERS).replace('"', "'") + ")",
                     "this header is set by the tool and cannot be configured", ".name"),
            ]),
        maxItems=MAX_HEADERS)


def tool_call():
    return obj("One tool call of a scripted reply.", {
        "name": string("The tool to call: a tool of spec.tools, a tool an MCP server lists, or "
                       "the built-in finish."),
        "arguments": {
            "type": "object",
            "description": "The call's arguments, any mapping; what the tool's schema asks for.",
            "x-kubernetes-preserve-unknown-fields": True,
        },
    }, required=["name"])


def script():
    return array(
        "The scripted model's replies, one per step, in order (demos, tests, replay). Required "
        "for the scripted backend; a reply with no tool calls ends the run with its text.",
        {
            "type": "object",
            "description": "One reply: text, tool calls, or both.",
            "properties": {
                "text": string("The reply's text."),
                "toolCalls": array("The tool calls of the reply, run in order.", tool_call()),
            },
            # Not a CEL rule: a script may be long, and a rule per reply would count against
            # the API server's cost budget once per item.
            "anyOf": [
                {"required": ["text"]},
                {"required": ["toolCalls"], "properties": {"toolCalls": {"minItems": 1}}},
            ],
        },
        minItems=1)


def tls():
    return obj(
        "TLS to the model service. For triton it is on when enabled (a dns:/// target has no "
        "scheme to say so); for openai an https:// endpoint turns it on. Without caFile the "
        "system roots are trusted. Only for backend openai or triton.",
        {
            "enabled": boolean("Use TLS (triton). Defaults to true once tls is given.", default=True),
            "caFile": string("A PEM file of the roots to trust instead of the system's.",
                             maxLength=MAX_PATH),
            "certFile": string("A client certificate (mutual TLS); goes with keyFile.", maxLength=MAX_PATH),
            "keyFile": string("The client certificate's private key; goes with certFile.",
                              maxLength=MAX_PATH),
        },
        rules=[rule("(has(self.certFile) && self.certFile != '') == (has(self.keyFile) && self.keyFile != '')",
                    "certFile and keyFile go together", ".certFile")])


def triton():
    tensor_names = [
        ("textInput", "text_input", "BYTES: the rendered prompt"),
        ("textOutput", "text_output", "BYTES: the generated text"),
        ("stream", "stream", "BOOL: stream the reply"),
        ("excludeInputInOutput", "exclude_input_in_output", "BOOL: leave the prompt out of the output"),
        ("samplingParameters", "sampling_parameters", "BYTES: sampling parameters as JSON (vllm preset)"),
        ("maxTokens", "max_tokens", "INT32: the reply's token limit (tensorrtllm preset)"),
        ("temperature", "temperature", "FP32: temperature (tensorrtllm preset)"),
        ("topP", "top_p", "FP32: top-p (tensorrtllm preset)"),
        ("stopWords", "stop_words", "BYTES: the template's stop words (tensorrtllm preset)"),
        ("embedding", "embedding", "FP32: the output of an embedding model"),
        ("returnFinishReason", "return_finish_reason",
         "BOOL: asks for the finish reason, sent when the model declares it (vLLM backend)"),
        ("finishReason", "finish_reason", "BYTES: the finish reason, read when the server sends it"),
        ("returnNumInputTokens", "return_num_input_tokens",
         "BOOL: asks for the prompt's token count, sent when the model declares it"),
        ("numInputTokens", "num_input_tokens", "UINT32: the prompt's token count"),
        ("returnNumOutputTokens", "return_num_output_tokens",
         "BOOL: asks for the reply's token count, sent when the model declares it"),
        ("numOutputTokens", "num_output_tokens",
         "UINT32: each response's token count (a TensorRT-LLM output length can be named here)"),
    ]
    tensors = {k: string(f"Tensor name for {what}. Default {d}.", minLength=1, default=d)
               for k, d, what in tensor_names}
    return obj(
        "Triton Inference Server / KServe v2 settings. Only for backend triton.",
        {
            "preset": string("How sampling parameters are sent: vllm (one JSON string tensor, "
                             "Triton's vLLM backend) or tensorrtllm (separate tensors, the "
                             "TensorRT-LLM ensemble).", enum=["vllm", "tensorrtllm"], default="vllm"),
            "template": string("A built-in chat template: chatml (Qwen, Hermes and many "
                               "fine-tunes) or llama3. Unset with no templateFile: chatml. Give "
                               "template or templateFile, not both.", enum=["chatml", "llama3"]),
            "templateFile": string("A chat template file for any other model (docs/models.md), "
                                   "read when the run starts."),
            "family": string("A model family: its chat template, tool-call format, stop strings and "
                             "special-token handling in one name (docs/models.md). Not with "
                             "template or templateFile.", enum=MODEL_FAMILIES),
            "chatTemplate": obj(
                "The model's own Jinja chat template, as its authors ship it (chat_template.jinja "
                "or tokenizer_config.json): exactly one of file, configMap or inline. Replaces the "
                "family's template; loaded when the run starts, and a template the worker cannot "
                "render is refused then with its line and column.",
                {
                    "file": string("A path in the worker's file system.", maxLength=MAX_PATH),
                    "configMap": obj("A ConfigMap in the AgentRun's namespace; the operator mounts it "
                                     "read-only in the pod.",
                                     {"name": string("The ConfigMap's name.", maxLength=253),
                                      "key": string("The key holding the template.", maxLength=253)},
                                     required=["name", "key"]),
                    "inline": string("The template itself.", minLength=1, maxLength=1 << 20),
                    "name": string("Which of a tokenizer_config.json's named templates (default: "
                                   "\"default\", and \"tool_use\" when tools are offered)."),
                    "argumentsAs": string("How a tool call's arguments reach the template: mapping (as vLLM "
                                          "passes them) or string (the JSON text, for templates that "
                                          "concatenate it).", enum=["mapping", "string"], default="mapping"),
                },
                rules=[rule("has(self.file) || has(self.configMap) || has(self.inline)",
                            "give exactly one of file, configMap or inline"),
                       rule("!(has(self.file) && has(self.configMap)) && !(has(self.file) && has(self.inline)) && "
                            "!(has(self.configMap) && has(self.inline))",
                            "give exactly one of file, configMap or inline")]),
            "toolCallFormat": string("How the model writes tool calls. Default: the family's, else "
                                     "detected from chatTemplate, else hermes.", enum=TOOL_CALL_FORMATS),
            "stop": array("Generation stops at any of these strings. Default: the family's, else "
                          "chatTemplate's eos_token.", string("A stop string.", minLength=1)),
            "templateVariables": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                                  "description": "Variables a Jinja template (family or chatTemplate) gets "
                                                 "besides the conversation: enable_thinking, reasoning_effort, ..."},
            "stream": boolean("Use ModelStreamInfer (a decoupled model); false: one unary ModelInfer.",
                              default=True),
            "tensors": obj("The model's tensor names, when they are not Triton's usual ones.",
                           tensors, default={}),
        },
        rules=[rule("!(has(self.template) && has(self.templateFile))",
                    "give template or templateFile, not both", ".templateFile"),
               rule("!has(self.family) || !(has(self.template) || has(self.templateFile))",
                    "give family, template or templateFile, not more than one", ".family"),
               rule("!has(self.chatTemplate) || !(has(self.template) || has(self.templateFile))",
                    "chatTemplate goes alone or with family, not with template or templateFile", ".chatTemplate")])


def endpoint(role):
    """The fields of one model endpoint. role: "model", "fallback" or "embedding"."""
    backends = ["openai", "triton"] if role == "fallback" else ["scripted", "openai", "triton"]
    props = {
        "backend": string(
            "The model service's kind: scripted (replies from the manifest), openai (any "
            "OpenAI-compatible server: vLLM, SGLang, NIM, Ollama, llama.cpp, OpenAI) or triton "
            "(Triton Inference Server / KServe v2 over gRPC)." if role != "fallback" else
            "openai or triton: a fallback is a model service.", enum=backends),
        "name": string("The model's name at the service. Required for openai and triton."),
        "endpoint": string(
            "Where the service is. openai: a base URL such as http://vllm:8000/v1 (no user@ or "
            "?query: a key goes in apiKey); triton: a gRPC target such as triton:8001 or "
            "dns:///triton.models.svc.cluster.local:8001. Required for openai and triton.",
            maxLength=MAX_URL),
        "apiKey": obj("A key sent as a bearer token, always from a secret. Only for openai or triton.",
                      {"valueFrom": value_from("the key")}, required=["valueFrom"]),
        "timeoutSeconds": integer("Deadline of one call in seconds, a whole streamed reply "
                                  "included. Default 120.", 1, 3600, default=120),
        "maxTokens": integer("The most tokens of one reply. Unset: the service's limit.", 1, 1 << 20),
        "temperature": number("Sampling temperature, 0 to 2. Unset: the service's default.", 0, 2),
        "topP": number("Nucleus sampling, 0 to 1. Unset: the service's default.", 0, 1),
        "tls": tls(),
        "triton": triton(),
    }
    rules = []
    if role == "fallback":
        required = ["backend", "name", "endpoint"]
    else:
        required = ["backend"]
        for f in ("name", "endpoint"):
            rules.append(rule(f"self.backend == 'scripted' || has(self.{f})",
                              f"{f} is required for backend openai or triton", "." + f))
        for f in ("name", "endpoint", "apiKey", "tls"):
            rules.append(rule(f"self.backend != 'scripted' || !has(self.{f})",
                              f"{f} is only valid with backend openai or triton", "." + f))
    rules += [
        rule("self.backend != 'openai' || !has(self.endpoint) || self.endpoint.matches('"
             + OPENAI_BASE_URL.replace("\\", "\\\\") + "')",
             "must be an http:// or https:// base URL such as http://vllm:8000/v1, without user@ or "
             "?query (a key goes in apiKey)", ".endpoint"),
        rule("self.backend != 'triton' || !has(self.endpoint) || self.endpoint.matches('"
             + GRPC_TARGET.replace("\\", "\\\\") + "')",
             "must be a gRPC target such as triton:8001 or dns:///triton.models:8001", ".endpoint"),
        rule("self.backend == 'triton' || !has(self.triton)", "triton is only valid with backend: triton",
             ".triton"),
    ]
    if role == "model":
        props["script"] = script()
        rules += [
            rule("self.backend != 'scripted' || has(self.script)", "script is required for the scripted backend",
                 ".script"),
            rule("self.backend == 'scripted' || !has(self.script)",
                 "script is only valid for spec.model with backend: scripted", ".script"),
        ]
    return props, required, rules


def model():
    props, required, rules = endpoint("model")
    fprops, frequired, frules = endpoint("fallback")
    props["fallbacks"] = array(
        "Model services tried in order when the one before could not answer (unavailable, "
        "deadline, circuit open) or refused its own key or model name. A request a service "
        "found bad would be bad everywhere and does not fall over.",
        obj("One fallback: the same fields as spec.model, without script, fallbacks, retry or "
            "circuitBreaker.", fprops, required=frequired, rules=frules),
        maxItems=MAX_FALLBACKS)
    props["contextTokens"] = integer(
        "The model's context window in tokens, prompt and reply together. Unset: what the service "
        "says (vLLM's GET /v1/models max_model_len), else 8192 (docs/context.md).", 256, 1 << 24)
    props["replyReserveTokens"] = integer(
        "Tokens kept free for the reply, less than half of contextTokens. Unset: maxTokens when set, "
        "else 1024.", 1, 1 << 20)
    rules = (rules or []) + [rule("!has(self.contextTokens) || !has(self.replyReserveTokens) || "
                                  "self.replyReserveTokens + self.replyReserveTokens < self.contextTokens",
                                  "must be less than half of contextTokens", ".replyReserveTokens")]
    props["retry"] = obj(
        "Retries of one endpoint before its first token (UNAVAILABLE, RESOURCE_EXHAUSTED, HTTP "
        "429/503): exponential backoff with full jitter.",
        {
            "maxAttempts": integer("Attempts in all, the first included. Default 3.", 1, 10, default=3),
            "initialBackoffMs": integer("The first backoff in milliseconds. Default 250.", 1, 60000, default=250),
            "maxBackoffMs": integer("The longest backoff in milliseconds, at least initialBackoffMs. "
                                    "Default 5000.", 1, 300000, default=5000),
        },
        # Spelled out, not {}: the API server checks a default against the rules as it is.
        default={"maxAttempts": 3, "initialBackoffMs": 250, "maxBackoffMs": 5000},
        rules=[rule("self.maxBackoffMs >= self.initialBackoffMs", "must be >= initialBackoffMs", ".maxBackoffMs")])
    props["circuitBreaker"] = obj(
        "After failureThreshold failures in a row an endpoint is skipped for openSeconds; then "
        "one trial call decides whether it is used again.",
        {
            "failureThreshold": integer("Failures in a row that open the circuit. Default 5.", 1, 1000, default=5),
            "openSeconds": integer("Seconds the endpoint is skipped. Default 30.", 1, 3600, default=30),
        },
        default={})
    return obj("The model the agent thinks with, and how it is reached (docs/models.md).",
               props, required=required, rules=rules)


def summary_model():
    props, required, rules = endpoint("fallback")
    return obj("The model service that writes the summaries instead of spec.model (a cheaper one): "
               "openai or triton, the same fields as a fallback. Unset: spec.model and its fallbacks.",
               props, required=required, rules=rules)


def embedding():
    props, required, rules = endpoint("embedding")
    props["dimensions"] = integer("The length of the vectors. Default 768.", 8, 8192, default=768)
    return obj(
        "The backend that turns text into vectors for memory search (tools of kind memory). "
        "Unset: memory search ranks by words only. scripted gives deterministic vectors.",
        props, required=required, rules=rules)


def tools():
    http = obj(
        "Settings of a tool of kind http (GET, POST, PUT, DELETE to allowedHosts only).",
        {
            "allowedHosts": array(
                "The hosts the tool may call: host:port or host (any port), internal addresses "
                "included; \"*\" adds any host whose every address is public. At least one.",
                string("host, host:port or \"*\".", pattern=ALLOWED_HOST)),
            "timeoutSeconds": integer("Deadline of one request in seconds. Default 30.", 1, 3600, default=30),
            "maxResponseBytes": integer("The largest response body read, in bytes. Default 1048576 (1 MiB).",
                                        1, 64 << 20, default=1 << 20),
            "maxRedirects": integer("Redirects followed, each hop checked again. Default 5.", 0, 20, default=5),
            "headers": headers("the tool"),
        })
    mcp = obj(
        "Settings of a tool of kind mcp: an MCP server reached over streamable HTTP. Every tool "
        "it lists becomes a tool of the run.",
        {
            "url": string("The server's URL, http(s)://host:port/path.", maxLength=MAX_URL, pattern=MCP_URL),
            "headers": headers("the client"),
            "timeoutSeconds": integer("Deadline of one request in seconds. Default 30.", 1, 3600, default=30),
            "requireApprovalFor": array("Names of the server's tools whose calls wait for a person's approval.",
                                        string("A tool name as the server lists it.")),
        },
        required=["url"])
    tool = obj(
        "One tool.",
        {
            "name": string("The tool's name as the model sees it, unique in the run; finish is "
                           "reserved for the built-in tool.", maxLength=64, pattern=TOOL_NAME),
            "kind": string("workspace (files in the run's workspace), http (requests to allowed "
                           "hosts), memory (memory_store, memory_search, memory_get, memory_forget) "
                           "or mcp (the tools of an MCP server).",
                           enum=["workspace", "http", "memory", "mcp"]),
            "effect": string("What a call cut off by a crash may do when run again: read_only and "
                             "idempotent calls are repeated, a side_effecting one is not "
                             "(spec.recovery decides). Unset: the kind's default (workspace: "
                             "idempotent, http: side_effecting; mcp: from the server's hints).",
                             enum=["read_only", "idempotent", "side_effecting"]),
            "requireApproval": boolean("Every call waits for a person's approval. Default false.", default=False),
            "maxOutputBytes": integer("Output larger than this is kept whole in the run's artifacts; "
                                      "the model gets a preview. Bytes, default 65536.",
                                      1024, 16 << 20, default=64 << 10),
            "http": http,
            "mcp": mcp,
        },
        required=["name", "kind"],
        rules=[
            rule("self.name != 'finish'", "\"finish\" is reserved: every run has the built-in finish tool", ".name"),
            rule("self.kind == 'http' || !has(self.http)", "http is only valid for tools of kind http", ".http"),
            rule("self.kind == 'mcp' || !has(self.mcp)", "mcp is only valid for tools of kind mcp", ".mcp"),
            rule("self.kind != 'mcp' || has(self.mcp)", "mcp.url is required for tools of kind mcp", ".mcp"),
            rule("self.kind != 'http' || (has(self.http) && has(self.http.allowedHosts) && "
                 "size(self.http.allowedHosts) > 0)",
                 "http.allowedHosts must list at least one host the tool may call", ".http"),
        ])
    return array("The tools the agent may call, besides the built-in finish.", tool,
                 maxItems=MAX_TOOLS,
                 **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]})


def schedule():
    cron = obj(
        "A scheduled prompt: at each time the expression matches (UTC) the prompt is queued as a "
        "message from cron:<name>. Occurrences missed while the worker was down are coalesced into one.",
        {
            "name": string("The entry's name, a DNS label, unique in the list.", maxLength=63, pattern=DNS_LABEL),
            "schedule": string("A 5-field cron expression: minute hour day-of-month month "
                               "day-of-week; *, lists, ranges, steps, JAN and MON names, 0 or 7 "
                               "for Sunday.", pattern=cron_pattern()),
            "prompt": string("The message queued at each matching time.", minLength=1),
        },
        required=["name", "schedule", "prompt"])
    return obj(
        "When a long-lived worker (carapace-worker) wakes up on its own. A wake-up with nothing "
        "to do calls no model. With a schedule the agent stays Idle after its goal instead of "
        "showing Succeeded.",
        {
            "heartbeatSeconds": integer("Wake up every this many seconds; 0: no heartbeat. Default 0.",
                                        0, 7 * 24 * 3600, default=0),
            "cron": array("Scheduled prompts.", cron,
                          **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}),
        })


def quantities(what):
    return {
        "type": "object",
        "description": f"{what} by resource name (cpu, memory, ...): a Kubernetes quantity such as 500m or 1Gi.",
        "additionalProperties": {
            "description": "A quantity: a non-negative integer or a string such as 500m, 2 or 1Gi.",
            "x-kubernetes-int-or-string": True,
            # minimum for the integer form, pattern for the string form.
            "minimum": 0,
            "pattern": QUANTITY,
        },
    }


def storage():
    return obj(
        "The state volume (RocksDB: event log, checkpoints, artifacts, memory).",
        {
            "size": string("The volume's size, a quantity such as 1Gi or 500Mi (whole numbers). "
                           "It may grow (the claim is expanded; its storage class must allow "
                           "expansion) but never shrink. Default 1Gi.",
                           maxLength=MAX_STORAGE_SIZE, pattern=STORAGE_QUANTITY, default="1Gi",
                           **{"x-kubernetes-validations": [
                               rule("quantity(self).compareTo(quantity(oldSelf)) >= 0",
                                    "may only grow: a volume claim cannot shrink")]}),
            "storageClassName": string(
                "The volume's storage class; unset or empty: the cluster's default class. It "
                "cannot change once the AgentRun exists: the volume was made with its class.",
                maxLength=253, pattern=r"^$|" + DNS_SUBDOMAIN),
            "fromSnapshot": string(
                "A VolumeSnapshot (snapshot.storage.k8s.io/v1) in this namespace: the volume is "
                "created as its copy, and the agent in it goes on from there (docs/operations.md). "
                "Read when the volume is made; it cannot change once the AgentRun exists.",
                maxLength=253, pattern=DNS_SUBDOMAIN),
            "restoreFrom": obj(
                "A backup directory (carapace backup) or an export archive (carapace export) on "
                "another PersistentVolumeClaim in this namespace: before the worker starts, an init "
                "container restores it into the agent's state directory, and the agent goes on "
                "from there (docs/operations.md). A pod started again keeps the run it has. It "
                "cannot change once the AgentRun exists; not with fromSnapshot.",
                {
                    "claimName": string("The PersistentVolumeClaim in this namespace that holds the "
                                        "copy. It is mounted read-write: importing an archive "
                                        "records a claim file next to it, so that a second "
                                        "import is refused.",
                                        minLength=1, maxLength=253, pattern=DNS_SUBDOMAIN),
                    "path": string("The copy's path inside that claim, relative to its root: an "
                                   "export archive (a file) or a backup directory (holding "
                                   "carapace-backup.json). No leading '/' and no '..' component.",
                                   minLength=1, maxLength=1024, pattern="^[^/]",
                                   **{"x-kubernetes-validations": [
                                       rule("self != '..' && !self.startsWith('../') && "
                                            "!self.endsWith('/..') && !self.contains('/../')",
                                            "must stay inside the claim: no '..' component")]}),
                    "fork": boolean("true: a new agent (a new run id) from the copy, which may be "
                                    "used again; false: the same agent moved here, and an archive "
                                    "is refused to a second AgentRun.", default=False),
                },
                required=["claimName", "path"]),
            "retention": obj(
                "What happens to the volume (the StatefulSet's persistentVolumeClaimRetentionPolicy).",
                {
                    "whenDeleted": string("When the AgentRun is deleted: Retain (default) keeps the "
                                          "volume, Delete removes it.", enum=["Retain", "Delete"], default="Retain"),
                    "whenScaled": string("When the agent is scaled to zero (suspended, hibernating): "
                                         "Retain (default) or Delete.", enum=["Retain", "Delete"], default="Retain"),
                },
                default={}),
        },
        default={},
        # Unset and "" both mean the default class (the operator leaves an empty class out of
        # the claim), so going from one to the other changes nothing and is allowed.
        rules=[rule("(has(self.storageClassName) ? self.storageClassName : '') == "
                    "(has(oldSelf.storageClassName) ? oldSelf.storageClassName : '')",
                    "storageClassName is immutable: the volume was made with its class", ".storageClassName"),
               rule("(has(self.fromSnapshot) ? self.fromSnapshot : '') == "
                    "(has(oldSelf.fromSnapshot) ? oldSelf.fromSnapshot : '')",
                    "fromSnapshot is immutable: the volume was made from it", ".fromSnapshot"),
               # Adding it to an agent that has a state would restore over it; removing or
               # changing it would say the agent came from elsewhere than it did.
               rule("has(self.restoreFrom) == has(oldSelf.restoreFrom) && "
                    "(!has(self.restoreFrom) || self.restoreFrom == oldSelf.restoreFrom)",
                    "restoreFrom is immutable: the agent was restored from it", ".restoreFrom"),
               # A snapshot already holds an agent: restoring over it would lose one of the two.
               rule("!(has(self.fromSnapshot) && has(self.restoreFrom))",
                    "give fromSnapshot or restoreFrom, not both", ".restoreFrom")])


def spec():
    return obj(
        "What the agent is to do and how it runs. Everything but suspend, idleTimeoutSeconds, "
        "image, resources, storage and restartGeneration is the agent's spec: changing it makes a "
        "new revision of the same run (its conversation, memory, inbox and budgets used carry over). "
        "Only a raised restartGeneration starts a fresh run.",
        {
            "instructions": string("Standing orders: the system prompt."),
            "goal": string("The first task. The run works on it until it is reached or a budget ends.",
                           minLength=1),
            "model": model(),
            "embedding": embedding(),
            "tools": tools(),
            "budget": obj(
                "Limits checked before every model call (steps, tokens, wall clock) and every tool "
                "call. The max* totals are for the run's whole life: an exhausted one ends the run as "
                "BudgetExhausted, and a revision that raises it wakes the run. perTurn ends only one "
                "turn; perPeriod defers work until its window allows.",
                {
                    "maxSteps": integer("Model calls in all. Default 50.", 1, 1000000, default=50),
                    "maxTokens": integer("Tokens in and out, summed over the run. Default 200000.",
                                         1, 1 << 40, default=200000),
                    "maxToolCalls": integer("Tool calls in all. Default 200.", 1, 10000000, default=200),
                    "maxWallClockSeconds": integer(
                        "Seconds spent running, summed over every process that worked on the run "
                        "(stopped or waiting for a person does not count). Default 3600.",
                        1, 365 * 24 * 3600, default=3600),
                    "perTurn": obj(
                        "Limits for one turn (the goal, one message, one cron prompt). A spent one "
                        "ends that turn with an answer saying so; the agent goes back to Idle.",
                        {
                            "maxSteps": integer("Model calls in one turn.", 1, 1000000),
                            "maxTokens": integer("Tokens in and out in one turn.", 1, 1 << 40),
                            "maxToolCalls": integer("Tool calls in one turn.", 1, 10000000),
                        }),
                    "perPeriod": obj(
                        "Tokens in a rolling window (e.g. a day). A spent one defers work until the "
                        "window allows it again; nothing is dropped.",
                        {
                            "seconds": integer("The window's length. Default 86400.", 60, 31 * 24 * 3600,
                                               default=86400),
                            "maxTokens": integer("Tokens in and out within the window.", 1, 1 << 40),
                        },
                        required=["maxTokens"]),
                },
                default={}),
            "context": obj(
                "How what the model sees is kept inside its window (docs/context.md). Older turns are "
                "compacted into a summary before the prompt outgrows the window; the full history "
                "stays in the event log and transcript.",
                {
                    "compactAtRatio": number("Compact when the next prompt is estimated above this share "
                                             "of the window. Default 0.8.", 0.4, 0.95),
                    "keepRecentRatio": number("The newest messages kept word for word at a compaction, as a "
                                              "share of the window (always less than compactAtRatio). Default 0.3.",
                                              0.05, 0.35),
                    "pruneToolResultsOverBytes": integer(
                        "Tool results older than the kept messages and larger than this are replaced by a "
                        "short reference in what the model sees. Default 2048.", 256, 1 << 24),
                    "summaryModel": summary_model(),
                }),
            "retention": obj(
                "How much history the agent keeps on its volume (docs/context.md, Retention). Unset: "
                "everything. Only what a checkpoint and a compaction summary cover is removed (old "
                "events, checkpoints, transcript messages and the artifacts only they refer to); never "
                "memory entries, never what the current state or a waiting call needs.",
                {
                    "maxAgeDays": integer("Remove history older than this many days.", 1, 36500),
                    "maxEvents": integer("Keep about this many of the newest events.", 10000, 1 << 40),
                },
                rules=[rule("has(self.maxAgeDays) || has(self.maxEvents)",
                            "maxAgeDays or maxEvents is required (leave spec.retention out to keep everything)",
                            ".maxAgeDays")]),
            "recovery": obj(
                "What happens after a crash.",
                {
                    "unknownOutcome": string(
                        "A side-effecting tool call whose outcome is unknown after a crash is never "
                        "repeated blindly: ask (wait for a person, default), tell_model (the model "
                        "is told and decides) or fail (the run fails).",
                        enum=["ask", "tell_model", "fail"], default="ask"),
                    "modelUnavailableSeconds": integer(
                        "How long a one-shot `carapace run` waits for a model service no endpoint "
                        "reaches before it exits (code 6) with the turn kept. The worker in a cluster "
                        "waits for as long as it takes. Unset: 300.", 0, 7 * 24 * 3600),
                },
                default={}),
            "durability": string("sync (default): every event is synced to disk before the action it "
                                 "records; batch: faster, a crash may lose the last events.",
                                 enum=["sync", "batch"], default="sync"),
            "schedule": schedule(),
            "suspend": boolean("Scale to zero and keep the volume; false resumes the same run. Default false.",
                               default=False),
            "idleTimeoutSeconds": integer(
                "Hibernate: an agent Idle (with an empty inbox) longer than this is scaled to zero "
                "until its next cron time or a spec change. Unset: never.", 1, 365 * 24 * 3600),
            "image": string("The worker's container image. Unset: the operator's --worker-image.",
                            minLength=1, pattern=IMAGE),
            "resources": obj("The worker container's compute resources.", {
                "requests": quantities("The resources the scheduler reserves"),
                "limits": quantities("The most the container may use"),
            }),
            "storage": storage(),
            "restartGeneration": integer(
                "Raise it to start the agent afresh from its goal, in a new state directory on the same "
                "volume; the old run stays there, readable and forkable. Any other spec change is a "
                "revision of the same run. Default 0.", 0, 1000000, default=0),
        },
        required=["goal", "model"])


def condition():
    return obj(
        "A metav1.Condition.",
        {
            "type": string("Accepted, Ready, Progressing, Degraded or Succeeded.", maxLength=316),
            "status": string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": string("Why, in CamelCase (SpecValid, InvalidSpec, WorkerReady, GoalReached, ...).",
                             maxLength=1024),
            "message": string("Details for a person; may be empty.", maxLength=32768),
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0,
                                   "description": "The metadata.generation this condition was set for."},
            "lastTransitionTime": string("When status last changed.", format="date-time"),
        },
        required=["type", "status", "reason", "message", "lastTransitionTime"])


def status():
    phases = ["Invalid", "Pending", "Running", "WaitingForApproval", "Idle", "Paused", "Succeeded", "Failed",
              "BudgetExhausted", "Degraded", "Cancelled", "Suspended", "Hibernating"]
    return obj(
        "What the operator and the worker report. Written by the operator only.",
        {
            "observedGeneration": {"type": "integer", "format": "int64",
                                   "description": "The metadata.generation this status is for."},
            "phase": string("Where the run is, as kubectl get ar shows it.", enum=phases),
            "workerPhase": string("The worker's own word for its phase (Idle after a goal, where phase "
                                  "may show Succeeded)."),
            "step": {"type": "integer", "format": "int64", "description": "The run's current step."},
            "lastCheckpointStep": {"type": "integer", "format": "int64",
                                   "description": "The step of the newest checkpoint."},
            "runID": string("The run's id on its volume."),
            "revision": {"type": "integer", "format": "int64",
                         "description": "The spec revision the worker runs: 1 at the start, +1 for each "
                                        "applied spec change (the same run, its history kept)."},
            "specHash": string("SHA-256 of the canonical agent spec; a new hash is a new revision of the same run."),
            "budget": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                       "description": "Budget used and limits: steps, maxSteps, tokens, maxTokens, "
                                      "toolCalls, maxToolCalls, wallClockSeconds."},
            "result": string("The result the agent finished with."),
            "message": string("Why the run stopped or failed, from the worker."),
            "waitingFor": string("The tool call waiting for approval, and why."),
            "idleSinceMs": {"type": "integer", "format": "int64",
                            "description": "When the worker became Idle, Unix milliseconds."},
            "hibernation": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                            "description": "While hibernating: since (RFC 3339), generation (the "
                                           "spec's when it went to sleep) and wakeAt (the next cron time)."},
            "conditions": array(
                "Accepted, Ready, Progressing, Degraded and Succeeded.", condition(),
                **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
        })


def root():
    return {
        "type": "object",
        "description": "AgentRun runs one persistent AI agent: a worker pod with a state volume, "
                       "driven by the spec's model, tools and budget.",
        "required": ["spec"],
        "properties": {
            "apiVersion": string("carapace.dev/v1alpha1."),
            "kind": string("AgentRun."),
            # The API server allows nothing here but name and generateName, and no description.
            "metadata": {"type": "object", "properties": {
                "name": {"type": "string", "maxLength": AGENTRUN_NAME_MAX, "pattern": AGENTRUN_NAME,
                         "description": "A DNS-1035 label of at most 52 characters (a leading letter): it "
                                        "names the StatefulSet, the Service and the pod."},
            }},
            "spec": spec(),
            "status": status(),
        },
    }


def crd():
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "agentruns.carapace.dev"},
        "spec": {
            "group": "carapace.dev",
            "scope": "Namespaced",
            "names": {"kind": "AgentRun", "listKind": "AgentRunList", "plural": "agentruns",
                      "singular": "agentrun", "shortNames": ["ar"], "categories": ["carapace"]},
            "versions": [{
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Step", "type": "integer", "jsonPath": ".status.step"},
                    {"name": "Revision", "type": "integer", "jsonPath": ".status.revision"},
                    {"name": "Model", "type": "string", "jsonPath": ".spec.model.name"},
                    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {"openAPIV3Schema": root()},
            }],
        },
    }


# ---------------------------------------------------------------------------------------
# A small YAML writer: block mappings, flow lists of scalars, long text folded (>-) so the
# file reads well. Output is checked by loading it back.

PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9 ._/()-]*$")
RESERVED = re.compile(r"^(true|false|yes|no|on|off|null|y|n|~)$", re.IGNORECASE)
FOLD_KEYS = {"description", "message", "rule"}


def scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if PLAIN.match(v) and not RESERVED.match(v) and not v.endswith(" ") and ": " not in v:
        return v
    return json.dumps(v, ensure_ascii=False)


def emit(node, indent, out):
    pad = "  " * indent
    for key, v in node.items():
        k = scalar(key)
        if isinstance(v, dict):
            if not v:
                out.append(f"{pad}{k}: {{}}")
            else:
                out.append(f"{pad}{k}:")
                emit(v, indent + 1, out)
        elif isinstance(v, list):
            if not v:
                out.append(f"{pad}{k}: []")
            elif all(not isinstance(x, (dict, list)) for x in v):
                out.append(f"{pad}{k}: [" + ", ".join(scalar(x) for x in v) + "]")
            else:
                out.append(f"{pad}{k}:")
                for item in v:
                    sub = []
                    emit(item, indent + 2, sub)
                    first = sub[0]
                    sub[0] = pad + "  - " + first[len(pad) + 4:]
                    out.extend(sub)
        elif key in FOLD_KEYS and isinstance(v, str) and len(pad) + len(k) + len(v) > 96 and "  " not in v:
            out.append(f"{pad}{k}: >-")
            for line in textwrap.wrap(v, width=max(40, 100 - len(pad) - 2), break_long_words=False,
                                      break_on_hyphens=False):
                out.append(f"{pad}  {line}")
        else:
            out.append(f"{pad}{k}: {scalar(v)}")


HEADER = """\
# The AgentRun CustomResourceDefinition (agentruns.carapace.dev, v1alpha1): what
# `kubectl apply -f crds/` and the Helm chart install so the API server serves AgentRuns.
# Its schema mirrors the C++ parser (common/agentrun/spec.cc): the same fields, defaults,
# ranges and cross-field rules (x-kubernetes-validations, CEL), plus the transition rules
# the operator needs (storage class fixed, volume only grows). Every field has a
# description: `kubectl explain agentrun.spec.budget` is the reference.
#
# GENERATED by crds/generate.py; edit that and run it. tests/unit/crd_schema_test.cc checks
# this file against the parser with every manifest in examples/ and tests/manifests/.
"""


def render():
    out = []
    emit(crd(), 0, out)
    return HEADER + "\n".join(out) + "\n"


def main():
    text = render()
    try:
        import yaml  # only to prove the writer's output reads back as the same document
        assert yaml.safe_load(text) == crd(), "the YAML writer changed the document"
    except ImportError:
        pass
    if "--check" in sys.argv[1:]:
        with open(OUTPUT, encoding="utf-8") as f:
            if f.read() != text:
                print(f"{OUTPUT} is stale: run /usr/bin/python3 crds/generate.py", file=sys.stderr)
                return 1
        return 0
    with open(OUTPUT, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
