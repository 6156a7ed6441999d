// Small text helpers. Tokenize: the word tokens of a text, as keyword search and the
// scripted embedder see them: runs of letters and digits, lower-cased (ASCII); other bytes
// separate words.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace carapace {

std::vector<std::string> Tokenize(std::string_view text);

// `s` with ASCII letters lower-cased (header names, hosts, schemes).
std::string AsciiLower(std::string_view s);

// `s` without the spaces, tabs, CRs and LFs around it (an HTTP header's value).
std::string_view TrimHttpSpace(std::string_view s);

// True when `s` is a non-empty RFC 9110 token (what an HTTP header name must be). Anything
// else in a header name could be read differently by a lenient server (" Host" as Host).
bool IsHttpToken(std::string_view s);

// The number of code points of UTF-8 text: what the API server's maxLength counts, and
// Python's len() of a string.
size_t Utf8Length(std::string_view s);

// "a, b,,c " -> {"a", "b", "c"}: a comma-separated list as flags, annotations and OTEL_*
// variables give one, items trimmed of spaces, empty ones left out.
std::vector<std::string> SplitCommaList(std::string_view text);

// Appends code point `cp` as UTF-8.
void AppendUtf8(uint32_t cp, std::string* out);

}  // namespace carapace
