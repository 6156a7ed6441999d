// The RunStore: atomic batches, one writer per state dir, and refusing damaged or foreign
// state dirs instead of resetting them.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <filesystem>
#include <fstream>

#include "tests/support/child_process.h"
#include "worker/store/run_store.h"

using namespace carapace;
using carapace::testing::TempDir;
using Catch::Matchers::ContainsSubstring;

namespace {
std::unique_ptr<RunStore> OpenOrDie(const std::string& dir) {
  auto s = RunStore::Open(dir, RunStore::OpenMode::kCreateIfMissing);
  INFO(s.status().ToString());
  REQUIRE(s.ok());
  return std::move(*s);
}
}  // namespace

TEST_CASE("events, checkpoint and transcript written in one batch read back after reopening", "[store]") {
  TempDir tmp;
  std::string dir = tmp.Sub("state");
  {
    auto store = OpenOrDie(dir);
    CHECK(store->created());
    CHECK(store->last_seq() == 0);
    StoreBatch b;
    b.events = {"e1", "e2"};
    b.checkpoint = std::make_pair(int64_t{1}, std::string("cp1"));
    b.transcript = {{0, "m0"}, {1, "m1"}};
    b.meta = {{"k", "v"}};
    auto first = store->Commit(b, true);
    REQUIRE(first.ok());
    CHECK(*first == 1);
    StoreBatch c;
    c.events = {"e3"};
    c.checkpoint = std::make_pair(int64_t{2}, std::string("cp2"));
    REQUIRE(store->Commit(c, false).ok());
    CHECK(store->last_seq() == 3);
  }
  auto store = OpenOrDie(dir);
  CHECK_FALSE(store->created());
  CHECK(store->last_seq() == 3);
  std::vector<std::string> seen;
  REQUIRE(store->ForEachEvent(2, [&](uint64_t seq, std::string_view v) {
                  seen.push_back(std::to_string(seq) + "=" + std::string(v));
                  return true;
                }).ok());
  CHECK(seen == std::vector<std::string>{"2=e2", "3=e3"});
  auto cp = store->LatestCheckpoint();
  REQUIRE(cp.ok());
  REQUIRE(cp->has_value());
  CHECK((*cp)->first == 2);
  CHECK((*cp)->second == "cp2");
  auto cp1 = store->LatestCheckpoint(1);
  REQUIRE(cp1.ok());
  CHECK((*cp1)->second == "cp1");
  auto t = store->ReadTranscript(0, 2);
  REQUIRE(t.ok());
  CHECK(*t == std::vector<std::string>{"m0", "m1"});
  auto tail = store->ReadTranscript(1, 2);
  REQUIRE(tail.ok());
  CHECK(*tail == std::vector<std::string>{"m1"});
  auto missing = store->ReadTranscript(0, 3);
  CHECK(missing.status().code() == StatusCode::kCorruption);
  auto meta = store->GetMeta("k");
  REQUIRE(meta.ok());
  CHECK(**meta == "v");
}

TEST_CASE("a second opener of a state dir fails at once, naming the holder", "[store]") {
  TempDir tmp;
  auto store = OpenOrDie(tmp.Sub("state"));
  auto second = RunStore::Open(tmp.Sub("state"), RunStore::OpenMode::kCreateIfMissing);
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == StatusCode::kBusy);
  CHECK_THAT(second.status().message(), ContainsSubstring("in use by another carapace process (pid " +
                                                          std::to_string(::getpid())));
}

TEST_CASE("the lock is released when the store is closed", "[store]") {
  TempDir tmp;
  { auto store = OpenOrDie(tmp.Sub("state")); }
  auto again = RunStore::Open(tmp.Sub("state"), RunStore::OpenMode::kMustExist);
  CHECK(again.ok());
}

TEST_CASE("a folder with someone else's files is refused and left untouched", "[store]") {
  TempDir tmp;
  std::filesystem::create_directories(tmp.Sub("mine"));
  std::ofstream(tmp.Sub("mine/thesis.tex")) << "precious";
  auto s = RunStore::Open(tmp.Sub("mine"), RunStore::OpenMode::kCreateIfMissing);
  REQUIRE_FALSE(s.ok());
  CHECK(s.status().code() == StatusCode::kFailedPrecondition);
  CHECK_THAT(s.status().message(), ContainsSubstring("not a Carapace state dir"));
  CHECK_THAT(s.status().message(), ContainsSubstring("thesis.tex"));
  CHECK(std::filesystem::exists(tmp.Sub("mine/thesis.tex")));
  CHECK_FALSE(std::filesystem::exists(tmp.Sub("mine/store")));
}

TEST_CASE("inspecting a dir with no run says so", "[store]") {
  TempDir tmp;
  auto s = RunStore::Open(tmp.Sub("nothing"), RunStore::OpenMode::kMustExist);
  REQUIRE_FALSE(s.ok());
  CHECK(s.status().code() == StatusCode::kNotFound);
}

TEST_CASE("a damaged store is reported as corruption and never reset", "[store]") {
  TempDir tmp;
  std::string dir = tmp.Sub("state");
  {
    auto store = OpenOrDie(dir);
    StoreBatch b;
    b.events = {"precious"};
    REQUIRE(store->Commit(b, true).ok());
  }
  // Destroy RocksDB's CURRENT file: the store can no longer find its manifest.
  std::ofstream(dir + "/store/CURRENT", std::ios::trunc) << "garbage\n";
  auto s = RunStore::Open(dir, RunStore::OpenMode::kCreateIfMissing);
  REQUIRE_FALSE(s.ok());
  CHECK(s.status().code() == StatusCode::kCorruption);
  CHECK_THAT(s.status().message(), ContainsSubstring("left untouched"));
  // Still damaged, still there: nothing was recreated over it.
  std::ifstream in(dir + "/store/CURRENT");
  std::string line;
  std::getline(in, line);
  CHECK(line == "garbage");
}

TEST_CASE("a RocksDB database that is not a Carapace store is refused", "[store]") {
  TempDir tmp;
  std::string dir = tmp.Sub("state");
  {
    auto store = OpenOrDie(dir);
  }
  // Simulate a foreign RocksDB: same column families but no format marker.
  std::filesystem::remove_all(dir + "/store");
  std::filesystem::create_directories(dir + "/store");
  std::ofstream(dir + "/store/CURRENT") << "MANIFEST-000001\n";
  auto s = RunStore::Open(dir, RunStore::OpenMode::kCreateIfMissing);
  REQUIRE_FALSE(s.ok());
  CHECK(s.status().code() == StatusCode::kCorruption);
}
