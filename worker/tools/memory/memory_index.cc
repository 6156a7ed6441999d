// BM25 + int8 cosine, fused by reciprocal rank.
#include "worker/tools/memory/memory_index.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "common/text.h"

namespace carapace {

namespace {
constexpr double kK1 = 1.2;
constexpr double kB = 0.75;
constexpr double kRrfK = 60;  // the usual constant of reciprocal rank fusion

// Keeps the n largest (doc, score) pairs, best first. Ties go to the smaller id, never to
// the position in memory: a restart loads entries in another order, and the same question
// must get the same answer before and after it.
template <typename IdOf>
std::vector<std::pair<uint32_t, double>> TopN(std::vector<std::pair<uint32_t, double>> all, size_t n, IdOf id_of) {
  auto better = [&](const auto& a, const auto& b) {
    return a.second > b.second || (a.second == b.second && id_of(a.first) < id_of(b.first));
  };
  if (all.size() > n) {
    std::nth_element(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(), better);
    all.resize(n);
  }
  std::sort(all.begin(), all.end(), better);
  return all;
}
}  // namespace

std::vector<int8_t> QuantizeUnit(const std::vector<float>& v) {
  double norm = 0;
  for (float x : v) norm += static_cast<double>(x) * x;
  double scale = norm > 0 ? 127.0 / std::sqrt(norm) : 0;
  std::vector<int8_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    out[i] = static_cast<int8_t>(std::lround(std::clamp(v[i] * scale, -127.0, 127.0)));
  }
  return out;
}

int32_t DotInt8(const int8_t* a, const int8_t* b, size_t n) {
  int32_t sum = 0;
  size_t i = 0;
#ifdef __SSE2__
  // Sign-extend 16 bytes to two halves of 8 int16, multiply-add pairs into int32 lanes.
  __m128i acc = _mm_setzero_si128();
  for (; i + 16 <= n; i += 16) {
    __m128i va = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i));
    __m128i vb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i));
    __m128i alo = _mm_srai_epi16(_mm_unpacklo_epi8(va, va), 8);
    __m128i ahi = _mm_srai_epi16(_mm_unpackhi_epi8(va, va), 8);
    __m128i blo = _mm_srai_epi16(_mm_unpacklo_epi8(vb, vb), 8);
    __m128i bhi = _mm_srai_epi16(_mm_unpackhi_epi8(vb, vb), 8);
    acc = _mm_add_epi32(acc, _mm_madd_epi16(alo, blo));
    acc = _mm_add_epi32(acc, _mm_madd_epi16(ahi, bhi));
  }
  int32_t lanes[4];
  _mm_storeu_si128(reinterpret_cast<__m128i*>(lanes), acc);
  sum = lanes[0] + lanes[1] + lanes[2] + lanes[3];
#endif
  for (; i < n; ++i) sum += int32_t{a[i]} * int32_t{b[i]};
  return sum;
}

std::function<const std::string&(uint32_t)> MemoryIndex::IdOf() const {
  return [this](uint32_t doc) -> const std::string& { return docs_[doc].entry.id; };
}

void MemoryIndex::Add(MemoryEntry entry, const std::vector<float>& embedding) {
  Remove(entry.id);
  uint32_t doc = static_cast<uint32_t>(docs_.size());
  std::map<std::string, uint32_t> counts;
  auto words = Tokenize(entry.text);
  for (const auto& w : words) ++counts[w];
  for (const auto& [w, c] : counts) postings_[w].emplace_back(doc, c);
  by_id_[entry.id] = doc;
  Doc d;
  d.length = static_cast<uint32_t>(words.size());
  d.entry = std::move(entry);
  docs_.push_back(std::move(d));
  total_length_ += words.size();
  ++live_;
  if (dims_ > 0) {
    std::vector<int8_t> q = embedding.size() == dims_ ? QuantizeUnit(embedding) : std::vector<int8_t>(dims_, 0);
    vectors_.insert(vectors_.end(), q.begin(), q.end());
  }
}

bool MemoryIndex::Remove(const std::string& id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return false;
  Doc& d = docs_[it->second];
  d.live = false;  // postings and vector stay behind as a tombstone; searches skip it
  total_length_ -= d.length;
  --live_;
  by_id_.erase(it);
  return true;
}

const MemoryEntry* MemoryIndex::Get(const std::string& id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &docs_[it->second].entry;
}

std::vector<std::pair<uint32_t, double>> MemoryIndex::KeywordRanking(const std::string& query, size_t n) const {
  if (live_ == 0) return {};
  const double avg = static_cast<double>(total_length_) / static_cast<double>(live_);
  std::unordered_map<uint32_t, double> scores;
  std::map<std::string, int> seen;
  for (const auto& w : Tokenize(query)) {
    if (seen[w]++) continue;
    auto p = postings_.find(w);
    if (p == postings_.end()) continue;
    double df = 0;
    for (const auto& [doc, c] : p->second) df += docs_[doc].live;
    if (df == 0) continue;
    double idf = std::log(1.0 + (static_cast<double>(live_) - df + 0.5) / (df + 0.5));
    for (const auto& [doc, c] : p->second) {
      if (!docs_[doc].live) continue;
      double tf = c;
      double norm = tf + kK1 * (1 - kB + kB * docs_[doc].length / std::max(avg, 1.0));
      scores[doc] += idf * tf * (kK1 + 1) / norm;
    }
  }
  return TopN(std::vector<std::pair<uint32_t, double>>(scores.begin(), scores.end()), n, IdOf());
}

std::vector<std::pair<uint32_t, double>> MemoryIndex::VectorRanking(const std::vector<float>& query, size_t n) const {
  if (dims_ == 0 || query.size() != dims_) return {};
  std::vector<int8_t> q = QuantizeUnit(query);
  std::vector<std::pair<uint32_t, double>> all;
  all.reserve(live_);
  for (uint32_t doc = 0; doc < docs_.size(); ++doc) {
    if (!docs_[doc].live) continue;
    int32_t dot = DotInt8(q.data(), vectors_.data() + static_cast<size_t>(doc) * dims_, dims_);
    all.emplace_back(doc, static_cast<double>(dot) / (127.0 * 127.0));
  }
  return TopN(std::move(all), n, IdOf());
}

std::vector<MemoryHit> MemoryIndex::Search(const std::string& query, const std::vector<float>* query_embedding,
                                           size_t limit) const {
  const size_t depth = std::max<size_t>(50, limit * 4);
  auto keyword = KeywordRanking(query, depth);
  auto vector = query_embedding ? VectorRanking(*query_embedding, depth) : std::vector<std::pair<uint32_t, double>>{};
  std::unordered_map<uint32_t, MemoryHit> fused;
  for (size_t rank = 0; rank < keyword.size(); ++rank) {
    MemoryHit& h = fused[keyword[rank].first];
    h.keyword_score = keyword[rank].second;
    h.score += 1.0 / (kRrfK + static_cast<double>(rank) + 1);
  }
  for (size_t rank = 0; rank < vector.size(); ++rank) {
    MemoryHit& h = fused[vector[rank].first];
    h.vector_score = vector[rank].second;
    h.score += 1.0 / (kRrfK + static_cast<double>(rank) + 1);
  }
  std::vector<std::pair<uint32_t, double>> order;
  for (const auto& [doc, hit] : fused) order.emplace_back(doc, hit.score);
  order = TopN(std::move(order), limit, IdOf());
  std::vector<MemoryHit> out;
  for (const auto& [doc, score] : order) {
    MemoryHit h = fused[doc];
    h.entry = &docs_[doc].entry;
    out.push_back(h);
  }
  return out;
}

}  // namespace carapace
