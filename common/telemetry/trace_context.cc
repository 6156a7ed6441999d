#include "common/telemetry/trace_context.h"

#include "common/hash.h"

namespace carapace::telemetry {
namespace {

constexpr char kHex[] = "0123456789abcdef";

template <size_t N>
std::string Hex(const std::array<uint8_t, N>& bytes) {
  std::string out;
  out.reserve(2 * N);
  for (uint8_t b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // upper case is not valid in a traceparent
}

template <size_t N>
bool ParseHex(std::string_view text, std::array<uint8_t, N>* out) {
  if (text.size() != 2 * N) return false;
  for (size_t i = 0; i < N; ++i) {
    int hi = HexValue(text[2 * i]), lo = HexValue(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*out)[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

template <size_t N>
bool AllZero(const std::array<uint8_t, N>& bytes) {
  for (uint8_t b : bytes) {
    if (b != 0) return false;
  }
  return true;
}

}  // namespace

bool TraceContext::valid() const { return !AllZero(trace_id) && !AllZero(span_id); }

std::string TraceContext::TraceIdHex() const { return Hex(trace_id); }

std::string TraceContext::SpanIdHex() const { return Hex(span_id); }

std::string TraceContext::Traceparent() const {
  if (!valid()) return "";
  return "00-" + TraceIdHex() + "-" + SpanIdHex() + (sampled ? "-01" : "-00");
}

std::optional<TraceContext> TraceContext::Parse(std::string_view v) {
  // version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55.
  if (v.size() != 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || v.substr(0, 2) != "00") return std::nullopt;
  TraceContext c;
  std::array<uint8_t, 1> flags{};
  if (!ParseHex(v.substr(3, 32), &c.trace_id) || !ParseHex(v.substr(36, 16), &c.span_id) ||
      !ParseHex(v.substr(53, 2), &flags) || !c.valid()) {
    return std::nullopt;
  }
  c.sampled = (flags[0] & 1) != 0;
  return c;
}

TraceContext DerivedContext(std::string_view seed, bool sampled) {
  const std::string digest = Sha256Hex(seed);  // 64 hex digits: 16 bytes of trace id, then 8 of span id
  TraceContext c;
  ParseHex(std::string_view(digest).substr(0, 32), &c.trace_id);
  ParseHex(std::string_view(digest).substr(32, 16), &c.span_id);
  // Zero ids are invalid; SHA-256 giving 16 zero bytes is not a case to plan for, but cheap.
  if (AllZero(c.trace_id)) c.trace_id[15] = 1;
  if (AllZero(c.span_id)) c.span_id[7] = 1;
  c.sampled = sampled;
  return c;
}

}  // namespace carapace::telemetry
