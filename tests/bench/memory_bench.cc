// carapace-bench-memory: memory_search at 10,000 and 100,000 entries of 768-dimension
// embeddings, one core. Prints p50/p99 of a full hybrid search (BM25 + int8 cosine + rank
// fusion) next to the floor measured in the same run: a bare scan of the int8 vectors.
#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "tests/bench/bench_stats.h"
#include "common/time.h"
#include "worker/tools/memory/memory_index.h"

using namespace carapace;

using carapace::bench::Percentile;

namespace {


void Run(size_t entries, size_t dims, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int> word(0, 4999);
  auto text = [&](int words) {
    std::string s;
    for (int i = 0; i < words; ++i) s += "w" + std::to_string(word(rng)) + " ";
    return s;
  };
  auto vec = [&] {
    std::vector<float> v(dims);
    for (auto& x : v) x = normal(rng);
    return v;
  };
  MemoryIndex index(dims);
  std::vector<int8_t> raw;  // the same vectors, for the floor
  raw.reserve(entries * dims);
  int64_t t0 = MonoNowNanos();
  for (size_t i = 0; i < entries; ++i) {
    auto v = vec();
    auto q = QuantizeUnit(v);
    raw.insert(raw.end(), q.begin(), q.end());
    index.Add({"id" + std::to_string(i), text(12), {}, 0}, v);
  }
  double build_s = static_cast<double>(MonoNowNanos() - t0) / 1e9;

  std::vector<double> floor_ms, search_ms;
  volatile int64_t sink = 0;
  for (int q = 0; q < 100; ++q) {
    auto query = vec();
    auto qq = QuantizeUnit(query);
    int64_t a = MonoNowNanos();
    int64_t sum = 0;
    for (size_t i = 0; i < entries; ++i) sum += DotInt8(qq.data(), raw.data() + i * dims, dims);
    sink = sink + sum;
    floor_ms.push_back(static_cast<double>(MonoNowNanos() - a) / 1e6);
    std::string words = text(3);
    int64_t b = MonoNowNanos();
    auto hits = index.Search(words, &query, 5);
    search_ms.push_back(static_cast<double>(MonoNowNanos() - b) / 1e6);
    if (hits.size() != 5) std::fprintf(stderr, "unexpected hit count %zu\n", hits.size());
  }
  std::printf("%7zu entries x %zu dims (built in %.1f s)\n", entries, dims, build_s);
  std::printf("  floor: int8 scan of all vectors   p50 %7.2f ms   p99 %7.2f ms\n", Percentile(floor_ms, 0.5),
              Percentile(floor_ms, 0.99));
  std::printf("  memory_search (hybrid, top 5)     p50 %7.2f ms   p99 %7.2f ms   p50 = %.2fx floor\n",
              Percentile(search_ms, 0.5), Percentile(search_ms, 0.99),
              Percentile(search_ms, 0.5) / Percentile(floor_ms, 0.5));
}

}  // namespace

int main() {
  std::mt19937 rng(42);
  std::printf("carapace-bench-memory: one thread\n\n");
  Run(10000, 768, rng);
  Run(100000, 768, rng);
  return 0;
}
