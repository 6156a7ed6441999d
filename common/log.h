// Structured logging: one JSON object per line on stderr ({"ts","level","msg",...fields}).
// Safe for concurrent use from multiple threads; each line is written with one write(2).
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

namespace carapace::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

// Lines below `level` are dropped. The default is kInfo, or CARAPACE_LOG_LEVEL
// (debug|info|warn|error|off) when set.
void SetLevel(Level level);
Level GetLevel();

// Writes {"ts": RFC 3339 UTC with ms, "level", "msg", ...fields}. `fields` must be an
// object (or null); its keys never override ts/level/msg.
void Write(Level level, std::string_view msg, const nlohmann::json& fields = nullptr);

inline void Debug(std::string_view m, const nlohmann::json& f = nullptr) { Write(Level::kDebug, m, f); }
inline void Info(std::string_view m, const nlohmann::json& f = nullptr) { Write(Level::kInfo, m, f); }
inline void Warn(std::string_view m, const nlohmann::json& f = nullptr) { Write(Level::kWarn, m, f); }
inline void Error(std::string_view m, const nlohmann::json& f = nullptr) { Write(Level::kError, m, f); }

}  // namespace carapace::log
