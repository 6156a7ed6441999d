// Keeping JSON valid: nlohmann::json refuses to serialise strings that are not UTF-8, and
// text from tools, files and services often is not. Everything that enters the event log
// passes through ValidUtf8 first, so every later dump() is safe.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

namespace carapace {

// Offset of the first byte that is not part of valid UTF-8, or npos.
size_t FirstInvalidUtf8(std::string_view s);
inline bool IsValidUtf8(std::string_view s) { return FirstInvalidUtf8(s) == std::string_view::npos; }
// A copy of `j` in which every string is valid UTF-8 (invalid bytes become U+FFFD).
nlohmann::json ValidUtf8(const nlohmann::json& j);

// The deepest nesting of arrays and objects in `text`, counted without parsing it (strings
// and their escapes skipped).
int JsonNestingDepth(std::string_view text);
// JSON that came from a peer: a discarded value (is_discarded()) when `text` is not JSON or
// nests deeper than `max_depth` (limits::kJsonDepth by default).
nlohmann::json ParsePeerJson(std::string_view text, int max_depth = -1);

}  // namespace carapace
