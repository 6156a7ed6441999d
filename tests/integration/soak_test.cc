// The 90-day soak: an agent with an 8,192-token window and a memory tool lives through 90
// simulated days (hourly cron prompts, 20 messages a day with tool results of a few KB, a
// model outage each day, kill -9 every few hundred events, spec revisions on days 30 and
// 60, the second adding spec.retention), driven by carapace-test-soak-agent
// (tests/support/soak_agent_main.cc), one process per stretch of its life.
//
// It checks what a year-long agent needs: no prompt ever over the window, every message
// answered exactly once, identifiers from the first days still answerable on day 90, and
// memory, start time and disk that do not grow with age. The figures of days 1, 30 and 90
// (worker RSS, start to ready, bytes on disk, prompt tokens per call) are printed; they are
// reported, not asserted against timings (these machines are shared).
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/file.h"
#include "tests/support/child_process.h"
#include "tests/support/worker_process.h"
#include "worker/runtime/run_loader.h"

using namespace carapace;
using carapace::testing::MeasuredRun;
using carapace::testing::TempDir;
using Catch::Matchers::ContainsSubstring;

namespace {

struct DayFigures {
  int day = 0;
  double rss_mib = 0;
  double start_ms = 0;
  double disk_mib = 0;
  double prompt_mean = 0;
  int64_t prompt_max = 0;
};

}  // namespace

TEST_CASE("an agent lives 90 simulated days: no prompt over the window, every message answered once, early "
          "identifiers still answerable, memory, start and disk bounded",
          "[soak][context][crash]") {
  TempDir tmp;
  const std::string dir = tmp.Sub("state");
  const std::string stats = tmp.path() + "/stats";
  const std::string port = std::to_string(carapace::testing::FreePort());
  int kills = 0, rollouts = 0;
  auto run_agent = [](std::vector<std::string> args) {
    args.insert(args.begin(), SOAK_AGENT_BIN);
    return carapace::testing::RunMeasured(args);
  };
  auto live_until = [&](int day, int kill_every) -> MeasuredRun {
    for (int start = 0; start < 1000; ++start) {
      MeasuredRun e = run_agent({"--dir", dir, "--stats", stats, "--port", port, "--until-day", std::to_string(day),
                         "--kill-every", std::to_string(kill_every), "--seed", std::to_string(start + 7 * day)});
      if (e.signal == SIGKILL) {
        ++kills;
        continue;
      }
      if (e.exit_code == 4) {
        ++rollouts;
        continue;
      }
      INFO("the soak agent ended with exit " << e.exit_code << ", signal " << e.signal);
      REQUIRE(e.exit_code == 0);
      return e;
    }
    FAIL("the soak agent did not reach day " << day);
    return {};
  };

  std::vector<DayFigures> figures;
  for (int day : {1, 30, 90}) {
    if (day > 1) live_until(day - 1, 300);
    // The measured day: one process lives it whole, without a kill. Its lines of the stats
    // file give its start and the prompts of that day.
    const auto offset = std::filesystem::exists(stats) ? std::filesystem::file_size(stats) : 0;
    MeasuredRun measured = live_until(day, 0);
    DayFigures f;
    f.day = day;
    std::ifstream lines(stats);
    lines.seekg(static_cast<std::streamoff>(offset));
    double prompt_sum = 0;
    int64_t prompt_calls = 0;
    for (std::string line; std::getline(lines, line);) {
      std::istringstream words(line);
      std::string kind;
      int at = 0;
      words >> kind >> at;
      if (kind == "start" && f.start_ms == 0) words >> f.start_ms;
      if (kind == "prompt" && at == day - 1) {
        int64_t tokens = 0;
        words >> tokens;
        prompt_sum += static_cast<double>(tokens);
        ++prompt_calls;
        f.prompt_max = std::max(f.prompt_max, tokens);
      }
    }
    REQUIRE(prompt_calls > 0);
    f.prompt_mean = prompt_sum / static_cast<double>(prompt_calls);
    f.rss_mib = static_cast<double>(measured.max_rss_kib) / 1024.0;
    f.disk_mib = static_cast<double>(carapace::DirectoryBytes(dir)) / 1048576.0;
    figures.push_back(f);
  }
  const int kDays = 90, kMessages = 20 * kDays;

  // Early identifiers, asked on day 90: the model must be shown them (memory or summary).
  const std::vector<std::string> recalled = {"ID-1", "ID-2", "ID-7", "ID-20", "ID-300", "ID-1200", "ID-1795"};
  std::vector<std::string> recall_args = {"--dir", dir, "--stats", stats, "--port", port, "--until-day", "90"};
  for (const auto& id : recalled) {
    recall_args.push_back("--recall");
    recall_args.push_back(id);
  }
  REQUIRE(run_agent(recall_args).exit_code == 0);

  // What the stats say.
  std::map<int, int> answered;  // message number -> answers
  int cron_answers = 0, refused = 0;
  std::vector<std::string> other_answers;  // neither a message's nor a cron prompt's
  std::map<int, std::vector<int64_t>> prompts;  // day -> prompt tokens of each call
  std::map<std::string, std::string> recall;
  std::ifstream in(stats);
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string kind;
    words >> kind;
    if (kind == "prompt") {
      int day = 0;
      int64_t tokens = 0;
      words >> day >> tokens;
      prompts[day].push_back(tokens);
    } else if (kind == "answer") {
      int day = 0;
      uint64_t seq = 0;
      words >> day >> seq;
      std::string rest;
      std::getline(words, rest);
      int n = 0;
      if (std::sscanf(rest.c_str(), " answered: message %d:", &n) == 1) ++answered[n];
      else if (rest.find("checked:") != std::string::npos) ++cron_answers;
      else other_answers.push_back(rest);
    } else if (kind == "refused") {
      ++refused;
    } else if (kind == "recall") {
      std::string id, rest;
      words >> id;
      std::getline(words, rest);
      recall[id] = rest;
    }
  }

  // No prompt over the window: none refused, none counted over it.
  CHECK(refused == 0);
  int64_t max_prompt = 0;
  size_t calls = 0;
  for (const auto& [day, tokens] : prompts) {
    for (int64_t t : tokens) max_prompt = std::max(max_prompt, t);
    calls += tokens.size();
  }
  CHECK(max_prompt <= 8192);
  // Every message answered exactly once; hourly prompts answered (coalesced after a kill
  // that spanned an hour, so at most one a hour).
  std::string missing;
  for (int n = 1; n <= kMessages; ++n) {
    if (answered.count(n) == 0) missing += " " + std::to_string(n);
  }
  INFO("messages without an answer:" << missing);
  CHECK(static_cast<int>(answered.size()) == kMessages);
  for (const auto& [n, count] : answered) {
    INFO("message " << n);
    CHECK(count == 1);
  }
  CHECK(other_answers.size() <= 1 + recalled.size());  // the goal's, and the recalls'
  for (const auto& a : other_answers) UNSCOPED_INFO("another answer: " << a);
  CHECK(cron_answers >= 24 * kDays * 9 / 10);
  CHECK(cron_answers <= 24 * kDays);
  // Early identifiers are still answerable.
  for (const auto& id : recalled) {
    INFO(id << ": " << recall[id]);
    CHECK_THAT(recall[id], ContainsSubstring("found " + id));
  }
  // It was a hard life: killed often, rolled for both spec edits.
  CHECK(kills >= 50);
  CHECK(rollouts == 2);
  {
    auto store = RunStore::Open(dir, RunStore::OpenMode::kMustExist);
    REQUIRE(store.ok());
    auto state = LoadRunState(**store);
    REQUIRE(state.ok());
    CHECK(state->revision == 3);
    CHECK(state->compactions >= kDays);
    // Memory holds the live context, not 90 days of messages.
    CHECK(state->messages.held() < 200);
    CHECK(state->messages.size() > 5 * kMessages);
    // spec.retention (30 days, from day 60) removed what it covers.
    auto first = (*store)->FirstSeq();
    REQUIRE(first.ok());
    CHECK(*first > 1);
  }

  std::printf("\nsoak: 90 days, %zu model calls, %d kill -9, %d rollouts, largest prompt %lld tokens\n", calls, kills,
              rollouts, static_cast<long long>(max_prompt));
  std::printf("%-6s %12s %16s %14s %22s\n", "day", "worker RSS", "start to ready", "bytes on disk", "prompt tokens/call");
  for (const auto& f : figures) {
    std::printf("%-6d %8.1f MiB %13.1f ms %10.1f MiB %12.0f (max %lld)\n", f.day, f.rss_mib, f.start_ms, f.disk_mib,
                f.prompt_mean, static_cast<long long>(f.prompt_max));
  }
  // Bounded with age: the figures of day 90 against day 30 (the history is 3x as long;
  // retention keeps 30 days of it). Generous bounds: the point is no growth with age.
  CHECK(figures[2].rss_mib < figures[0].rss_mib * 2);
  CHECK(figures[2].disk_mib < figures[1].disk_mib * 2);
  CHECK(figures[2].prompt_mean < 8192);
}
