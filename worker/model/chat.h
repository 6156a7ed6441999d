// The chat vocabulary shared by the runtime, the model backends and the tools:
// messages, tool calls, tool schemas. JSON forms are what the event log stores.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace carapace {

struct ToolCall {
  std::string id;  // unique within the run: "s<step>c<index>"
  std::string name;
  nlohmann::json arguments = nlohmann::json::object();
  // Set when the model's call could not be parsed: why. `arguments` then holds the raw text
  // as a string. The runtime answers such a call with an error for the model to correct.
  std::string malformed;
};

struct Message {
  std::string role;  // system | user | assistant | tool
  std::string content;
  std::vector<ToolCall> tool_calls;  // assistant only
  std::string tool_call_id;          // tool only
  std::string name;                  // tool only: which tool answered
};

// What the model is told about a tool.
struct ToolSchema {
  std::string name;
  std::string description;
  nlohmann::json parameters;  // JSON Schema of the arguments
};

// {"type": "function", "function": {name, description, parameters}}: how OpenAI's API and
// most chat templates describe a tool.
nlohmann::json FunctionJson(const ToolSchema& tool);

nlohmann::json ToJson(const ToolCall& c);
ToolCall ToolCallFromJson(const nlohmann::json& j);
nlohmann::json ToJson(const Message& m);
Message MessageFromJson(const nlohmann::json& j);

}  // namespace carapace
