// The process-wide secret registry.
#include "common/redact.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <vector>

namespace carapace {
namespace {

struct Registry {
  std::mutex mu;
  std::vector<std::string> secrets;
  std::atomic<bool> empty{true};
};

Registry& Secrets() {
  // Never destroyed: a thread still logging while the process exits must not find a dead mutex.
  static Registry* r = new Registry;
  return *r;
}

}  // namespace

bool RegisterSecret(const std::string& value) {
  if (value.size() < 6) return false;
  Registry& r = Secrets();
  std::lock_guard<std::mutex> lock(r.mu);
  for (const auto& s : r.secrets) {
    if (s == value) return true;
  }
  r.secrets.push_back(value);
  r.empty = false;
  return true;
}

void ClearSecretsForTesting() {
  Registry& r = Secrets();
  std::lock_guard<std::mutex> lock(r.mu);
  r.secrets.clear();
  r.empty = true;
}

bool NoSecrets() { return Secrets().empty.load(); }

std::string Redact(std::string_view text) {
  if (NoSecrets()) return std::string(text);
  // Every match of every secret in the original text first, then the merged ranges are
  // replaced once: secrets that overlap or contain each other leave nothing behind.
  std::vector<std::pair<size_t, size_t>> ranges;
  {
    Registry& r = Secrets();
    std::lock_guard<std::mutex> lock(r.mu);
    for (const auto& secret : r.secrets) {
      for (size_t pos = text.find(secret); pos != std::string_view::npos; pos = text.find(secret, pos + 1)) {
        ranges.emplace_back(pos, pos + secret.size());
      }
    }
  }
  if (ranges.empty()) return std::string(text);
  std::sort(ranges.begin(), ranges.end());
  std::string out;
  size_t at = 0;
  for (size_t i = 0; i < ranges.size();) {
    size_t begin = ranges[i].first, end = ranges[i].second;
    for (++i; i < ranges.size() && ranges[i].first <= end; ++i) end = std::max(end, ranges[i].second);
    out.append(text.substr(at, begin - at));
    out.append(kRedacted);
    at = end;
  }
  out.append(text.substr(at));
  return out;
}

nlohmann::json RedactJson(const nlohmann::json& j) {
  if (NoSecrets()) return j;
  switch (j.type()) {
    case nlohmann::json::value_t::string:
      return Redact(j.get_ref<const std::string&>());
    case nlohmann::json::value_t::array: {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& v : j) out.push_back(RedactJson(v));
      return out;
    }
    case nlohmann::json::value_t::object: {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& [k, v] : j.items()) out[Redact(k)] = RedactJson(v);
      return out;
    }
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
    case nlohmann::json::value_t::number_float: {
      // A numeric secret echoed in a JSON body arrives as a number.
      std::string text = j.dump();
      return Redact(text) == text ? j : nlohmann::json(kRedacted);
    }
    default:
      return j;
  }
}

}  // namespace carapace
