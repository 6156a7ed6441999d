// JSON forms of the chat vocabulary.
#include "worker/model/chat.h"

namespace carapace {

nlohmann::json FunctionJson(const ToolSchema& tool) {
  return {{"type", "function"},
          {"function", {{"name", tool.name}, {"description", tool.description}, {"parameters", tool.parameters}}}};
}

nlohmann::json ToJson(const ToolCall& c) {
  nlohmann::json j = {{"id", c.id}, {"name", c.name}, {"arguments", c.arguments}};
  if (!c.malformed.empty()) j["malformed"] = c.malformed;
  return j;
}

ToolCall ToolCallFromJson(const nlohmann::json& j) {
  ToolCall c;
  if (!j.is_object()) return c;
  c.id = j.value("id", "");
  c.name = j.value("name", "");
  c.arguments = j.value("arguments", nlohmann::json::object());
  c.malformed = j.value("malformed", "");
  return c;
}

nlohmann::json ToJson(const Message& m) {
  nlohmann::json j = {{"role", m.role}, {"content", m.content}};
  if (!m.tool_calls.empty()) {
    j["toolCalls"] = nlohmann::json::array();
    for (const auto& c : m.tool_calls) j["toolCalls"].push_back(ToJson(c));
  }
  if (!m.tool_call_id.empty()) j["toolCallId"] = m.tool_call_id;
  if (!m.name.empty()) j["name"] = m.name;
  return j;
}

Message MessageFromJson(const nlohmann::json& j) {
  Message m;
  if (!j.is_object()) return m;
  m.role = j.value("role", "");
  m.content = j.value("content", "");
  if (j.contains("toolCalls") && j["toolCalls"].is_array()) {
    for (const auto& c : j["toolCalls"]) m.tool_calls.push_back(ToolCallFromJson(c));
  }
  m.tool_call_id = j.value("toolCallId", "");
  m.name = j.value("name", "");
  return m;
}

}  // namespace carapace
