// Feeding generated text to a ReplyParser however the network might split it: the tests of
// every tool-call format check that each way gives the same reply.
#pragma once

#include <catch2/catch_test_macros.hpp>
#include <string>
#include <vector>

#include "worker/model/model_backend.h"
#include "worker/model/reply_parser.h"

namespace carapace::testing {

// The text and calls of `text` read whole; the same must come of it split in two at every
// point and fed a byte at a time (checked here).
inline ModelResponse ParseAll(const std::string& text, ToolCallFormat format, const std::vector<std::string>& stops,
                              const std::vector<ToolSchema>& tools = {}) {
  auto same = [](const ModelResponse& got, const ModelResponse& expected) {
    CHECK(got.text == expected.text);
    REQUIRE(got.tool_calls.size() == expected.tool_calls.size());
    for (size_t i = 0; i < got.tool_calls.size(); ++i)
      CHECK(ToJson(got.tool_calls[i]) == ToJson(expected.tool_calls[i]));
  };
  ChatStream whole;
  ReplyParser p(format, stops, tools);
  p.Feed(text, &whole);
  p.End(&whole);
  ModelResponse expected = whole.Take();
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    ChatStream s;
    ReplyParser q(format, stops, tools);
    q.Feed(text.substr(0, cut), &s);
    q.Feed(text.substr(cut), &s);
    q.End(&s);
    INFO("split at " << cut);
    same(s.response(), expected);
  }
  ChatStream bytes;
  ReplyParser b(format, stops, tools);
  for (char c : text) b.Feed(std::string(1, c), &bytes);
  b.End(&bytes);
  INFO("fed byte by byte");
  same(bytes.response(), expected);
  return expected;
}

}  // namespace carapace::testing
