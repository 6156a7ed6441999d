// `carapace ui`, end to end: a real worker runs a scripted agent (tool calls, a crash in the
// middle of a side-effecting call, the recovery and the approval it asks for), `carapace ui`
// follows it, and a real headless Chromium loads the page over the Chrome DevTools Protocol:
// the page shows the run, updates live when a message is sent, and the JSON API refuses a
// request without the token. With CARAPACE_TIMELINE_SCREENSHOT=FILE the test also saves
// what the browser shows (docs/timeline.png is made so).
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/support/child_process.h"
#include "tests/support/headless_browser.h"
#include "tests/support/ledger_server.h"
#include "tests/support/socket_io.h"
#include "tests/support/wait.h"
#include "tests/support/worker_process.h"

using carapace::testing::ChildProcess;
using carapace::testing::HeadlessBrowser;
using carapace::testing::LedgerServer;
using carapace::testing::RunCommand;
using carapace::testing::TempDir;
using carapace::testing::WaitFor;
using carapace::testing::WorkerProcess;
using Catch::Matchers::ContainsSubstring;
using Catch::Matchers::StartsWith;
namespace v1 = carapace::worker::v1;

namespace {

// Two turns: the goal (plan, check stock, order, record the receipt, answer), and the
// message the test sends later (list the receipts, answer).
std::string Spec(const std::string& ledger) {
  const std::string host = ledger.substr(std::string("http://").size());
  return "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: paper-orders}\nspec:\n"
         "  instructions: Keep a plan in notes, order through the api tool, record every receipt.\n"
         "  goal: Order two boxes of paper and keep a record of it.\n"
         "  model:\n    backend: scripted\n    script:\n"
         "      - text: Let me write a plan first.\n"
         "        toolCalls: [{name: notes, arguments: {op: write, path: plan.md, content: \"check stock, order, record\"}}]\n"
         "      - toolCalls: [{name: stock, arguments: {method: GET, url: \"" + ledger + "/stock/paper\"}}]\n"
         "      - toolCalls: [{name: api, arguments: {method: POST, url: \"" + ledger + "/orders\", body: {item: paper, boxes: 2}}}]\n"
         "      - toolCalls: [{name: notes, arguments: {op: write, path: receipts/order-1.md, content: \"paper x2\"}}]\n"
         "      - text: Two boxes of paper are ordered; the receipt is in receipts/order-1.md.\n"
         "      - toolCalls: [{name: notes, arguments: {op: list, path: receipts}}]\n"
         "      - text: One receipt so far.\n"
         "  tools:\n"
         "    - {name: notes, kind: workspace}\n"
         "    - {name: stock, kind: http, effect: read_only, http: {allowedHosts: [\"" + host + "\"]}}\n"
         "    - {name: api, kind: http, effect: side_effecting, http: {allowedHosts: [\"" + host + "\"]}}\n"
         "  budget: {maxSteps: 50, maxTokens: 200000, maxToolCalls: 200, maxWallClockSeconds: 3600}\n"
         "  recovery: {unknownOutcome: ask}\n";
}

// A GET with the given headers; the whole reply (status line, headers, body).
std::string Get(int port, const std::string& path, const std::string& headers = "") {
  const int fd = carapace::testing::ConnectToLoopbackPort(port);
  REQUIRE(fd >= 0);
  REQUIRE(carapace::testing::SendAll(fd, "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + "\r\n"));
  std::string reply = carapace::testing::ReadUntilClosed(fd);
  ::close(fd);
  return reply;
}

// The port `carapace ui` printed it serves on.
int UiPort(ChildProcess& ui) {
  int port = 0;
  const bool printed = WaitFor([&] {
    std::ifstream in(ui.out_path());
    std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::smatch m;
    if (std::regex_search(out, m, std::regex("is at http://127\\.0\\.0\\.1:([0-9]+)/"))) port = std::stoi(m[1]);
    return port > 0 || !ui.Running();
  });
  REQUIRE(printed);
  REQUIRE(port > 0);
  return port;
}

int Count(HeadlessBrowser& b, const std::string& selector) {
  std::string problem;
  auto n = b.Evaluate("document.querySelectorAll('" + selector + "').length", &problem);
  INFO(problem);
  REQUIRE(n.is_number());
  return n.get<int>();
}

}  // namespace

TEST_CASE("the timeline page shows a run with a crash and an approval, live, and only to the token's holder",
          "[timeline]") {
  TempDir tmp;
  // Each request to the ledger is held a moment, so the worker is killed with the order in flight.
  LedgerServer ledger(1500);
  REQUIRE(ledger.Start());
  std::ofstream(tmp.Sub("agent.yaml")) << Spec(ledger.url());
  WorkerProcess w(WORKER_BIN, tmp.Sub("agent.yaml"), tmp.Sub("state"), tmp.path());
  REQUIRE(w.Start());

  // The order reaches the ledger; the worker dies before it hears back.
  REQUIRE(WaitFor([&] {
    for (const auto& e : ledger.entries()) {
      if (e.method == "POST" && e.path == "/orders") return true;
    }
    return false;
  }));
  w.Kill();
  // Restarted: the call's outcome is unknown, so it waits for a person, who approves it.
  REQUIRE(w.Start());
  REQUIRE(WaitFor([&] { return w.Status().waiting_size() == 1; }));
  {
    v1::DecisionRequest decision;
    decision.set_call_id(w.Status().waiting(0).call_id());
    decision.set_by("timeline-test");
    v1::RunStatus out;
    auto ctx = w.Context();
    REQUIRE(w.stub().Approve(ctx.get(), decision, &out).ok());
  }
  REQUIRE(WaitFor([&] { return w.Status().phase() == v1::PHASE_IDLE; }));

  ChildProcess ui({CARAPACE_BIN, "ui", "--worker", w.address(), "--token-file", tmp.Sub("token"), "--listen", "127.0.0.1:0"});
  const int port = UiPort(ui);
  const std::string base = "http://127.0.0.1:" + std::to_string(port) + "/";

  {  // The JSON API answers only with the worker's token; the page shell holds no agent data.
    // The feed has caught up once the API shows the run's last event.
    REQUIRE(WaitFor([&] {
      return Get(port, "/api/events?after=0", "Authorization: Bearer " + w.token() + "\r\n").find("\"Idle\"") != std::string::npos;
    }));
    for (const std::string& headers : {std::string(), std::string("Authorization: Bearer wrong-token-of-some-length\r\n"),
                                       "Authorization: Bearer " + w.token() + "x\r\n", "Authorization: " + w.token() + "\r\n"}) {
      for (const char* path : {"/api/events?after=0", "/api/status"}) {
        INFO(path << " with " << headers);
        const std::string reply = Get(port, path, headers);
        CHECK_THAT(reply, StartsWith("HTTP/1.1 401 Unauthorized\r\n"));
        CHECK_THAT(reply, ContainsSubstring("WWW-Authenticate: Bearer"));
        CHECK_THAT(reply, ContainsSubstring("{\"error\":\"a valid bearer token is required\"}"));
        CHECK_THAT(reply, !ContainsSubstring("paper"));
      }
    }
    const std::string events = Get(port, "/api/events?after=0", "Authorization: Bearer " + w.token() + "\r\n");
    CHECK_THAT(events, StartsWith("HTTP/1.1 200 OK\r\n"));
    CHECK_THAT(events, ContainsSubstring("Cache-Control: no-store"));
    CHECK_THAT(events, ContainsSubstring("\"type\":\"recovered\""));
    CHECK_THAT(Get(port, "/api/events?after=x1", "Authorization: Bearer " + w.token() + "\r\n"), StartsWith("HTTP/1.1 400"));
    const std::string page = Get(port, "/");
    CHECK_THAT(page, StartsWith("HTTP/1.1 200 OK\r\n"));
    CHECK_THAT(page, ContainsSubstring("Content-Security-Policy: default-src 'none'; script-src 'self'"));
    CHECK_THAT(page, !ContainsSubstring("paper"));
    CHECK_THAT(page, !ContainsSubstring(w.token()));
  }

  {  // A headless browser shows the run's calls, its crash and approval, and follows a new message live.
    HeadlessBrowser browser(CHROMIUM_BIN);
    std::string problem;
    const bool started = browser.Start(&problem) && browser.Navigate(base + "#token=" + w.token(), &problem);
    INFO(problem);
    REQUIRE(started);

    // Five model calls (the goal's turn); five tool call bars: notes, stock, the order cut
    // off by the crash, the order re-run once approved, and the receipt.
    REQUIRE(WaitFor([&] { return Count(browser, "#timeline g[data-kind=model]") == 5; }));
    CHECK(Count(browser, "#timeline g[data-kind=tool]") == 5);
    CHECK(Count(browser, "#timeline g[data-kind=tool][data-outcome=crashed]") == 1);
    CHECK(Count(browser, "#timeline g[data-kind=tool][data-outcome=ok]") == 4);
    CHECK(Count(browser, "#timeline g[data-kind=approval][data-outcome=approved]") == 1);
    CHECK(Count(browser, "#timeline g[data-mark=recovered]") == 1);
    CHECK(Count(browser, "#timeline path[data-kind=context]") == 1);
    CHECK(Count(browser, "#calls tbody tr[data-kind=tool]") == 5);
    auto text = browser.Evaluate("document.body.innerText", &problem);
    REQUIRE(text.is_string());
    CHECK_THAT(text.get<std::string>(), ContainsSubstring("stock"));
    CHECK_THAT(text.get<std::string>(), ContainsSubstring("recovered after a crash"));
    CHECK_THAT(text.get<std::string>(), ContainsSubstring("paper-orders"));
    CHECK_THAT(text.get<std::string>(), ContainsSubstring("Idle"));
    // The token left the address bar as the page took it.
    CHECK(browser.Evaluate("location.hash", &problem) == "");
    // The page's own requests carry the token; another's are refused.
    CHECK(browser.Evaluate("fetch('/api/status', {headers: {Authorization: 'Bearer nope'}}).then(r => r.status)", &problem) == 401);

    // A message: the page shows the new turn without a reload.
    browser.Evaluate("window.notReloaded = true", &problem);
    auto sent = RunCommand({CARAPACE_BIN, "send", "--worker", w.address(), "--token-file", tmp.Sub("token"),
                            "How many receipts are there?"});
    INFO(sent.err);
    REQUIRE(sent.exit_code == 0);
    REQUIRE(WaitFor([&] { return Count(browser, "#timeline g[data-kind=model]") == 7; }));
    CHECK(Count(browser, "#timeline g[data-kind=tool]") == 6);
    CHECK(Count(browser, "#timeline g[data-kind=turn]") == 2);
    text = browser.Evaluate("document.body.innerText", &problem);
    REQUIRE(text.is_string());
    CHECK_THAT(text.get<std::string>(), ContainsSubstring("How many receipts are there?"));
    CHECK(browser.Evaluate("window.notReloaded === true", &problem) == true);

    if (const char* shot = std::getenv("CARAPACE_TIMELINE_SCREENSHOT"); shot && *shot) {
      // The re-run order selected, so the details pane shows a tool call's events.
      browser.Evaluate("[...document.querySelectorAll('#timeline g[data-kind=tool][data-outcome=ok]')]"
                       ".find(g => g.textContent.includes(' api '))"
                       ".dispatchEvent(new MouseEvent('click', {bubbles: true}))", &problem);
      browser.Evaluate("new Promise(r => setTimeout(r, 300))", &problem);
      const std::string png = browser.ScreenshotPng();
      REQUIRE(!png.empty());
      std::ofstream(shot, std::ios::binary) << png;
    }
  }
  ui.Kill(SIGTERM);
  CHECK(ui.Wait(20000).exit_code == 0);
}

TEST_CASE("carapace ui refuses a listen address off loopback and a missing token", "[timeline]") {
  TempDir tmp;
  std::ofstream(tmp.Sub("token")) << "a-token-of-sixteen-chars-or-more\n";
  auto remote = RunCommand({CARAPACE_BIN, "ui", "--worker", "127.0.0.1:1", "--token-file", tmp.Sub("token"), "--listen",
                            "0.0.0.0:0"});
  CHECK(remote.exit_code == 2);
  CHECK_THAT(remote.err, ContainsSubstring("not a loopback address"));
  auto no_token = RunCommand({"/usr/bin/env", "-u", "CARAPACE_TOKEN", "-u", "CARAPACE_TOKEN_FILE", CARAPACE_BIN, "ui",
                              "--worker", "127.0.0.1:1"});
  CHECK(no_token.exit_code == 2);
  CHECK_THAT(no_token.err, ContainsSubstring("token is required"));
}
