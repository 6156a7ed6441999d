// kill -9 at random moments: `carapace run` is started as a child process against a local
// ledger service and SIGKILLed again and again until its run ends. The run must end with
// the transcript an uninterrupted run has (except that side-effecting calls cut between
// intent and result become outcome_unknown), no recorded step lost, no side-effecting call
// reaching the ledger twice, and idempotent calls repeated only with the same key.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <csignal>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/support/child_process.h"
#include "tests/support/ledger_server.h"
#include "worker/store/run_store.h"

using carapace::testing::ChildProcess;
using carapace::testing::CommandResult;
using carapace::testing::LedgerServer;
using carapace::testing::RunCommand;
using carapace::testing::TempDir;
using nlohmann::json;

namespace {

constexpr int kSteps = 24;

// A 24-step run (plus the final answer) mixing side-effecting POSTs, idempotent PUTs,
// read-only GETs and workspace writes, some steps with two calls.
std::string CrashSpec(const std::string& ledger_url, const std::string& host, const std::string& durability) {
  std::string script;
  for (int i = 1; i <= kSteps; ++i) {
    std::string n = std::to_string(i);
    switch (i % 4) {
      case 0:
        script += "      - toolCalls: [{name: orders, arguments: {method: POST, url: \"" + ledger_url + "/orders/" + n +
                  "\", body: {\"n\": " + n + "}}}]\n";
        break;
      case 1:
        script += "      - toolCalls: [{name: items, arguments: {method: PUT, url: \"" + ledger_url + "/items/" + n +
                  "\", body: {\"n\": " + n + "}}}, {name: notes, arguments: {op: write, path: \"log/" + n +
                  ".md\", content: \"step " + n + "\"}}]\n";
        break;
      case 2:
        script += "      - toolCalls: [{name: orders, arguments: {method: POST, url: \"" + ledger_url + "/payments/" +
                  n + "\", body: {\"n\": " + n + "}}}, {name: items, arguments: {method: PUT, url: \"" + ledger_url +
                  "/items/" + n + "\", body: {\"n\": " + n + "}}}]\n";
        break;
      default:
        script += "      - toolCalls: [{name: stock, arguments: {method: GET, url: \"" + ledger_url + "/stock/" + n +
                  "\"}}]\n";
    }
  }
  script += "      - text: \"all " + std::to_string(kSteps) + " steps done\"\n";
  return "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: crash}\nspec:\n"
         "  goal: \"survive kill -9\"\n"
         "  model:\n    backend: scripted\n    script:\n" +
         script +
         "  tools:\n"
         "    - {name: notes, kind: workspace}\n"
         "    - {name: orders, kind: http, effect: side_effecting, http: {allowedHosts: [\"" + host + "\"]}}\n"
         "    - {name: items, kind: http, effect: idempotent, http: {allowedHosts: [\"" + host + "\"]}}\n"
         "    - {name: stock, kind: http, effect: read_only, http: {allowedHosts: [\"" + host + "\"]}}\n"
         "  recovery: {unknownOutcome: ask}\n"
         "  durability: " + durability + "\n";
}

json Inspect(const std::string& dir) {
  CommandResult r = RunCommand({CARAPACE_BIN, "inspect", "--state-dir", dir, "--json"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return json::parse(r.out);
}

// The final result of each call, with the ledger's receipt (which depends on the run's
// idempotency keys) taken out so two runs can be compared.
std::map<std::string, json> FinalResults(const json& events) {
  std::map<std::string, json> out;
  for (const auto& e : events) {
    if (e["type"] != "tool_result") continue;
    json d = e["data"];
    d.erase("durationMs");
    if (d.contains("output") && d["output"].is_object() && d["output"].contains("body") &&
        d["output"]["body"].is_object()) {
      d["output"]["body"].erase("receipt");
    }
    out[d["callId"].get<std::string>()] = d;
  }
  return out;
}

struct RoundReport {
  int kills = 0;
  int unknown = 0;
};

// With `revise`, every start of `carapace run` is given a spec that differs from the last
// one (its instructions name the attempt), so kills land before, during and after a spec
// revision is applied, and the run must still be one run with a gap-free list of revisions.
void SurvivesKillNine(const std::string& durability, bool revise = false, int min_kills = 50) {
  TempDir tmp;
  // Reference: the same run, never interrupted, against its own ledger.
  LedgerServer ref_ledger;
  REQUIRE(ref_ledger.Start());
  std::string ref_host = "127.0.0.1:" + std::to_string(ref_ledger.port());
  std::ofstream(tmp.Sub("ref.yaml")) << CrashSpec(ref_ledger.url(), ref_host, durability);
  auto ref_started = std::chrono::steady_clock::now();
  CommandResult ref_run = RunCommand({CARAPACE_BIN, "run", tmp.Sub("ref.yaml"), "--state-dir", tmp.Sub("ref")});
  auto ref_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - ref_started);
  INFO(ref_run.out << ref_run.err);
  REQUIRE(ref_run.exit_code == 0);
  json ref = Inspect(tmp.Sub("ref"));
  auto ref_results = FinalResults(ref["events"]);
  REQUIRE(ref_results.size() == static_cast<size_t>(kSteps + kSteps / 2));

  std::mt19937 rng(std::random_device{}());
  // Kill at a uniform moment within the time an uninterrupted run takes (start-up
  // included), so kills land in start-up, between steps and inside calls alike, on a fast
  // or a slow (sanitizer) build; a resumed run has less left to do, so rounds end.
  std::uniform_int_distribution<int> delay_us(0, std::max(20000, static_cast<int>(ref_us.count())));
  int total_kills = 0, total_unknown = 0, rounds = 0;

  while (total_kills < min_kills && rounds < 200) {
    ++rounds;
    // Each request is held 2 ms, so a kill often lands while a call is in flight.
    LedgerServer ledger(2);
    REQUIRE(ledger.Start());
    std::string host = "127.0.0.1:" + std::to_string(ledger.port());
    std::string spec = tmp.Sub("round" + std::to_string(rounds) + ".yaml");
    std::string dir = tmp.Sub("state" + std::to_string(rounds));
    std::ofstream(spec) << CrashSpec(ledger.url(), host, durability);

    RoundReport report;
    int starts = 0;
    for (int attempt = 0;; ++attempt) {
      REQUIRE(attempt < 400);
      ++starts;
      if (revise) {
        std::ofstream(spec) << CrashSpec(ledger.url(), host, durability)
                            << "  instructions: \"revision of attempt " << attempt << "\"\n";
      }
      ChildProcess child({CARAPACE_BIN, "run", spec, "--state-dir", dir, "--json"});
      std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
      child.Kill(SIGKILL);
      CommandResult r = child.Wait();
      if (r.signal == SIGKILL) {
        ++report.kills;
        continue;
      }
      INFO("exit " << r.exit_code << "\n" << r.out << r.err);
      if (r.exit_code == 0) break;
      REQUIRE(r.exit_code == 5);  // waiting: a side-effecting call's outcome is unknown
      json status = Inspect(dir)["status"];
      REQUIRE(status["waiting"].size() >= 1);
      for (const auto& w : status["waiting"]) {
        CHECK(w["reason"] == "outcome_unknown");
        CommandResult deny = RunCommand({CARAPACE_BIN, "approve", "--state-dir", dir, "--call",
                                         w["callId"].get<std::string>(), "--deny"});
        INFO(deny.err);
        REQUIRE(deny.exit_code == 0);
      }
    }

    json run = Inspect(dir);
    const json& events = run["events"];
    CHECK(run["status"]["phase"] == "PHASE_SUCCEEDED");
    CHECK(run["status"]["result"] == ref["status"]["result"]);

    // No recorded step lost: the log is gap-free and every step completed, in order.
    std::vector<int> completed;
    std::map<std::string, std::string> intent_key;  // call id -> idempotency key
    std::set<std::string> unknown;
    for (size_t i = 0; i < events.size(); ++i) {
      const json& e = events[i];
      REQUIRE(e["seq"].get<size_t>() == i + 1);
      if (e["type"] == "step_completed") completed.push_back(e["step"].get<int>());
      if (e["type"] == "tool_intent") {
        std::string id = e["data"]["callId"], key = e["data"]["idempotencyKey"];
        if (intent_key.count(id)) CHECK(intent_key[id] == key);  // a retry carries the same key
        intent_key[id] = key;
      }
      if (e["type"] == "tool_outcome_unknown") unknown.insert(e["data"]["callId"].get<std::string>());
    }
    std::vector<int> expected_steps;
    for (int s = 1; s <= kSteps + 1; ++s) expected_steps.push_back(s);
    CHECK(completed == expected_steps);
    if (revise) {
      // One run throughout; each revision recorded once, numbered without gaps, the last one
      // the spec the store holds.
      int run_starts = 0;
      int64_t revision = 1;
      std::string last_hash;
      for (const auto& e : events) {
        run_starts += e["type"] == "run_started";
        if (e["type"] != "spec_revised") continue;
        CHECK(e["data"]["revision"].get<int64_t>() == ++revision);
        last_hash = e["data"]["specHash"].get<std::string>();
      }
      CHECK(run_starts == 1);
      CHECK(run["status"]["revision"] == std::to_string(revision));  // proto JSON writes int64 as a string
      // Every start after the first brought another spec; one killed before it recorded the
      // revision left it to the next. The start that finished the run recorded its own.
      CHECK(revision - 1 <= starts - 1);
      if (starts > 1) {
        CHECK(revision >= 2);
        CHECK(run["status"]["specHash"] == last_hash);
      }
    }

    // The transcript equals the uninterrupted one, but for calls whose outcome became unknown.
    auto results = FinalResults(events);
    REQUIRE(results.size() == ref_results.size());
    for (const auto& [id, expected] : ref_results) {
      INFO("call " << id);
      REQUIRE(results.count(id));
      if (unknown.count(id)) {
        CHECK(results[id]["ok"] == false);
        CHECK(results[id]["error"].get<std::string>().rfind("outcome_unknown", 0) == 0);
      } else {
        CHECK(results[id] == expected);
      }
    }

    // What the ledger saw.
    std::map<std::string, std::set<std::string>> keys_by_path;
    std::map<std::string, int> side_effects_by_key;
    std::set<std::string> known_keys;
    for (const auto& [id, key] : intent_key) known_keys.insert(key);
    for (const auto& entry : ledger.entries()) {
      CHECK(known_keys.count(entry.idempotency_key));  // every request was recorded as an intent first
      keys_by_path[entry.path].insert(entry.idempotency_key);
      if (entry.method == "POST") ++side_effects_by_key[entry.idempotency_key];
    }
    for (const auto& [key, count] : side_effects_by_key) {
      INFO("side-effecting call with key " << key);
      CHECK(count == 1);  // never twice
    }
    for (const auto& [path, keys] : keys_by_path) {
      INFO("path " << path);
      CHECK(keys.size() == 1);  // repeated only with the same key
    }
    // Every side-effecting call that has a real result reached the ledger exactly once.
    for (const auto& [id, key] : intent_key) {
      if (!unknown.count(id) && results[id]["tool"] == "orders") CHECK(side_effects_by_key[key] == 1);
    }
    report.unknown = static_cast<int>(unknown.size());
    total_kills += report.kills;
    total_unknown += report.unknown;
  }
  INFO("rounds " << rounds << ", kills " << total_kills << ", outcome_unknown " << total_unknown);
  CHECK(total_kills >= min_kills);
  std::printf("crash test (%s): %d runs of %d steps, %d SIGKILLs, %d side-effecting calls cut mid-flight\n",
              durability.c_str(), rounds, kSteps + 1, total_kills, total_unknown);
}

}  // namespace

TEST_CASE("carapace run survives kill -9 at random moments: nothing lost, nothing done twice", "[crash]") {
  SurvivesKillNine("sync");
}

// batch skips the fdatasync at step ends; the WAL still reaches the OS at every write, so a
// killed process (not a power cut) loses nothing either.
TEST_CASE("with batch durability too, kill -9 loses nothing and repeats no side effect", "[crash]") {
  SurvivesKillNine("batch");
}

TEST_CASE("kill -9 before, during and after a spec revision is applied loses nothing and repeats nothing",
          "[crash][revision]") {
  SurvivesKillNine("sync", /*revise=*/true, /*min_kills=*/30);
}

TEST_CASE("memory written by a run killed again and again holds each entry once", "[crash][memory]") {
  TempDir tmp;
  const std::string example = std::string(CARAPACE_SOURCE_DIR) + "/examples/memory.yaml";
  const std::string dir = tmp.Sub("state");
  // The kill window spans an uninterrupted run, so it fits a fast and a sanitizer build.
  auto started = std::chrono::steady_clock::now();
  REQUIRE(RunCommand({CARAPACE_BIN, "run", example, "--state-dir", tmp.Sub("reference")}).exit_code == 0);
  auto ref_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started);
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> delay_us(0, std::max(20000, static_cast<int>(ref_us.count())));
  int kills = 0;
  for (int attempt = 0;; ++attempt) {
    REQUIRE(attempt < 400);
    ChildProcess child({CARAPACE_BIN, "run", example, "--state-dir", dir});
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
    child.Kill(SIGKILL);
    CommandResult r = child.Wait();
    if (r.signal == SIGKILL) {
      ++kills;
      continue;
    }
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    break;
  }
  json events = Inspect(dir)["events"];
  json search;
  for (const auto& e : events) {
    if (e["type"] == "tool_result" && e["data"]["tool"] == "memory_search") search = e["data"]["output"];
  }
  REQUIRE(search["results"].size() == 1);
  CHECK(search["results"][0]["text"] == "The customer prefers invoices by email");
  auto store = carapace::RunStore::Open(dir, carapace::RunStore::OpenMode::kMustExist);
  REQUIRE(store.ok());
  int entries = 0;
  REQUIRE((*store)->ForEachMemory([&](std::string_view key, std::string_view) {
                    entries += key.substr(0, 2) == "e/";
                    return true;
                  }).ok());
  CHECK(entries == 2);  // a store retried after a kill wrote the same entry, not a second one
  std::printf("memory crash test: %d SIGKILLs\n", kills);
}
