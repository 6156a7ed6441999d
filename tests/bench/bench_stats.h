// Small helpers every benchmark program shares.
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

namespace carapace::bench {

// The p-quantile (0..1) of `v`, nearest rank; 0 for no samples.
inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// A duration in milliseconds.
template <typename Duration>
double Ms(Duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

}  // namespace carapace::bench
