// JSON-lines logger. The whole line is built first and written with a single
// write(2) so that lines from concurrent threads or processes never interleave.
#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "common/redact.h"
#include "common/time.h"

namespace carapace::log {
namespace {

Level LevelFromEnv() {
  const char* v = std::getenv("CARAPACE_LOG_LEVEL");
  if (v == nullptr) return Level::kInfo;
  std::string s(v);
  if (s == "debug") return Level::kDebug;
  if (s == "warn") return Level::kWarn;
  if (s == "error") return Level::kError;
  if (s == "off") return Level::kOff;
  return Level::kInfo;
}

std::atomic<Level>& CurrentLevel() {
  static std::atomic<Level> level{LevelFromEnv()};
  return level;
}

const char* LevelName(Level l) {
  switch (l) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
    case Level::kOff: return "off";
  }
  return "info";
}

}  // namespace

void SetLevel(Level level) { CurrentLevel().store(level); }
Level GetLevel() { return CurrentLevel().load(); }

void Write(Level level, std::string_view msg, const nlohmann::json& fields) {
  if (level < GetLevel() || level == Level::kOff) return;
  nlohmann::ordered_json line;
  line["ts"] = FormatRfc3339Millis(WallNowMillis());
  line["level"] = LevelName(level);
  // Redacted before serialising: escaping (quotes, backslashes) would hide a secret from a
  // search in the finished line.
  line["msg"] = Redact(msg);
  if (fields.is_object()) {
    for (const auto& [k, v] : fields.items()) {
      if (k != "ts" && k != "level" && k != "msg") line[k] = RedactJson(v);
    }
  }
  std::string out = Redact(line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  out.push_back('\n');
  const char* p = out.data();
  size_t left = out.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) return;  // nowhere to report a failing stderr
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace carapace::log
