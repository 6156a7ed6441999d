// Spec revisions: an AgentRun is one agent with one history for its whole life, so a changed
// spec is recorded as a new revision of the same run (docs/long-life.md), never a new run.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace carapace {

// The top-level spec fields (and budget/recovery/model sub-fields, as "budget.maxSteps")
// whose values differ between two canonical specs (AgentRun::SpecJson), sorted.
std::vector<std::string> ChangedSpecFields(const nlohmann::json& before, const nlohmann::json& after);

}  // namespace carapace
