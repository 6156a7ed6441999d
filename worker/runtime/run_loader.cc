// Recovery: checkpoint + transcript + tail of the event log.
#include "worker/runtime/run_loader.h"

#include <algorithm>

#include "worker/runtime/context_window.h"

namespace carapace {

Result<std::optional<RunIdentity>> LoadRunIdentity(const RunStore& store) {
  CARAPACE_ASSIGN_OR_RETURN(auto run_id, store.GetMeta(meta_key::kRunId));
  if (!run_id) return std::optional<RunIdentity>();
  RunIdentity id;
  id.run_id = *run_id;
  for (auto [key, field] : {std::pair{meta_key::kName, &id.name}, std::pair{meta_key::kNamespace, &id.ns},
                            std::pair{meta_key::kSpecHash, &id.spec_hash}, std::pair{meta_key::kSpec, &id.spec_json}}) {
    CARAPACE_ASSIGN_OR_RETURN(auto v, store.GetMeta(key));
    if (!v) return Corruption("state dir " + store.state_dir() + " lacks run metadata \"" + key + "\"");
    *field = *v;
  }
  return std::optional<RunIdentity>(id);
}

Result<RunState> LoadRunState(const RunStore& store) {
  RunState state;
  uint64_t from = 1;
  CARAPACE_ASSIGN_OR_RETURN(auto cp, store.LatestCheckpoint());
  if (cp) {
    nlohmann::json j = nlohmann::json::parse(cp->second, nullptr, false);
    if (j.is_discarded()) return Corruption("checkpoint of step " + std::to_string(cp->first) + " is not valid JSON");
    CARAPACE_ASSIGN_OR_RETURN(state, RunState::FromCheckpointJson(j));
    auto parse = [](const std::string& raw) -> Result<Message> {
      nlohmann::json m = nlohmann::json::parse(raw, nullptr, false);
      if (m.is_discarded() || !m.is_object()) return Corruption("a transcript message is not a valid message");
      return MessageFromJson(m);
    };
    if (state.first_turn_message < 0) {
      // A checkpoint from before this was recorded: the run started with instructions when
      // its first message is a system message.
      CARAPACE_ASSIGN_OR_RETURN(auto first, store.ReadTranscript(0, std::min<int64_t>(1, state.persisted_messages)));
      state.first_turn_message = 0;
      if (!first.empty()) {
        CARAPACE_ASSIGN_OR_RETURN(Message m, parse(first.front()));
        state.first_turn_message = m.role == "system" ? 1 : 0;
      }
    }
    // Only the live context: what the summary covers stays in the transcript, so the time to
    // start and the memory held depend on the context, not on the run's age.
    const int64_t held_from = std::min(FirstUncompacted(state), state.persisted_messages);
    CARAPACE_ASSIGN_OR_RETURN(auto transcript, store.ReadTranscript(held_from, state.persisted_messages));
    std::vector<Message> held;
    held.reserve(transcript.size());
    for (const auto& raw : transcript) {
      CARAPACE_ASSIGN_OR_RETURN(Message m, parse(raw));
      held.push_back(std::move(m));
    }
    state.messages.Reset(held_from, std::move(held));
    from = state.last_seq + 1;
  }
  Status apply_status;
  CARAPACE_RETURN_IF_ERROR(store.ForEachEvent(from, [&](uint64_t seq, std::string_view value) {
    auto e = Event::Decode(seq, value);
    if (!e.ok()) {
      apply_status = e.status();
      return false;
    }
    apply_status = Apply(&state, *e);
    return apply_status.ok();
  }));
  CARAPACE_RETURN_IF_ERROR(apply_status);
  return state;
}

Result<std::vector<Event>> ReadAllEvents(const RunStore& store) {
  std::vector<Event> out;
  Status st;
  CARAPACE_RETURN_IF_ERROR(store.ForEachEvent(1, [&](uint64_t seq, std::string_view value) {
    auto e = Event::Decode(seq, value);
    if (!e.ok()) {
      st = e.status();
      return false;
    }
    out.push_back(std::move(*e));
    return true;
  }));
  CARAPACE_RETURN_IF_ERROR(st);
  return out;
}

}  // namespace carapace
