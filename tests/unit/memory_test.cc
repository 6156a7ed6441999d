// Long-term memory: store, search (keywords + embeddings), get, forget; the same results
// after a restart; retries that do not duplicate.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <random>

#include "tests/support/child_process.h"
#include "worker/model/scripted_backend.h"
#include "worker/store/run_store.h"
#include "worker/tools/memory/memory_tools.h"

using namespace carapace;
using carapace::testing::TempDir;
using Catch::Matchers::ContainsSubstring;
using nlohmann::json;

namespace {

struct Memory {
  explicit Memory(const std::string& dir, bool embeddings = true) : embedder({}, 64) {
    auto s = RunStore::Open(dir, RunStore::OpenMode::kCreateIfMissing);
    REQUIRE(s.ok());
    store = std::move(*s);
    ToolSpec spec;
    spec.name = "memory";
    spec.kind = "memory";
    auto made = CreateMemoryTools(spec, ToolEnvironment{store->workspace_dir(), store.get(), embeddings ? &embedder : nullptr});
    REQUIRE(made.ok());
    for (auto& t : *made) tools[t->Schema().name] = std::move(t);
  }
  ToolResult Call(const std::string& tool, const json& args, const std::string& key = "k") {
    return tools.at(tool)->Call(args, ToolContext{"c", key});
  }
  std::vector<std::string> SearchIds(const std::string& query) {
    auto r = Call("memory_search", {{"query", query}, {"limit", 10}});
    REQUIRE(r.ok);
    std::vector<std::string> ids;
    for (const auto& hit : r.output["results"]) ids.push_back(hit["id"]);
    return ids;
  }
  ScriptedBackend embedder;
  std::unique_ptr<RunStore> store;
  std::map<std::string, std::unique_ptr<Tool>> tools;
};

}  // namespace

TEST_CASE("one memory entry gives the model four tools with the right effects", "[memory]") {
  TempDir tmp;
  Memory m(tmp.path());
  REQUIRE(m.tools.size() == 4);
  CHECK(m.tools.at("memory_store")->DefaultEffect() == Effect::kIdempotent);
  CHECK(m.tools.at("memory_search")->DefaultEffect() == Effect::kReadOnly);
  CHECK(m.tools.at("memory_get")->DefaultEffect() == Effect::kReadOnly);
  CHECK(m.tools.at("memory_forget")->DefaultEffect() == Effect::kIdempotent);
}

TEST_CASE("store, search, get and forget", "[memory]") {
  TempDir tmp;
  Memory m(tmp.path());
  REQUIRE(m.Call("memory_store", {{"text", "The customer prefers invoices by email"}, {"tags", {"billing"}}}, "a").ok);
  REQUIRE(m.Call("memory_store", {{"text", "Deploys happen on Tuesday mornings"}}, "b").ok);
  REQUIRE(m.Call("memory_store", {{"text", "The office cat is called Miso"}}, "c").ok);

  auto ids = m.SearchIds("how does the customer want invoices");
  REQUIRE_FALSE(ids.empty());
  CHECK(ids.front() == "a");
  CHECK(m.SearchIds("when are deploys").front() == "b");

  auto got = m.Call("memory_get", {{"id", "a"}});
  REQUIRE(got.ok);
  CHECK(got.output["text"] == "The customer prefers invoices by email");
  CHECK(got.output["tags"] == json::array({"billing"}));

  auto forgot = m.Call("memory_forget", {{"id", "a"}});
  REQUIRE(forgot.ok);
  CHECK(forgot.output["forgotten"] == true);
  CHECK(m.Call("memory_forget", {{"id", "a"}}).output["forgotten"] == false);  // idempotent
  auto gone = m.Call("memory_get", {{"id", "a"}});
  CHECK_FALSE(gone.ok);
  CHECK_THAT(gone.error, ContainsSubstring("no memory with id \"a\""));
  for (const auto& id : m.SearchIds("customer invoices email")) CHECK(id != "a");
}

TEST_CASE("a retried store (same idempotency key) does not duplicate the entry", "[memory]") {
  TempDir tmp;
  Memory m(tmp.path());
  REQUIRE(m.Call("memory_store", {{"text", "remember the milk"}}, "same-key").ok);
  REQUIRE(m.Call("memory_store", {{"text", "remember the milk"}}, "same-key").ok);
  CHECK(m.SearchIds("milk") == std::vector<std::string>{"same-key"});
}

TEST_CASE("memory search results are the same after a restart", "[memory]") {
  TempDir tmp;
  std::vector<std::string> before;
  {
    Memory m(tmp.path());
    for (int i = 0; i < 40; ++i) {
      std::string text = "note " + std::to_string(i) + " about " + (i % 2 ? "paper orders" : "server deploys") +
                         " and item" + std::to_string(i % 7);
      REQUIRE(m.Call("memory_store", {{"text", text}}, "id" + std::to_string(i)).ok);
    }
    REQUIRE(m.Call("memory_forget", {{"id", "id3"}}).ok);
    before = m.SearchIds("paper orders item3");
    REQUIRE(before.size() == 10);
  }
  Memory again(tmp.path());
  CHECK(again.SearchIds("paper orders item3") == before);
  CHECK_FALSE(again.Call("memory_get", {{"id", "id3"}}).ok);
}

TEST_CASE("without an embedding backend, search ranks by keywords", "[memory]") {
  TempDir tmp;
  Memory m(tmp.path(), /*embeddings=*/false);
  REQUIRE(m.Call("memory_store", {{"text", "alpha beta"}}, "1").ok);
  REQUIRE(m.Call("memory_store", {{"text", "gamma delta"}}, "2").ok);
  auto r = m.Call("memory_search", {{"query", "delta"}});
  REQUIRE(r.ok);
  REQUIRE(r.output["results"].size() == 1);
  CHECK(r.output["results"][0]["id"] == "2");
  CHECK(r.output["results"][0]["vectorScore"] == 0);
}

TEST_CASE("bad memory arguments get a clear error", "[memory]") {
  TempDir tmp;
  Memory m(tmp.path());
  CHECK_THAT(m.Call("memory_store", {{"text", ""}}).error, ContainsSubstring("\"text\" (a non-empty string) is required"));
  CHECK_THAT(m.Call("memory_store", {{"text", "x"}, {"tags", "nope"}}).error, ContainsSubstring("\"tags\" must be a list of strings"));
  CHECK_THAT(m.Call("memory_search", {{"query", "x"}, {"limit", 0}}).error, ContainsSubstring("\"limit\" must be an integer from 1 to 50"));
  CHECK_THAT(m.Call("memory_search", json::object()).error, ContainsSubstring("\"query\""));
  CHECK_THAT(m.Call("memory_get", {{"id", 5}}).error, ContainsSubstring("\"id\" (a non-empty string) is required"));
}

TEST_CASE("int8 dot product matches the scalar one, and quantized cosine tracks the float one", "[memory]") {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  for (size_t n : {7u, 16u, 33u, 768u}) {
    std::vector<float> a(n), b(n);
    for (auto& x : a) x = normal(rng);
    for (auto& x : b) x = normal(rng);
    auto qa = QuantizeUnit(a), qb = QuantizeUnit(b);
    int32_t scalar = 0;
    for (size_t i = 0; i < n; ++i) scalar += int32_t{qa[i]} * int32_t{qb[i]};
    CHECK(DotInt8(qa.data(), qb.data(), n) == scalar);
    double dot = 0, na = 0, nb = 0;
    for (size_t i = 0; i < n; ++i) {
      dot += a[i] * b[i];
      na += a[i] * a[i];
      nb += b[i] * b[i];
    }
    double cosine = dot / std::sqrt(na * nb);
    CHECK(std::abs(scalar / (127.0 * 127.0) - cosine) < 0.05);
  }
}
