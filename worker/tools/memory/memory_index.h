// MemoryIndex: the agent's long-term memory, searchable two ways and ranked as one list:
// BM25 over words, and cosine similarity over embeddings (kept as int8 after
// normalisation: a quarter of the memory of floats, and fast to scan), merged by
// reciprocal rank fusion. In memory only; MemoryStore keeps it in the run's RocksDB.
// Not thread-safe: the runner calls tools from one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

namespace carapace {

struct MemoryEntry {
  std::string id;
  std::string text;
  std::vector<std::string> tags;
  int64_t created_ms = 0;
};

struct MemoryHit {
  const MemoryEntry* entry = nullptr;
  double score = 0;          // fused: sum over rankings of 1 / (60 + rank)
  double keyword_score = 0;  // BM25; 0 when no query word matched
  double vector_score = 0;   // cosine similarity; 0 without embeddings
};

class MemoryIndex {
 public:
  // `dimensions` of the embeddings; 0 when there are none (keyword search only).
  explicit MemoryIndex(size_t dimensions) : dims_(dimensions) {}

  // Adds an entry, replacing one with the same id. `embedding` is ignored when dimensions
  // is 0 and must otherwise have exactly `dimensions` values.
  void Add(MemoryEntry entry, const std::vector<float>& embedding);
  bool Remove(const std::string& id);
  const MemoryEntry* Get(const std::string& id) const;
  size_t size() const { return live_; }
  size_t dimensions() const { return dims_; }

  // The best `limit` entries for the query; `query_embedding` may be null.
  std::vector<MemoryHit> Search(const std::string& query, const std::vector<float>* query_embedding,
                                size_t limit) const;

 private:
  struct Doc {
    MemoryEntry entry;
    uint32_t length = 0;  // words
    bool live = true;
  };
  std::function<const std::string&(uint32_t)> IdOf() const;
  std::vector<std::pair<uint32_t, double>> KeywordRanking(const std::string& query, size_t n) const;
  std::vector<std::pair<uint32_t, double>> VectorRanking(const std::vector<float>& query, size_t n) const;

  size_t dims_;
  std::vector<Doc> docs_;
  std::vector<int8_t> vectors_;  // docs_.size() * dims_
  std::unordered_map<std::string, uint32_t> by_id_;
  std::unordered_map<std::string, std::vector<std::pair<uint32_t, uint32_t>>> postings_;  // word -> (doc, count)
  uint64_t total_length_ = 0;
  size_t live_ = 0;
};

// Normalises `v` and scales it to int8 (x127). Exposed for tests and the benchmark.
std::vector<int8_t> QuantizeUnit(const std::vector<float>& v);
// Dot product of two int8 vectors of length n.
int32_t DotInt8(const int8_t* a, const int8_t* b, size_t n);

}  // namespace carapace
