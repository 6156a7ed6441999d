// A context that never overflows (docs/context.md): the prompt is kept inside the model's
// window by leaving out old tool results and folding older messages into a summary the
// model writes; the transcript keeps everything; a crash at any point of a compaction ends
// with exactly one summary for its range. Against the OpenAI-compatible double with vLLM's
// window rules (tests/support/fake_openai.h), and an in-process model with the same count
// where the test needs to stop the worker at a chosen call.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "tests/support/agentish.h"
#include "tests/support/child_process.h"
#include "tests/support/fake_clock.h"
#include "tests/support/fake_openai.h"
#include "worker/runtime/context_window.h"
#include "worker/runtime/run_loader.h"
#include "worker/runtime/runner.h"

using namespace carapace;
using carapace::testing::FakeClock;
using carapace::testing::Identifiers;
using carapace::testing::IsFlushRequest;
using carapace::testing::IsSummaryRequest;
using carapace::testing::Joined;
using carapace::testing::SummaryKeepingIdentifiers;
using carapace::testing::FakeCompletion;
using carapace::testing::FakeOpenAiServer;
using carapace::testing::TempDir;
using Catch::Matchers::ContainsSubstring;
using nlohmann::json;

namespace {

// What the agent's model does, whoever serves it: a summary request is answered with every
// identifier it was shown; a new message makes it read a file of a few KB; after the tool
// result it answers the message.
struct Agentish {
  // (is_summary, reply text, tool call or empty)
  static std::pair<std::string, bool> Decide(const std::vector<std::pair<std::string, std::string>>& messages) {
    if (!messages.empty() && IsSummaryRequest(messages.front().second)) {
      std::string all;
      for (const auto& [role, content] : messages) all += content + "\n";
      return {SummaryKeepingIdentifiers(all), false};
    }
    if (messages.back().first == "user") return {"", true};
    std::string last_user;
    for (const auto& [role, content] : messages) {
      if (role == "user") last_user = content;
    }
    return {"answered: " + last_user.substr(0, 40), false};
  }
};

std::string Padding(size_t n) {
  std::string out;
  while (out.size() < n) out += "lorem ipsum dolor sit amet ";
  return out.substr(0, n);
}

AgentRun OpenAiAgent(const std::string& url) {
  AgentRun run;
  run.metadata.name = "window";
  run.spec.goal = "Answer each message; remember the identifiers you are told.";
  run.spec.instructions = "You are a careful assistant.";
  run.spec.model.backend = "openai";
  run.spec.model.name = "llm";
  run.spec.model.endpoint = url;
  run.spec.model.timeout_seconds = 10;
  run.spec.budget.max_steps = 100000;
  run.spec.budget.max_tokens = int64_t{1} << 40;
  run.spec.budget.max_tool_calls = 100000;
  run.spec.budget.max_wall_clock_seconds = 365 * 24 * 3600;
  ToolSpec notes;
  notes.name = "notes";
  notes.kind = "workspace";
  run.spec.tools = {notes};
  return run;
}

struct Worker {
  Worker(const std::string& dir, const AgentRun& run, ModelRegistry* models, Clock* wall_clock = nullptr) {
    RegisterBuiltinTools(&tools);
    store = std::move(RunStore::Open(dir, RunStore::OpenMode::kCreateIfMissing)).value();
    RunnerOptions o;
    o.persistent = true;
    if (wall_clock != nullptr) o.wall_clock = wall_clock;
    auto made = Runner::Create(store.get(), run, *models, tools, o);
    REQUIRE(made.ok());
    runner = std::move(made).value();
  }
  void Send(const std::string& text) {
    Event e;
    e.type = event_type::kMessageReceived;
    e.data = {{"text", text}, {"from", "test"}};
    REQUIRE(AppendExternalEvent(store.get(), e).ok());
  }
  Phase Run() {
    auto phase = runner->Run();
    INFO(phase.status().ToString());
    REQUIRE(phase.ok());
    UNSCOPED_INFO("phase " << PhaseName(*phase) << ": " << runner->state().reason);
    return *phase;
  }
  ToolRegistry tools;
  std::unique_ptr<RunStore> store;
  std::unique_ptr<Runner> runner;
};

std::vector<Event> EventsOf(const RunStore& store, const std::string& type) {
  auto events = ReadAllEvents(store);
  REQUIRE(events.ok());
  std::vector<Event> out;
  for (auto& e : *events) {
    if (e.type == type) out.push_back(e);
  }
  return out;
}

}  // namespace

TEST_CASE("the prompt is built from the state: stable prefix, pruned old tool results, a split never between a call "
          "and its result",
          "[context]") {
  RunState s;
  s.messages.push_back({"system", "old instructions", {}, "", ""});
  s.first_turn_message = 1;
  s.messages.push_back({"user", "goal ID-1", {}, "", ""});
  ToolCall call{"s1c0", "notes", json{{"op", "read"}}, ""};
  s.messages.push_back({"assistant", "", {call}, "", ""});
  s.messages.push_back({"tool", std::string(5000, 'r'), {}, "s1c0", "notes"});
  s.messages.push_back({"assistant", "done", {}, "", ""});
  s.messages.push_back({"user", "next ID-2", {}, "", ""});
  ContextLimits limits;
  limits.window = 1000;

  std::vector<Message> first = BuildPrompt(s, "new instructions", limits);
  REQUIRE(first.size() == 6);
  CHECK(first[0].content == "new instructions");  // the revision's, not the stored ones
  s.messages.push_back({"assistant", "more", {}, "", ""});
  std::vector<Message> second = BuildPrompt(s, "new instructions", limits);
  REQUIRE(second.size() == 7);
  for (size_t i = 0; i < first.size(); ++i) CHECK(second[i].content == first[i].content);  // only appended

  // Folding: whole turns; the current one is kept even when it alone passes keepRecentRatio.
  s.last_prompt_tokens = 1;
  s.last_prompt_bytes = 4;
  limits.spec.keep_recent_ratio = 0.05;  // 50 tokens: less than the current turn
  s.messages.push_back({"assistant", "", {ToolCall{"s2c0", "notes", json{{"op", "list"}}, ""}}, "", ""});
  s.messages.push_back({"tool", std::string(3000, 'x'), {}, "s2c0", "notes"});
  auto split = CompactionSplit(s, limits, false);
  REQUIRE(split.has_value());
  CHECK(*split == 5);  // "next ID-2": the current turn's question
  limits.window = 100000;  // every turn fits what is kept: nothing to fold
  CHECK_FALSE(CompactionSplit(s, limits, false).has_value());
  limits.window = 1000;
  auto aggressive = CompactionSplit(s, limits, true);
  REQUIRE(aggressive.has_value());
  CHECK(*aggressive == 5);
  s.messages.resize(7);

  // After a compaction: the summary rides in the system message; older large results are cut.
  s.compacted_to = 2;
  s.pruned_to = 5;
  s.summary = "the goal named ID-1";
  std::vector<Message> compacted = BuildPrompt(s, "new instructions", limits);
  CHECK_THAT(compacted[0].content, ContainsSubstring("new instructions"));
  CHECK_THAT(compacted[0].content, ContainsSubstring("the goal named ID-1"));
  CHECK(compacted[1].role == "assistant");
  CHECK(compacted[2].role == "tool");
  CHECK_THAT(compacted[2].content, ContainsSubstring("left out to save room"));
  CHECK(compacted[2].tool_call_id == "s1c0");  // still answers its call

  // The cached prompt is the built one: as messages are appended, and after the compacted
  // point, the pruning, the summary or the window change. So is its size without building it.
  auto same = [](const std::vector<Message>& a, const std::vector<Message>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (ToJson(a[i]) != ToJson(b[i])) return false;
    }
    return true;
  };
  PromptCache cache;
  auto check_cache = [&](const char* when) {
    INFO(when);
    const std::vector<Message> built = BuildPrompt(s, "new instructions", limits);
    CHECK(same(cache.Get(s, "new instructions", limits), built));
    CHECK(PromptBytes(s, "new instructions", limits) == PromptBytes(built));
  };
  check_cache("first");
  s.messages.push_back({"user", "third ID-3", {}, "", ""});
  s.messages.push_back({"assistant", "", {ToolCall{"s3c0", "notes", json{{"op", "read"}}, ""}}, "", ""});
  s.messages.push_back({"tool", std::string(4000, 'y'), {}, "s3c0", "notes"});
  check_cache("appended");
  s.pruned_to = 8;
  check_cache("pruned further");
  s.summary = "the goal named ID-1, then ID-2";
  s.compacted_to = 5;
  check_cache("compacted further");
  limits.window = 600;  // the last result is now longer than the window holds: shown cut
  check_cache("a smaller window");
  check_cache("nothing changed");

  CHECK(WindowFromRefusal("This model's maximum context length is 4096 tokens. However, you requested 5000") == 4096);
  CHECK(WindowFromRefusal("The decoder prompt (length 5000) is longer than the maximum model length of 2048.") == 2048);
  CHECK(WindowFromRefusal("Prompt length (5000) exceeds maximum input length (1024)") == 1024);
  CHECK_FALSE(WindowFromRefusal("rate limited").has_value());
}

// A responder for FakeOpenAiServer that plays Agentish; a new message makes it read its own
// file (big-<n>.txt) of the workspace (the same call five times in a row would be a loop the
// runtime stops).
FakeOpenAiServer::Responder AgentishResponder() {
  return [](const json& body) {
    std::vector<std::pair<std::string, std::string>> messages;
    for (const auto& m : body["messages"]) {
      messages.emplace_back(m.value("role", ""), m.contains("content") && m["content"].is_string() ? m["content"].get<std::string>() : "");
    }
    auto [text, read_file] = Agentish::Decide(messages);
    FakeCompletion c;
    if (read_file) {
      std::smatch n;
      const std::string& last = messages.back().second;
      const std::string file = std::regex_search(last, n, std::regex(R"(message (\d+))")) ? "big-" + n[1].str() + ".txt" : "big-0.txt";
      c.tool_calls = {{{"index", 0}, {"id", "call-1"}, {"type", "function"},
                       {"function", {{"name", "notes"}, {"arguments", json{{"op", "read"}, {"path", file}}.dump()}}}}};
    } else {
      c.content = {text};
    }
    return c;
  };
}

TEST_CASE("an agent on a small window answers every message for a long conversation: no prompt over the window, "
          "identifiers kept, the transcript whole, the prefix stable between compactions",
          "[context]") {
  TempDir dir;
  FakeOpenAiServer model;
  REQUIRE(model.Start());
  model.SetMaxModelLen(4096);  // learned from GET /v1/models: the spec gives no contextTokens
  model.SetResponder(AgentishResponder());
  ModelRegistry models;
  RegisterBuiltinModels(&models);
  AgentRun run = OpenAiAgent(model.base_url());
  run.spec.model.reply_reserve_tokens = 256;
  Worker w(dir.Sub("s"), run, &models);
  REQUIRE(w.runner->model().CheckHealth().ok());  // as the worker's health thread does: the window is learned
  for (int i = 0; i <= 60; ++i) {
    std::ofstream(w.store->workspace_dir() + "/big-" + std::to_string(i) + ".txt") << Padding(2500);  // a few KB each
  }
  REQUIRE(w.Run() == Phase::kIdle);

  const int kMessages = 60;
  for (int i = 1; i <= kMessages; ++i) {
    INFO("message " << i);
    w.Send("message " + std::to_string(i) + ": remember ID-" + std::to_string(i) + ". " + Padding(300));
    REQUIRE(w.Run() == Phase::kIdle);
    CHECK_THAT(w.runner->state().result, ContainsSubstring("answered: message " + std::to_string(i) + ":"));
  }
  const RunState& s = w.runner->state();
  CHECK(s.turns == kMessages + 1);
  CHECK(s.phase == Phase::kIdle);
  CHECK(s.compactions >= 3);
  CHECK(model.max_prompt_tokens() <= 4096);
  CHECK(s.context_window == 4096);

  // Every message answered once, in order.
  std::vector<std::string> answers;
  for (const auto& e : EventsOf(*w.store, event_type::kPhaseChanged)) {
    if (e.data.value("phase", "") == "Idle") answers.push_back(e.data.value("result", ""));
  }
  REQUIRE(answers.size() == static_cast<size_t>(kMessages + 1));
  for (int i = 1; i <= kMessages; ++i) CHECK_THAT(answers[static_cast<size_t>(i)], ContainsSubstring("message " + std::to_string(i) + ":"));

  // Nothing forgotten: every identifier is in what the model sees now.
  std::string seen;
  for (const auto& m : BuildPrompt(s, run.spec.instructions, ContextLimitsFor(run, 4096))) seen += m.content + "\n";
  for (int i = 1; i <= kMessages; ++i) CHECK_THAT(seen, ContainsSubstring("ID-" + std::to_string(i)));

  // The transcript keeps every message; the event log every original.
  auto transcript = w.store->ReadTranscript(0, s.persisted_messages);
  REQUIRE(transcript.ok());
  CHECK(static_cast<int64_t>(transcript->size()) == s.persisted_messages);
  CHECK(s.persisted_messages == s.messages.size());
  CHECK(s.messages.size() > 4 * kMessages);
  // Memory holds the live context only: what the summary covers is left to the transcript,
  // in the running worker and in one started from the store.
  CHECK(s.messages.base() == s.compacted_to);
  CHECK(s.messages.held() < s.messages.size() / 2);
  auto reloaded = LoadRunState(*w.store);
  REQUIRE(reloaded.ok());
  CHECK(reloaded->messages.base() == s.compacted_to);
  CHECK(reloaded->messages.size() == s.messages.size());
  CHECK(PromptBytes(BuildPrompt(*reloaded, run.spec.instructions, ContextLimitsFor(run, 4096))) ==
        PromptBytes(BuildPrompt(s, run.spec.instructions, ContextLimitsFor(run, 4096))));

  // Between compactions a prompt only grows at its end: the prefix a server caches holds. It
  // changes at most once per compaction (a summary, or old tool results left out).
  std::vector<json> chats;
  for (const auto& r : model.requests()) {
    if (r.path == "/v1/chat/completions" && !IsSummaryRequest(r.body["messages"][0].value("content", ""))) {
      chats.push_back(r.body["messages"]);
    }
  }
  int extended = 0, changed = 0;
  for (size_t i = 1; i < chats.size(); ++i) {
    bool extends = chats[i].size() >= chats[i - 1].size();
    for (size_t k = 0; extends && k < chats[i - 1].size(); ++k) extends = chats[i][k] == chats[i - 1][k];
    (extends ? extended : changed) += 1;
  }
  size_t compacted = 0;
  for (const auto& e : EventsOf(*w.store, event_type::kContextCompacted)) compacted += !e.data.value("nothingToFold", false);
  INFO("prompts " << chats.size() << ", changed " << changed << ", compactions " << compacted << " ("
                  << s.compactions << " summaries)");
  CHECK(changed > 0);
  CHECK(static_cast<size_t>(changed) <= compacted);
  CHECK(extended >= kMessages);
}

namespace {

struct CrashNow {};

// A model served in process with the double's count and vLLM's refusal, which can stop the
// worker (an exception out of Runner::Run, the store left as a kill -9 leaves it) at a
// chosen call.
struct WindowedModel {
  int64_t window = 1500;
  int calls = 0;         // over every worker start
  int crash_at = 0;      // the call that never returns; 0: none
  int summaries = 0;
  int refused = 0;
  int flush_calls = 0;   // model calls of memory flushes
  int leaked_flushes = 0;  // turn prompts that carry a flush's messages
};


class WindowedBackend : public ModelBackend {
 public:
  explicit WindowedBackend(WindowedModel* m) : m_(m) {}
  Status Chat(const ModelRequest& request, ChatStream* out) override {
    if (++m_->calls == m_->crash_at) throw CrashNow{};
    json messages = json::array();
    std::vector<std::pair<std::string, std::string>> pairs;
    for (const auto& msg : *request.messages) {
      json j = {{"role", msg.role}, {"content", msg.content}};
      if (!msg.tool_calls.empty()) {
        j["tool_calls"] = json::array();
        for (const auto& c : msg.tool_calls) j["tool_calls"].push_back(ToJson(c));
      }
      messages.push_back(j);
      pairs.emplace_back(msg.role, msg.content);
    }
    json tools = json::array();
    for (const auto& t : request.tools) tools.push_back({{"name", t.name}, {"parameters", t.parameters}});
    const int64_t tokens = FakeOpenAiServer::CountPromptTokens(messages) + static_cast<int64_t>(tools.dump().size() / 4);
    if (tokens >= m_->window) {
      ++m_->refused;
      return InvalidArgument("HTTP 400: This model's maximum context length is " + std::to_string(m_->window) +
                             " tokens. However, your request has " + std::to_string(tokens) +
                             " input tokens. Please reduce the length of the input messages.");
    }
    // A memory flush: store the identifiers about to leave the context, then say done.
    const bool flush = std::any_of(pairs.begin(), pairs.end(), [](const auto& p) { return p.first == "user" && IsFlushRequest(p.second); });
    if (flush) {
      ++m_->flush_calls;
      if (request.tools.empty() || request.tools.front().name.rfind("memory_", 0) != 0) ++m_->leaked_flushes;
      if (pairs.back().first == "user") {
        out->Call(ToolCall{"", "memory_store", json{{"text", "identifiers: " + Joined(Identifiers(pairs.back().second))}}, ""});
      } else {
        out->Text("done");
      }
      out->Usage(tokens, 5);
      out->Finish(pairs.back().first == "user" ? "tool_calls" : "stop");
      return Status::Ok();
    }
    // The agent never calls memory_store in a turn: one in a turn's messages came from a flush.
    m_->leaked_flushes += messages.dump().find("memory_store") != std::string::npos;
    auto [text, read_file] = Agentish::Decide(pairs);
    m_->summaries += IsSummaryRequest(pairs.front().second);
    if (read_file) {
      std::smatch n;
      const std::string& last = pairs.back().second;
      const std::string file = std::regex_search(last, n, std::regex(R"(message (\d+))")) ? "big-" + n[1].str() + ".txt" : "big-0.txt";
      out->Call(ToolCall{"", "notes", json{{"op", "read"}, {"path", file}}, ""});
    } else {
      out->Text(text);
    }
    out->Usage(tokens, 5);
    out->Finish(read_file ? "tool_calls" : "stop");
    return Status::Ok();
  }

 private:
  WindowedModel* m_;
};

AgentRun WindowedAgent(std::optional<int64_t> context_tokens, bool with_memory = false) {
  AgentRun run = OpenAiAgent("http://unused:1/v1");
  run.spec.model.backend = "windowed";
  run.spec.model.context_tokens = context_tokens;
  run.spec.model.reply_reserve_tokens = 100;
  if (with_memory) {
    ToolSpec memory;
    memory.name = "memory";
    memory.kind = "memory";
    run.spec.tools.push_back(memory);
  }
  return run;
}

// Runs `messages` turns (after the goal) over as many worker starts as the crash needs.
// Returns the store's events.
std::vector<Event> LiveThrough(const std::string& dir, const AgentRun& run, WindowedModel* model, int messages,
                               size_t file_bytes = 1500) {
  ModelRegistry models;
  RegisterBuiltinModels(&models);
  models.Register("windowed", [model](const BackendContext&) -> Result<std::unique_ptr<ModelBackend>> {
    return std::unique_ptr<ModelBackend>(new WindowedBackend(model));
  });
  int sent = 0;
  for (int start = 0; start < 5; ++start) {
    Worker w(dir, run, &models);
    for (int i = 0; i <= messages; ++i) {
      std::ofstream(w.store->workspace_dir() + "/big-" + std::to_string(i) + ".txt") << Padding(file_bytes);
    }
    try {
      // Outside REQUIRE, which would take the crash for a failure.
      Phase phase = w.Run();
      REQUIRE(phase == Phase::kIdle);
      while (sent < messages) {
        ++sent;
        w.Send("message " + std::to_string(sent) + ": remember ID-" + std::to_string(sent) + ". " + Padding(200));
        phase = w.Run();
        REQUIRE(phase == Phase::kIdle);
      }
      auto events = ReadAllEvents(*w.store);
      REQUIRE(events.ok());
      return *events;
    } catch (const CrashNow&) {
      // kill -9: the next start finds the store as it was left.
    }
  }
  FAIL("the run did not finish in 5 starts");
  return {};
}

}  // namespace

TEST_CASE("a crash at any point of a compaction: the agent goes on with exactly one summary for that range",
          "[context][crash]") {
  // Where the model calls fall: a run with no crash, for reference.
  WindowedModel reference;
  TempDir ref_dir;
  std::vector<Event> ref_events = LiveThrough(ref_dir.Sub("s"), WindowedAgent(1500), &reference, 14);
  REQUIRE(reference.summaries >= 2);
  REQUIRE(reference.refused == 0);

  // Every model call up to the one after the second summary: before a compaction starts,
  // at its summary request, and at the first call that uses the summary.
  for (int crash_at = 2; crash_at <= reference.calls; ++crash_at) {
    DYNAMIC_SECTION("the worker dies at model call " << crash_at << " of " << reference.calls) {
      WindowedModel model;
      model.crash_at = crash_at;
      TempDir dir;
      std::vector<Event> events = LiveThrough(dir.Sub("s"), WindowedAgent(1500), &model, 14);
      std::map<std::pair<int64_t, int64_t>, int> summaries;
      std::vector<std::string> answers;
      for (const auto& e : events) {
        if (e.type == event_type::kContextCompacted && e.data.contains("summary")) {
          ++summaries[{e.data["from"].get<int64_t>(), e.data["to"].get<int64_t>()}];
        }
        if (e.type == event_type::kPhaseChanged && e.data.value("phase", "") == "Idle") {
          answers.push_back(e.data.value("result", ""));
        }
        CHECK(e.data.value("phase", "") != "Degraded");
      }
      REQUIRE_FALSE(summaries.empty());
      for (const auto& [range, n] : summaries) {
        INFO("messages [" << range.first << ", " << range.second << ")");
        CHECK(n == 1);
      }
      REQUIRE(answers.size() == 15);
      for (int i = 1; i <= 14; ++i) CHECK_THAT(answers[static_cast<size_t>(i)], ContainsSubstring("message " + std::to_string(i) + ":"));
    }
  }
}

TEST_CASE("with a memory tool, a silent turn stores what is about to be compacted first; a crash at any point of "
          "it ends with one flush and one summary per range",
          "[context][crash][memory]") {
  WindowedModel reference;
  TempDir ref_dir;
  std::vector<Event> ref_events = LiveThrough(ref_dir.Sub("s"), WindowedAgent(1500, true), &reference, 14);
  REQUIRE(reference.summaries >= 2);
  REQUIRE(reference.flush_calls >= 4);  // a store and a "done" per flush
  CHECK(reference.leaked_flushes == 0);  // the flush is silent: no turn's prompt shows it

  for (int crash_at = 2; crash_at <= reference.calls; ++crash_at) {
    DYNAMIC_SECTION("the worker dies at model call " << crash_at << " of " << reference.calls) {
      WindowedModel model;
      model.crash_at = crash_at;
      TempDir dir;
      std::vector<Event> events = LiveThrough(dir.Sub("s"), WindowedAgent(1500, true), &model, 14);
      CHECK(model.leaked_flushes == 0);
      std::map<std::pair<int64_t, int64_t>, int> summaries, flushes;
      std::vector<std::string> answers;
      for (const auto& e : events) {
        const auto range = [&] { return std::make_pair(e.data["from"].get<int64_t>(), e.data["to"].get<int64_t>()); };
        if (e.type == event_type::kContextCompacted && e.data.contains("summary")) ++summaries[range()];
        if (e.type == event_type::kMemoryFlushed) {
          ++flushes[range()];
          CHECK(e.data["calls"].size() == 1);
        }
        if (e.type == event_type::kPhaseChanged && e.data.value("phase", "") == "Idle") answers.push_back(e.data.value("result", ""));
      }
      REQUIRE_FALSE(summaries.empty());
      CHECK(flushes == summaries);  // one flush before each summary, for the same range
      for (const auto& [range, n] : summaries) {
        INFO("messages [" << range.first << ", " << range.second << ")");
        CHECK(n == 1);
      }
      // A flush a crash cut off is asked again with the same messages: its entry is replaced,
      // not stored twice.
      auto store = RunStore::Open(dir.Sub("s"), RunStore::OpenMode::kMustExist);
      REQUIRE(store.ok());
      size_t entries = 0;
      std::set<std::string> remembered;
      REQUIRE((*store)->ForEachMemory([&](std::string_view, std::string_view v) {
        ++entries;
        for (const auto& id : Identifiers(std::string(v))) remembered.insert(id);
        return true;
      }).ok());
      CHECK(entries == flushes.size());
      CHECK(remembered.count("ID-1") == 1);
      REQUIRE(answers.size() == 15);
      for (int i = 1; i <= 14; ++i) CHECK_THAT(answers[static_cast<size_t>(i)], ContainsSubstring("message " + std::to_string(i) + ":"));
    }
  }
}

TEST_CASE("a service whose window is smaller than the spec says: its refusal folds all but the current turn and the "
          "turn is asked again; the window it names is used from then on",
          "[context]") {
  WindowedModel model;  // 1500 tokens
  TempDir dir;
  std::vector<Event> events = LiveThrough(dir.Sub("s"), WindowedAgent(8192), &model, 12);
  CHECK(model.refused >= 1);
  int refusal_compactions = 0;
  int64_t window = 0;
  std::vector<std::string> answers;
  for (const auto& e : events) {
    if (e.type == event_type::kContextCompacted &&
        e.data.value("reason", "").find("does not fit") != std::string::npos) {
      ++refusal_compactions;
    }
    if (e.type == event_type::kModelRequest) window = e.data.value("contextWindow", int64_t{0});
    if (e.type == event_type::kPhaseChanged && e.data.value("phase", "") == "Idle") answers.push_back(e.data.value("result", ""));
    CHECK(e.data.value("phase", "") != "Degraded");
  }
  CHECK(refusal_compactions >= 1);
  CHECK(answers.size() == 13);
  // The spec's contextTokens stands (a person set it); what the service said is for specs
  // that give none.
  CHECK(window == 8192);
}

TEST_CASE("a tool result larger than the whole window is shown cut, with its size; the turn goes on", "[context]") {
  WindowedModel model;  // 1500 tokens
  TempDir dir;
  AgentRun run = WindowedAgent(1500);
  run.spec.tools[0].max_output_bytes = 64 * 1024;  // whole in the log: 20 KB is under the tool's cap
  std::vector<Event> events = LiveThrough(dir.Sub("s"), run, &model, 3, 20000);
  std::vector<std::string> answers;
  size_t whole_results = 0;
  for (const auto& e : events) {
    if (e.type == event_type::kPhaseChanged && e.data.value("phase", "") == "Idle") answers.push_back(e.data.value("result", ""));
    if (e.type == event_type::kToolResult && e.data.dump().size() > 20000) ++whole_results;
    CHECK(e.data.value("phase", "") != "Degraded");
  }
  CHECK(answers.size() == 4);
  CHECK(whole_results == 4);  // the goal's and each message's: the log keeps each result whole
  CHECK(model.refused == 0);  // never sent whole: a 20 KB result is about 5,000 tokens

  auto store = RunStore::Open(dir.Sub("s"), RunStore::OpenMode::kMustExist);
  REQUIRE(store.ok());
  auto state = LoadRunState(**store);
  REQUIRE(state.ok());
  std::string shown;
  for (const auto& m : BuildPrompt(*state, run.spec.instructions, ContextLimitsFor(run, std::nullopt))) shown += m.content;
  CHECK_THAT(shown, ContainsSubstring("[cut: this result is 20"));
}

TEST_CASE("spec.context.summaryModel writes the summaries; the agent's model only answers turns", "[context]") {
  TempDir dir;
  FakeOpenAiServer agent_model, summary_model;
  REQUIRE(agent_model.Start());
  REQUIRE(summary_model.Start());
  std::atomic<int> summaries_at_agent{0}, summaries_at_summarizer{0};
  auto responder = [](std::atomic<int>* summaries) {
    return [summaries](const json& body) {
      std::vector<std::pair<std::string, std::string>> messages;
      for (const auto& m : body["messages"]) {
        messages.emplace_back(m.value("role", ""), m.contains("content") && m["content"].is_string() ? m["content"].get<std::string>() : "");
      }
      if (IsSummaryRequest(messages.front().second)) ++*summaries;
      FakeCompletion c;
      c.content = {Agentish::Decide(messages).first + "."};  // text only: no tool calls here
      return c;
    };
  };
  agent_model.SetResponder(responder(&summaries_at_agent));
  summary_model.SetResponder(responder(&summaries_at_summarizer));
  agent_model.SetMaxModelLen(2048);
  ModelRegistry models;
  RegisterBuiltinModels(&models);
  AgentRun run = OpenAiAgent(agent_model.base_url());
  run.spec.model.context_tokens = 2048;
  run.spec.model.reply_reserve_tokens = 128;
  ContextSpec context;
  ModelEndpointSpec small;
  small.backend = "openai";
  small.name = "llm";
  small.endpoint = summary_model.base_url();
  context.summary_model = small;
  run.spec.context = context;
  Worker w(dir.Sub("s"), run, &models);
  REQUIRE(w.Run() == Phase::kIdle);
  for (int i = 1; i <= 30; ++i) {
    w.Send("message " + std::to_string(i) + ": remember ID-" + std::to_string(i) + ". " + Padding(400));
    REQUIRE(w.Run() == Phase::kIdle);
  }
  CHECK(w.runner->state().compactions >= 1);
  CHECK(summaries_at_summarizer.load() >= 1);
  CHECK(summaries_at_agent.load() == 0);
  CHECK(w.runner->state().turns == 31);
}

TEST_CASE("spec.retention removes only history a checkpoint and a summary cover; the agent, its memory and fork "
          "from what is kept go on",
          "[context][retention]") {
  TempDir dir;
  FakeOpenAiServer model;
  REQUIRE(model.Start());
  model.SetMaxModelLen(4096);  // counts prompt tokens and refuses what does not fit, as vLLM does
  model.SetResponder(AgentishResponder());
  ModelRegistry models;
  RegisterBuiltinModels(&models);
  AgentRun run = OpenAiAgent(model.base_url());
  run.spec.model.context_tokens = 4096;
  run.spec.model.reply_reserve_tokens = 256;
  run.spec.retention = RetentionSpec{2, std::nullopt};  // two days
  FakeClock clock(int64_t{1800000000000});
  const int64_t kDay = 24 * 3600 * 1000;
  Worker w(dir.Sub("s"), run, &models, &clock);
  for (int i = 0; i <= 60; ++i) {
    std::ofstream(w.store->workspace_dir() + "/big-" + std::to_string(i) + ".txt") << Padding(2500);
  }
  REQUIRE(w.store->PutMemory({{"fact/early", "ID-1 is the first identifier"}}, true).ok());
  REQUIRE(w.Run() == Phase::kIdle);
  // Ten days of six messages each.
  int sent = 0;
  for (int day = 0; day < 10; ++day) {
    for (int i = 0; i < 6; ++i) {
      ++sent;
      w.Send("message " + std::to_string(sent) + ": remember ID-" + std::to_string(sent) + ". " + Padding(300));
      clock.now += 3600 * 1000;
      REQUIRE(w.Run() == Phase::kIdle);
      CHECK_THAT(w.runner->state().result, ContainsSubstring("answered: message " + std::to_string(sent) + ":"));
    }
    clock.now += kDay - 6 * 3600 * 1000;
  }
  const RunState& s = w.runner->state();
  REQUIRE(s.compactions >= 2);

  // Something was removed, and it was recorded.
  auto trims = EventsOf(*w.store, event_type::kHistoryTrimmed);
  REQUIRE_FALSE(trims.empty());
  const json& last_trim = trims.back().data;
  auto first_seq = w.store->FirstSeq();
  REQUIRE(first_seq.ok());
  CHECK(*first_seq == last_trim["eventsBefore"].get<uint64_t>());
  CHECK(*first_seq > 100);
  auto first_cp = w.store->FirstCheckpointStep();
  REQUIRE(first_cp.ok());
  REQUIRE(first_cp->has_value());
  CHECK(**first_cp == last_trim["checkpointsBefore"].get<int64_t>());

  // Only what is covered: nothing newer than two days; no message the summary does not cover.
  auto oldest = w.store->GetEvent(*first_seq);
  REQUIRE(oldest.ok());
  REQUIRE(oldest->has_value());
  auto oldest_event = Event::Decode(*first_seq, **oldest);
  REQUIRE(oldest_event.ok());
  CHECK(oldest_event->ts_ms < clock.now - 2 * kDay);
  const int64_t messages_before = last_trim["messagesBefore"].get<int64_t>();
  CHECK(messages_before > 0);
  CHECK(messages_before <= s.compacted_to);
  CHECK_FALSE(w.store->ReadTranscript(messages_before - 1, messages_before).ok());
  auto kept = w.store->ReadTranscript(messages_before, s.persisted_messages);
  REQUIRE(kept.ok());

  // Memory is never touched.
  int memory_entries = 0;
  REQUIRE(w.store->ForEachMemory([&](std::string_view k, std::string_view) { memory_entries += k == "fact/early"; return true; }).ok());
  CHECK(memory_entries == 1);

  // The agent goes on: a start from the store gives the same state, identifiers from the
  // first day are still in what the model sees, and a new message is answered.
  auto reloaded = LoadRunState(*w.store);
  REQUIRE(reloaded.ok());
  CHECK(reloaded->ToCheckpointJson() == s.ToCheckpointJson());
  std::string seen;
  for (const auto& m : BuildPrompt(s, run.spec.instructions, ContextLimitsFor(run, std::nullopt))) seen += m.content + "\n";
  CHECK_THAT(seen, ContainsSubstring("ID-1,"));
  CHECK_THAT(seen, ContainsSubstring("ID-2,"));
  ++sent;
  w.Send("message " + std::to_string(sent) + ": remember ID-" + std::to_string(sent) + ".");
  REQUIRE(w.Run() == Phase::kIdle);
  CHECK_THAT(w.runner->state().result, ContainsSubstring("answered: message " + std::to_string(sent) + ":"));

  // Fork reaches every kept checkpoint and none before; the fork's events keep their numbers.
  const int64_t removed_step = **first_cp - 1;
  Status too_old = ForkRun(*w.store, removed_step, dir.Sub("fork-old"));
  CHECK(too_old.code() == StatusCode::kNotFound);
  CHECK_THAT(too_old.message(), ContainsSubstring("removed by spec.retention"));
  const int64_t step = w.runner->state().step;
  const uint64_t last_seq = w.store->last_seq();
  w.runner.reset();
  REQUIRE(ForkRun(*w.store, step, dir.Sub("fork")).ok());
  auto source_first = w.store->FirstSeq();
  REQUIRE(source_first.ok());
  w.store.reset();
  // `inspect` says what was removed.
  auto inspected = carapace::testing::RunCommand({CARAPACE_BIN, "inspect", "--state-dir", dir.Sub("s")});
  CHECK(inspected.exit_code == 0);
  CHECK_THAT(inspected.out, ContainsSubstring("were removed by spec.retention"));
  CHECK_THAT(inspected.out, ContainsSubstring("events before " + std::to_string(*source_first)));
  auto fork_store = RunStore::Open(dir.Sub("fork"), RunStore::OpenMode::kMustExist);
  REQUIRE(fork_store.ok());
  // The copies keep their numbers: the fork's log starts where the source's does now.
  auto fork_first = (*fork_store)->FirstSeq();
  REQUIRE(fork_first.ok());
  CHECK(*fork_first == *source_first);
  CHECK((*fork_store)->last_seq() <= last_seq + 1);
  auto fork_state = LoadRunState(**fork_store);
  REQUIRE(fork_state.ok());
  CHECK(fork_state->turns == sent + 1);
}
