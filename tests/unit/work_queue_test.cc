// The operator's work queue and rate limiters: deduplication, no key worked on twice at
// once, re-queue after Done, delays and backoff, the token bucket, shutdown.
#include <catch2/catch_test_macros.hpp>

#include <atomic>
#include <set>
#include <thread>

#include "operator/kube/work_queue.h"

using namespace carapace::kube;
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST_CASE("per-item backoff doubles from 5 ms to a 1000 s cap and starts afresh after Forget", "[operator][queue]") {
  ItemExponentialRateLimiter r;
  const TimePoint now{};
  CHECK(r.When("a", now) == milliseconds(5));
  CHECK(r.When("a", now) == milliseconds(10));
  CHECK(r.When("a", now) == milliseconds(20));
  CHECK(r.When("b", now) == milliseconds(5));  // per key
  CHECK(r.Requeues("a") == 3);
  for (int i = 0; i < 100; ++i) r.When("a", now);
  CHECK(r.When("a", now) == seconds(1000));
  r.Forget("a");
  CHECK(r.Requeues("a") == 0);
  CHECK(r.When("a", now) == milliseconds(5));
}

TEST_CASE("the token bucket lets a burst of 100 through, then 10 a second", "[operator][queue]") {
  TokenBucketRateLimiter r(10, 100);
  TimePoint now{};
  for (int i = 0; i < 100; ++i) CHECK(r.When("k", now) == Duration::zero());
  CHECK(r.When("k", now) == milliseconds(100));
  CHECK(r.When("k", now) == milliseconds(200));
  now += seconds(60);  // refilled, up to the burst
  for (int i = 0; i < 100; ++i) CHECK(r.When("k", now) == Duration::zero());
  CHECK(r.When("k", now) > Duration::zero());
}

TEST_CASE("the controller limiter waits for the longer of backoff and bucket", "[operator][queue]") {
  DefaultControllerRateLimiter r;
  const TimePoint now{};
  CHECK(r.When("a", now) == milliseconds(5));
  CHECK(r.When("a", now) == milliseconds(10));
}

TEST_CASE("a key is queued once however often it is added, and re-queued if added while in work", "[operator][queue]") {
  WorkQueue q;
  q.Add("ns/a");
  q.Add("ns/a");
  q.Add("ns/b");
  CHECK(q.Len() == 2);
  std::string key;
  REQUIRE(q.Get(&key));
  CHECK(key == "ns/a");
  q.Add("ns/a");  // changed while being reconciled
  q.Add("ns/a");
  CHECK(q.Len() == 1);  // not handed to a second worker now
  REQUIRE(q.Get(&key));
  CHECK(key == "ns/b");
  q.Done("ns/b");
  q.Done("ns/a");  // now it comes back, once
  CHECK(q.Len() == 1);
  REQUIRE(q.Get(&key));
  CHECK(key == "ns/a");
  q.Done("ns/a");
  CHECK(q.Len() == 0);
}

TEST_CASE("delayed and rate-limited keys come after ready ones", "[operator][queue]") {
  WorkQueue q;
  q.AddAfter("late", milliseconds(50));
  q.AddRateLimited("failed");  // 5 ms
  q.Add("now");
  std::string key;
  REQUIRE(q.Get(&key));
  CHECK(key == "now");
  q.Done(key);
  REQUIRE(q.Get(&key));
  CHECK(key == "failed");
  q.Done(key);
  REQUIRE(q.Get(&key));
  CHECK(key == "late");
  q.Done(key);
  CHECK(q.Requeues("failed") == 1);
  q.Forget("failed");
  CHECK(q.Requeues("failed") == 0);
}

TEST_CASE("N workers never work on one key at the same time, and every key is done", "[operator][queue]") {
  WorkQueue q;
  std::mutex mu;
  std::set<std::string> busy, done;
  std::atomic<bool> overlap{false};
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&] {
      std::string key;
      while (q.Get(&key)) {
        {
          std::lock_guard<std::mutex> lock(mu);
          if (!busy.insert(key).second) overlap = true;
        }
        std::this_thread::yield();
        {
          std::lock_guard<std::mutex> lock(mu);
          busy.erase(key);
          done.insert(key);
        }
        q.Done(key);
      }
    });
  }
  for (int round = 0; round < 20; ++round) {
    for (int k = 0; k < 50; ++k) q.Add("ns/" + std::to_string(k));
  }
  // Wait until all 50 keys were done at least once and the queue is empty, then stop.
  for (int i = 0; i < 5000; ++i) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (done.size() == 50 && busy.empty() && q.Len() == 0) break;
    }
    std::this_thread::sleep_for(milliseconds(1));
  }
  q.ShutDown();
  for (auto& t : workers) t.join();
  CHECK_FALSE(overlap);
  CHECK(done.size() == 50);
}

TEST_CASE("ShutDown wakes a waiting Get", "[operator][queue]") {
  WorkQueue q;
  std::atomic<bool> returned{false};
  std::thread t([&] {
    std::string key;
    CHECK_FALSE(q.Get(&key));
    returned = true;
  });
  std::this_thread::sleep_for(milliseconds(20));
  q.ShutDown();
  t.join();
  CHECK(returned);
}
