// Tool: something the agent can call. Tools are kinds registered by name ("workspace",
// "http", ...); spec.tools lists the instances a run has. A tool the spec does not list
// does not exist for the model.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/agentrun/spec.h"
#include "common/status.h"
#include "worker/model/chat.h"

namespace carapace {

// What a tool learns about the call it is making.
struct ToolContext {
  ToolContext() = default;
  ToolContext(std::string call_id_in, std::string idempotency_key_in, std::string traceparent_in = "")
      : call_id(std::move(call_id_in)),
        idempotency_key(std::move(idempotency_key_in)),
        traceparent(std::move(traceparent_in)) {}

  std::string call_id;
  // Derived from run, step and call index; the same on every retry of this call. Tools that
  // reach other services pass it on (HTTP: the Idempotency-Key header).
  std::string idempotency_key;
  // The W3C traceparent of the call's span: tools that reach other services send it (HTTP:
  // the traceparent header) so the trace continues there. Empty: tracing is off.
  std::string traceparent;
};

// The outcome of a call. A failed call is data for the model ("no such file"), not a
// Status: the run goes on and the model decides what to do.
struct ToolResult {
  bool ok = true;
  nlohmann::json output;  // ok: the tool's answer
  std::string error;      // !ok: what went wrong, for the model and the transcript

  static ToolResult Ok(nlohmann::json out) { return {true, std::move(out), ""}; }
  static ToolResult Fail(std::string why) { return {false, nullptr, std::move(why)}; }
};

class Tool {
 public:
  virtual ~Tool() = default;
  virtual ToolSchema Schema() const = 0;
  // The effect class when the spec does not set one.
  virtual Effect DefaultEffect() const = 0;
  // Makes the call. Must be safe to call again with the same context after a crash when the
  // tool's effect is read_only or idempotent.
  virtual ToolResult Call(const nlohmann::json& arguments, const ToolContext& context) = 0;

  // True when this tool always waits for a person before it runs (besides the spec's
  // requireApproval for the whole entry): MCP's requireApprovalFor.
  virtual bool RequiresApproval() const { return false; }
  // Changes the name the model sees, when two tools would share one. Tools that cannot be
  // renamed return false.
  virtual bool Rename(const std::string&) { return false; }
};

class ModelBackend;
class RunStore;

// What a tool factory gets besides its spec.
struct ToolEnvironment {
  std::string workspace_dir;        // the run's workspace folder (created by the store)
  RunStore* store = nullptr;        // the run's store (memory lives in it)
  ModelBackend* embedder = nullptr;  // spec.embedding's backend; null when there is none
};

using ToolList = std::vector<std::unique_ptr<Tool>>;
using ToolFactory = std::function<Result<std::unique_ptr<Tool>>(const ToolSpec&, const ToolEnvironment&)>;
// For kinds that give the model several tools from one spec entry (memory: memory_store,
// memory_search, ...; MCP: every tool of a server).
using ToolSetFactory = std::function<Result<ToolList>(const ToolSpec&, const ToolEnvironment&)>;

class ToolRegistry {
 public:
  void Register(const std::string& kind, ToolFactory factory);
  void RegisterSet(const std::string& kind, ToolSetFactory factory);
  // Errors: kInvalidArgument when the kind is unknown or the factory rejects the spec.
  Result<ToolList> Create(const ToolSpec& spec, const ToolEnvironment& env) const;

 private:
  std::map<std::string, ToolSetFactory> factories_;
};

// Registers the tool kinds this build ships.
void RegisterBuiltinTools(ToolRegistry* registry);

}  // namespace carapace
