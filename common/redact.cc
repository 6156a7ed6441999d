// The process-wide secret registry.
#include "common/redact.h"

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
  static Registry r;
  return r;
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
  std::string out(text);
  if (NoSecrets()) return out;
  Registry& r = Secrets();
  std::lock_guard<std::mutex> lock(r.mu);
  for (const auto& secret : r.secrets) {
    for (size_t pos = out.find(secret); pos != std::string::npos; pos = out.find(secret, pos + std::strlen(kRedacted))) {
      out.replace(pos, secret.size(), kRedacted);
    }
  }
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
    default:
      return j;
  }
}

}  // namespace carapace
