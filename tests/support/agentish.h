// What the test models of a long-lived agent share (context_test, carapace-test-soak-agent):
// the identifiers ("ID-<n>") a conversation names, a summary that keeps them all, and
// recognising the runtime's summary and memory-flush requests by the runtime's own
// instructions (worker/runtime/context_window.h). Test support only.
#pragma once

#include <regex>
#include <set>
#include <string>

#include "worker/runtime/context_window.h"

namespace carapace::testing {

inline std::set<std::string> Identifiers(const std::string& text) {
  static const std::regex kIdentifier(R"(ID-\d+)");
  std::set<std::string> out;
  for (std::sregex_iterator it(text.begin(), text.end(), kIdentifier), end; it != end; ++it) out.insert(it->str());
  return out;
}

inline std::string Joined(const std::set<std::string>& ids) {
  std::string out;
  for (const auto& id : ids) out += (out.empty() ? "" : ", ") + id;
  return out;
}

// The summary an agent that forgets no identifier writes of `text` (the previous summary
// and the messages it folds in).
inline std::string SummaryKeepingIdentifiers(const std::string& text) {
  return "Goal: answer messages. Facts: identifiers " + Joined(Identifiers(text)) + ".";
}

// A summary request's system message; a memory flush's user message.
inline bool IsSummaryRequest(const std::string& system) { return system.rfind(kSummaryInstructions, 0) == 0; }
inline bool IsFlushRequest(const std::string& user) { return user.rfind(kMemoryFlushInstructions, 0) == 0; }

}  // namespace carapace::testing
