// Applying a changed spec to a stored run: one spec_revised event, written in the same batch
// as the store's new spec hash, so a crash leaves either the old revision or the new one.
#include "worker/runtime/spec_revision.h"

#include <set>

#include "common/log.h"
#include "worker/runtime/run_loader.h"
#include "worker/runtime/runner.h"

namespace carapace {

std::vector<std::string> ChangedSpecFields(const nlohmann::json& before, const nlohmann::json& after) {
  // These are objects of limits or settings a person raises one at a time: naming the
  // field inside says more than "budget".
  static const std::set<std::string> kDescend = {"budget", "recovery", "model"};
  std::set<std::string> keys;
  for (const auto* j : {&before, &after}) {
    if (!j->is_object()) continue;
    for (auto it = j->begin(); it != j->end(); ++it) keys.insert(it.key());
  }
  std::vector<std::string> changed;
  for (const auto& key : keys) {
    const nlohmann::json a = before.is_object() ? before.value(key, nlohmann::json()) : nlohmann::json();
    const nlohmann::json b = after.is_object() ? after.value(key, nlohmann::json()) : nlohmann::json();
    if (a == b) continue;
    if (kDescend.count(key) && a.is_object() && b.is_object()) {
      for (const auto& sub : ChangedSpecFields(a, b)) changed.push_back(key + "." + sub);
    } else {
      changed.push_back(key);
    }
  }
  return changed;
}

Status Runner::ApplySpecRevision() {
  revision_checked_ = true;
  CARAPACE_ASSIGN_OR_RETURN(auto identity, LoadRunIdentity(*store_));
  const std::string spec_hash = run_.SpecHash();
  if (!identity || identity->spec_hash == spec_hash) return Status::Ok();

  // Applied here, when a worker starts: no model call or tool call of this process is in
  // progress. A call intended under the old revision is settled by the rules it was made
  // under (its recorded effect class); one whose tool is gone is an outcome unknown.
  const nlohmann::json before = nlohmann::json::parse(identity->spec_json, nullptr, false);
  const nlohmann::json after = run_.SpecJson();
  const int64_t revision = state_.revision + 1;
  std::vector<Event> events = {Make(event_type::kSpecRevised, {{"revision", revision},
                                                                {"specHash", spec_hash},
                                                                {"previousSpecHash", identity->spec_hash},
                                                                {"changed", ChangedSpecFields(before, after)}})};
  log::Info("spec revision applied", {{"agentrun", run_.metadata.name}, {"revision", revision},
                                      {"changed", events.front().data["changed"]}});
  CARAPACE_RETURN_IF_ERROR(Record(std::move(events), true, {},
                                  {{meta_key::kSpecHash, spec_hash}, {meta_key::kSpec, after.dump()}}));

  // A run that ended on a lifetime budget this revision raised goes on where it stopped.
  if (state_.phase == Phase::kBudgetExhausted && !BudgetExhaustedReason(false) && !BudgetExhaustedReason(true)) {
    return Record({Make(event_type::kPhaseChanged,
                        {{"phase", PhaseName(Phase::kRunning)},
                         {"reason", "revision " + std::to_string(revision) + " raised the exhausted budget"}})},
                  true);
  }
  return Status::Ok();
}

}  // namespace carapace
