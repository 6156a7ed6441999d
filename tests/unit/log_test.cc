// Logging: one JSON object per line on stderr, with ts, level, msg and the given fields.
#include <catch2/catch_test_macros.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "common/log.h"
#include "common/redact.h"
#include "tests/support/child_process.h"

using namespace carapace;

namespace {
// Runs fn with stderr sent to a file; returns what was written.
template <typename Fn>
std::string CaptureStderr(Fn fn) {
  carapace::testing::TempDir tmp;
  std::string path = tmp.Sub("stderr");
  int saved = ::dup(2);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ::dup2(fd, 2);
  fn();
  ::dup2(saved, 2);
  ::close(fd);
  ::close(saved);
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
}  // namespace

TEST_CASE("log lines are JSON objects with ts, level, msg and fields", "[log]") {
  log::SetLevel(log::Level::kInfo);
  std::string out = CaptureStderr([] {
    log::Info("step done", {{"agentrun", "hello"}, {"step", 3}, {"msg", "must not override"}});
    log::Debug("hidden below the level");
    log::Warn("second line");
  });
  std::istringstream lines(out);
  std::string first, second, third;
  REQUIRE(std::getline(lines, first));
  REQUIRE(std::getline(lines, second));
  CHECK_FALSE(std::getline(lines, third));
  auto j = nlohmann::json::parse(first);
  CHECK(j["level"] == "info");
  CHECK(j["msg"] == "step done");
  CHECK(j["agentrun"] == "hello");
  CHECK(j["step"] == 3);
  CHECK(j["ts"].get<std::string>().size() == 24);  // 2026-11-27T08:57:18.123Z
  CHECK(j["ts"].get<std::string>().back() == 'Z');
  CHECK(nlohmann::json::parse(second)["level"] == "warn");
}

TEST_CASE("a log line with invalid UTF-8 is still one valid JSON line", "[log]") {
  std::string out = CaptureStderr([] { log::Error("bad \xff bytes", {{"path", "caf\xe9"}}); });
  CHECK(out.back() == '\n');
  auto j = nlohmann::json::parse(out);
  CHECK(j["level"] == "error");
}

TEST_CASE("registered secrets are redacted from log lines", "[log][secrets]") {
  ClearSecretsForTesting();
  REQUIRE(RegisterSecret("hunter2-secret"));
  CHECK_FALSE(RegisterSecret("abc"));  // too short to redact safely
  std::string out = CaptureStderr([] { log::Warn("token hunter2-secret leaked", {{"header", "Bearer hunter2-secret"}}); });
  CHECK(out.find("hunter2-secret") == std::string::npos);
  auto j = nlohmann::json::parse(out);
  CHECK(j["msg"] == "token [REDACTED] leaked");
  CHECK(j["header"] == "Bearer [REDACTED]");
  ClearSecretsForTesting();
}

TEST_CASE("redaction covers overlapping secrets, numbers and secrets with characters JSON escapes", "[log][secrets]") {
  ClearSecretsForTesting();
  REQUIRE(RegisterSecret("aaaaXY"));
  REQUIRE(RegisterSecret("XYbbbb"));
  CHECK(Redact("<aaaaXYbbbb>") == "<[REDACTED]>");
  REQUIRE(RegisterSecret("12345678"));
  CHECK(RedactJson(nlohmann::json{{"pin", 12345678}, {"n", 7}}) == nlohmann::json{{"pin", "[REDACTED]"}, {"n", 7}});
  REQUIRE(RegisterSecret("pa\"ss\\word"));
  std::string out = CaptureStderr([] { log::Info("login", {{"password", "pa\"ss\\word"}}); });
  CHECK(out.find("pa\\\"ss") == std::string::npos);  // nor in its JSON-escaped form
  CHECK(nlohmann::json::parse(out)["password"] == "[REDACTED]");
  ClearSecretsForTesting();
}

TEST_CASE("a secret written with JSON escapes inside any text is redacted too", "[log][secrets]") {
  ClearSecretsForTesting();
  REQUIRE(RegisterSecret("sk-live-123456"));
  // An NDJSON echo with every character \u-escaped, upper- and lower-case hex mixed.
  const std::string all = "{\"echo\":\"\\u0073\\u006B\\u002d\\u006c\\u0069\\u0076\\u0065\\u002D123456\"}\n{\"next\":1}";
  const std::string redacted = Redact(all);
  CHECK(redacted == "{\"echo\":\"[REDACTED]\"}\n{\"next\":1}");
  // Only some characters escaped, as Go escapes "<", ">" and "&", or PHP "/".
  REQUIRE(RegisterSecret("a<b>c&d/e-secret"));
  CHECK(Redact("x=\"a\\u003cb\\u003ec\\u0026d\\/e-secret\" y") == "x=\"[REDACTED]\" y");
  // Python's ensure_ascii: a non-ASCII secret as \u escapes, a character outside the BMP as a
  // surrogate pair.
  REQUIRE(RegisterSecret("pässwörd-\xF0\x9F\x94\x91"));
  CHECK(Redact("{\"k\": \"p\\u00e4ssw\\u00f6rd-\\ud83d\\udd11\"}") == "{\"k\": \"[REDACTED]\"}");
  // Escapes that do not spell a secret are left as they are, bad ones included.
  CHECK(Redact("line\\nnext \\u00zz \\") == "line\\nnext \\u00zz \\");
  // Through RedactJson too: a tool's text output that merely contains such an echo.
  CHECK(RedactJson(nlohmann::json{{"body", all}})["body"] == redacted);
  ClearSecretsForTesting();
}
