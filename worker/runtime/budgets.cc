// Budgets for agents that never finish (docs/long-life.md): lifetime totals end the run, a
// per-turn budget ends one turn, and a period budget defers work until its window allows.
#include "common/log.h"
#include "common/time.h"
#include "worker/runtime/runner.h"

namespace carapace {

std::optional<std::string> Runner::BudgetExhaustedReason(bool for_tool_call) const {
  const BudgetSpec& b = run_.spec.budget;
  const BudgetUsed& u = state_.used;
  if (for_tool_call) {
    if (u.tool_calls >= b.max_tool_calls) return "maxToolCalls (" + std::to_string(b.max_tool_calls) + ") reached";
    return std::nullopt;
  }
  if (u.steps >= b.max_steps) return "maxSteps (" + std::to_string(b.max_steps) + ") reached";
  if (u.tokens >= b.max_tokens) {
    return "maxTokens (" + std::to_string(b.max_tokens) + ") reached: " + std::to_string(u.tokens) + " used";
  }
  int64_t wall = u.wall_ms + (options_.clock->NowMillis() - accounted_at_ms_);
  if (wall >= b.max_wall_clock_seconds * 1000) {
    return "maxWallClockSeconds (" + std::to_string(b.max_wall_clock_seconds) + ") reached";
  }
  return std::nullopt;
}

std::optional<std::string> Runner::TurnBudgetReason(bool for_tool_call) const {
  if (!run_.spec.budget.per_turn) return std::nullopt;
  const TurnBudgetSpec& t = *run_.spec.budget.per_turn;
  const BudgetUsed& u = state_.used;
  const BudgetUsed& at = state_.turn_start;
  if (for_tool_call) {
    if (t.max_tool_calls && u.tool_calls - at.tool_calls >= *t.max_tool_calls) {
      return "budget.perTurn.maxToolCalls (" + std::to_string(*t.max_tool_calls) + ") reached";
    }
    return std::nullopt;
  }
  if (t.max_steps && u.steps - at.steps >= *t.max_steps) {
    return "budget.perTurn.maxSteps (" + std::to_string(*t.max_steps) + ") reached";
  }
  if (t.max_tokens && u.tokens - at.tokens >= *t.max_tokens) {
    return "budget.perTurn.maxTokens (" + std::to_string(*t.max_tokens) + ") reached: " +
           std::to_string(u.tokens - at.tokens) + " used this turn";
  }
  return std::nullopt;
}

void Runner::AddTokenWindow(nlohmann::json* data) const {
  if (run_.spec.budget.per_period) (*data)["windowMs"] = run_.spec.budget.per_period->seconds * 1000;
}

Result<bool> Runner::DeferForPeriodBudget() {
  next_try_at_ms_ = 0;
  if (!run_.spec.budget.per_period) return false;
  const PeriodBudgetSpec& p = *run_.spec.budget.per_period;
  const int64_t period_ms = p.seconds * 1000;
  const int64_t now = options_.wall_clock->NowMillis();
  int64_t in_window = TokensInWindow(state_, period_ms, now);
  if (in_window < p.max_tokens) return false;
  // The window allows work again once enough of its oldest buckets have left it: a bucket
  // that starts at t counts until now passes t + period.
  int64_t until = now + period_ms;
  for (auto it = state_.token_buckets.upper_bound(now - period_ms); it != state_.token_buckets.end(); ++it) {
    in_window -= it->second;
    if (in_window < p.max_tokens) {
      until = it->first + period_ms + 1;
      break;
    }
  }
  next_try_at_ms_ = options_.clock->NowMillis() + (until - now);
  if (state_.deferred_reason.empty()) {
    const std::string reason = "budget.perPeriod.maxTokens (" + std::to_string(p.max_tokens) + " per " +
                               std::to_string(p.seconds) + " s) reached; work waits until " + FormatRfc3339Millis(until);
    log::Info("a period budget defers work", {{"agentrun", run_.metadata.name}, {"until", FormatRfc3339Millis(until)}});
    CARAPACE_RETURN_IF_ERROR(Record({Make(event_type::kBudgetDeferred, {{"reason", reason}, {"untilMs", until}})}, false));
  }
  return true;
}

}  // namespace carapace
