// The process-wide secret registry.
#include "common/redact.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <vector>

#include "common/text.h"

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

namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The four hex digits at text[at..at+4) as a UTF-16 code unit, or -1.
int CodeUnit(std::string_view text, size_t at) {
  if (at + 4 > text.size()) return -1;
  int v = 0;
  for (size_t i = at; i < at + 4; ++i) {
    const int d = HexDigit(text[i]);
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

// `text` with JSON string escapes decoded (\uXXXX, surrogate pairs, \n, \", \/ ...), and
// for each decoded byte the range of `text` it came from: a secret a service echoed inside
// some JSON-ish text, any of its characters escaped, is found in the decoded view and
// redacted in the original.
struct Decoded {
  std::string text;
  std::vector<std::pair<size_t, size_t>> from;  // per byte of `text`: [begin, end) in the original
};
Decoded DecodeJsonEscapes(std::string_view text) {
  Decoded d;
  d.text.reserve(text.size());
  d.from.reserve(text.size());
  auto emit = [&](std::string_view bytes, size_t begin, size_t end) {
    for (char c : bytes) {
      d.text.push_back(c);
      d.from.emplace_back(begin, end);
    }
  };
  for (size_t i = 0; i < text.size();) {
    if (text[i] != '\\' || i + 1 >= text.size()) {
      emit(text.substr(i, 1), i, i + 1);
      ++i;
      continue;
    }
    const char c = text[i + 1];
    static const char kEscapes[] = "\"\\/bfnrt";
    static const char kDecoded[] = "\"\\/\b\f\n\r\t";
    const char* simple = c == '\0' ? nullptr : std::strchr(kEscapes, c);
    if (simple) {
      emit(std::string_view(&kDecoded[simple - kEscapes], 1), i, i + 2);
      i += 2;
      continue;
    }
    const int unit = c == 'u' ? CodeUnit(text, i + 2) : -1;
    if (unit < 0) {
      emit(text.substr(i, 1), i, i + 1);
      ++i;
      continue;
    }
    uint32_t cp = static_cast<uint32_t>(unit);
    size_t end = i + 6;
    if (unit >= 0xd800 && unit < 0xdc00 && end + 6 <= text.size() && text[end] == '\\' && text[end + 1] == 'u') {
      const int low = CodeUnit(text, end + 2);
      if (low >= 0xdc00 && low < 0xe000) {
        cp = 0x10000 + ((static_cast<uint32_t>(unit) - 0xd800) << 10) + (static_cast<uint32_t>(low) - 0xdc00);
        end += 6;
      }
    }
    std::string bytes;
    AppendUtf8(cp, &bytes);
    emit(bytes, i, end);
    i = end;
  }
  return d;
}

}  // namespace

std::string Redact(std::string_view text) {
  if (NoSecrets()) return std::string(text);
  // Every match of every secret in the original text first, then the merged ranges are
  // replaced once: secrets that overlap or contain each other leave nothing behind.
  std::vector<std::pair<size_t, size_t>> ranges;
  const bool escaped = text.find('\\') != std::string_view::npos;
  const Decoded decoded = escaped ? DecodeJsonEscapes(text) : Decoded{};
  {
    Registry& r = Secrets();
    std::lock_guard<std::mutex> lock(r.mu);
    for (const auto& secret : r.secrets) {
      for (size_t pos = text.find(secret); pos != std::string_view::npos; pos = text.find(secret, pos + 1)) {
        ranges.emplace_back(pos, pos + secret.size());
      }
      if (!escaped) continue;
      // The same secret written with JSON escapes (a service's echo in NDJSON, a log line).
      for (size_t pos = decoded.text.find(secret); pos != std::string::npos; pos = decoded.text.find(secret, pos + 1)) {
        ranges.emplace_back(decoded.from[pos].first, decoded.from[pos + secret.size() - 1].second);
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
