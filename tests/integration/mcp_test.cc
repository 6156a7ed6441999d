// The mcp tool against the real MCP reference server (@modelcontextprotocol/server-everything,
// installed by scripts/install-deps.sh into tests/support/mcp), started on loopback.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>
#include <cstdlib>
#include <random>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/support/carapace_cli.h"
#include "tests/support/child_process.h"
#include "tests/support/stateless_mcp_server.h"
#include "worker/tools/mcp/mcp_client.h"
#include "common/sse.h"
#include "worker/tools/mcp/mcp_tools.h"

using namespace carapace;
using carapace::testing::ChildProcess;
using carapace::testing::CommandResult;
using carapace::testing::RunCommand;
using carapace::testing::TempDir;
using Catch::Matchers::ContainsSubstring;
using nlohmann::json;

namespace {

const std::string kServerJs =
    std::string(CARAPACE_SOURCE_DIR) + "/tests/support/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js";

// The reference server on a free loopback port, stopped by the destructor.
class ReferenceServer {
 public:
  ReferenceServer() {
    if (!std::filesystem::exists(kServerJs)) {
      FAIL("the MCP reference server is not installed at " << kServerJs << "; run scripts/install-deps.sh");
    }
    std::mt19937 rng(std::random_device{}());
    for (int attempt = 0; attempt < 5 && !ready_; ++attempt) {
      port_ = 20000 + static_cast<int>(rng() % 40000);
      child_ = std::make_unique<ChildProcess>(std::vector<std::string>{
          "/usr/bin/env", "PORT=" + std::to_string(port_), "node", kServerJs, "streamableHttp"});
      for (int i = 0; i < 150 && child_->Running(); ++i) {  // up to 15 s for node to start
        McpClient probe(url(), {}, 2);
        if (probe.Connect().ok()) {
          ready_ = true;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    REQUIRE(ready_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/mcp"; }
  void Kill() { child_->Kill(SIGKILL); }

 private:
  int port_ = 0;
  bool ready_ = false;
  std::unique_ptr<ChildProcess> child_;
};

std::string McpSpec(const std::string& tools_yaml, const std::string& script) {
  return "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: mcp}\nspec:\n  goal: use MCP\n"
         "  model:\n    backend: scripted\n    script:\n" + script + "      - text: done\n  tools:\n" + tools_yaml;
}

using carapace::testing::Events;

}  // namespace

TEST_CASE("the MCP client falls back to the 2025 revision and lists and calls tools", "[mcp]") {
  ReferenceServer server;
  McpClient client(server.url(), {}, 10);
  REQUIRE(client.Connect().ok());
  CHECK_FALSE(client.stateless());  // the reference server answers server/discover with an error
  CHECK(client.protocol_version().rfind("2025-", 0) == 0);
  auto tools = client.ListTools();
  REQUIRE(tools.ok());
  std::set<std::string> names;
  for (const auto& t : *tools) names.insert(t.name);
  CHECK(names.count("echo"));
  CHECK(names.count("get-sum"));
  auto echo = client.CallTool("echo", {{"message", "hi"}});
  REQUIRE(echo.ok());
  CHECK((*echo)["content"][0]["text"] == "Echo: hi");
}

TEST_CASE("MCP tools in a run: results, effects from annotations, errors as data", "[mcp]") {
  ReferenceServer server;
  TempDir tmp;
  std::string spec = tmp.Sub("mcp.yaml");
  std::ofstream(spec) << McpSpec("    - {name: everything, kind: mcp, mcp: {url: \"" + server.url() + "\"}}\n",
                                 "      - toolCalls: [{name: echo, arguments: {message: hello}}, {name: get-sum, arguments: {a: 2, b: 3}}]\n"
                                 "      - toolCalls: [{name: get-sum, arguments: {a: two}}, {name: toggle-simulated-logging}]\n");
  CommandResult r = RunCommand({CARAPACE_BIN, "run", spec, "--state-dir", tmp.Sub("s")});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  std::map<std::string, json> intents, results;
  for (const auto& e : Events(tmp.Sub("s"))) {
    if (e["type"] == "tool_intent") intents[e["data"]["callId"]] = e["data"];
    if (e["type"] == "tool_result") results[e["data"]["callId"]] = e["data"];
  }
  CHECK(results["s1c0"]["output"]["content"][0]["text"] == "Echo: hello");
  CHECK(results["s1c1"]["output"]["content"][0]["text"] == "The sum of 2 and 3 is 5.");
  CHECK(intents["s1c0"]["effect"] == "read_only");                   // readOnlyHint
  CHECK(intents["s2c1"]["effect"] == "side_effecting");              // no hint
  CHECK(results["s2c0"]["ok"] == false);                             // bad arguments: an error for the model
  CHECK_FALSE(results["s2c0"]["error"].get<std::string>().empty());
}

TEST_CASE("two servers with the same tool names get prefixed; requireApprovalFor waits", "[mcp]") {
  ReferenceServer server;
  TempDir tmp;
  std::string tools = "    - {name: a, kind: mcp, mcp: {url: \"" + server.url() + "\", requireApprovalFor: [get-sum]}}\n"
                      "    - {name: b, kind: mcp, mcp: {url: \"" + server.url() + "\"}}\n";
  std::string spec = tmp.Sub("mcp.yaml");
  std::ofstream(spec) << McpSpec(tools, "      - toolCalls: [{name: a_echo, arguments: {message: one}}, {name: b_echo, arguments: {message: two}}]\n"
                                        "      - toolCalls: [{name: a_get-sum, arguments: {a: 1, b: 1}}]\n");
  CommandResult r = RunCommand({CARAPACE_BIN, "run", spec, "--state-dir", tmp.Sub("s")});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 5);  // a_get-sum waits for a person
  CHECK_THAT(r.out, ContainsSubstring("a_get-sum"));
  json events = Events(tmp.Sub("s"));
  int echoed = 0;
  for (const auto& e : events) {
    if (e["type"] == "tool_result" && e["data"]["ok"] == true) ++echoed;
  }
  CHECK(echoed == 2);
}

TEST_CASE("an MCP server that dies mid-call gives a clear tool error", "[mcp]") {
  ReferenceServer server;
  ToolSpec spec;
  spec.name = "everything";
  spec.kind = "mcp";
  spec.mcp.url = server.url();
  spec.mcp.timeout_seconds = 10;
  auto tools = CreateMcpTools(spec, ToolEnvironment{});
  REQUIRE(tools.ok());
  Tool* slow = nullptr;
  for (auto& t : *tools) {
    if (t->Schema().name == "trigger-long-running-operation") slow = t.get();
  }
  REQUIRE(slow != nullptr);
  auto pending = std::async(std::launch::async, [&] {
    return slow->Call({{"duration", 5}, {"steps", 5}}, ToolContext{"c", "k"});
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  server.Kill();
  ToolResult r = pending.get();
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, ContainsSubstring("did not answer tools/call"));
}

TEST_CASE("an unreachable MCP server is reported when the run starts", "[mcp]") {
  ToolSpec spec;
  spec.name = "gone";
  spec.kind = "mcp";
  spec.mcp.url = "http://127.0.0.1:9/mcp";
  spec.mcp.timeout_seconds = 2;
  auto tools = CreateMcpTools(spec, ToolEnvironment{});
  REQUIRE_FALSE(tools.ok());
  CHECK_THAT(tools.status().message(), ContainsSubstring("tool \"gone\": MCP server http://127.0.0.1:9/mcp did not answer"));
}

TEST_CASE("server-sent events are split into their data", "[mcp]") {
  auto parsed = ParseSseData("id: 1\ndata: \n\nevent: message\ndata: {\"a\":1}\n\ndata: line1\r\ndata: line2\r\n\r\n");
  REQUIRE(parsed.has_value());
  const auto& events = *parsed;
  REQUIRE(events.size() == 3);
  CHECK(events[0] == "");
  CHECK(events[1] == "{\"a\":1}");
  CHECK(events[2] == "line1\nline2");
}

TEST_CASE("a stateless (2026-07-28) server: discover, _meta and routing headers, pages, structured results", "[mcp]") {
  carapace::testing::StatelessMcpServer server;
  REQUIRE(server.Start());
  ::setenv("CARAPACE_TEST_MCP_TOKEN", "Bearer mcp-token-123456", 1);
  ToolSpec spec;
  spec.name = "double";
  spec.kind = "mcp";
  spec.mcp.url = server.url();
  spec.mcp.headers = {{"Authorization", "", "CARAPACE_TEST_MCP_TOKEN", ""}};
  auto tools = CreateMcpTools(spec, ToolEnvironment{});
  INFO(tools.status().ToString());
  REQUIRE(tools.ok());
  REQUIRE(tools->size() == 5);  // three pages of tools/list
  std::map<std::string, Tool*> by_name;
  for (auto& t : *tools) by_name[t->Schema().name] = t.get();
  CHECK(by_name.at("add")->DefaultEffect() == Effect::kReadOnly);
  CHECK(by_name.at("fail")->DefaultEffect() == Effect::kSideEffecting);

  ToolResult add = by_name.at("add")->Call({{"a", 2}, {"b", 40}}, ToolContext{"c", "k"});
  REQUIRE(add.ok);
  CHECK(add.output["structuredContent"]["sum"] == 42);
  ToolResult fail = by_name.at("fail")->Call(json::object(), ToolContext{"c", "k"});
  CHECK_FALSE(fail.ok);
  CHECK(fail.error == "it broke");

  auto seen = server.requests();
  REQUIRE(seen.size() == 1 + 3 + 2);  // discover, three pages, two calls
  for (const auto& r : seen) {
    INFO(r.method);
    CHECK(r.has_meta);
    CHECK(r.protocol_header == "2026-07-28");
    CHECK(r.mcp_method == r.method);
    CHECK(r.authorization == "Bearer mcp-token-123456");
  }
  CHECK(seen[4].mcp_name == "add");
}
