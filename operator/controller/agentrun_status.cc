// Computing an AgentRun's status from observations (see agentrun_status.h).
#include "operator/controller/agentrun_status.h"

#include "common/time.h"
#include "operator/controller/desired_objects.h"

namespace carapace::controller {

using nlohmann::json;
namespace v1 = worker::v1;

std::string PhaseName(v1::Phase phase) {
  switch (phase) {
    case v1::PHASE_PENDING: return "Pending";
    case v1::PHASE_RUNNING: return "Running";
    case v1::PHASE_WAITING_FOR_APPROVAL: return "WaitingForApproval";
    case v1::PHASE_SUCCEEDED: return "Succeeded";
    case v1::PHASE_FAILED: return "Failed";
    case v1::PHASE_BUDGET_EXHAUSTED: return "BudgetExhausted";
    case v1::PHASE_IDLE: return "Idle";
    case v1::PHASE_PAUSED: return "Paused";
    case v1::PHASE_DEGRADED: return "Degraded";
    case v1::PHASE_CANCELLED: return "Cancelled";
    default: return "Pending";
  }
}

void SetCondition(json* conditions, const std::string& type, const std::string& status, const std::string& reason,
                  const std::string& message, int64_t generation, const std::string& now) {
  if (!conditions->is_array()) *conditions = json::array();
  json c = {{"type", type}, {"status", status}, {"reason", reason}, {"message", message},
            {"observedGeneration", generation}, {"lastTransitionTime", now}};
  for (auto& existing : *conditions) {
    if (existing.value("type", "") != type) continue;
    if (existing.value("status", "") == status) c["lastTransitionTime"] = existing.value("lastTransitionTime", now);
    existing = c;
    return;
  }
  conditions->push_back(c);
}

bool PodReady(const json& pod) {
  const json& conditions = pod.value("/status/conditions"_json_pointer, json::array());
  for (const auto& c : conditions) {
    if (c.value("type", "") == "Ready") return c.value("status", "") == "True";
  }
  return false;
}

namespace {

bool Terminal(const std::string& phase) {
  return phase == "Succeeded" || phase == "Failed" || phase == "BudgetExhausted" || phase == "Cancelled";
}

// The rollout is still going: the StatefulSet has not caught up with its spec.
bool RollingOut(const json& sts) {
  const int64_t generation = sts.value("/metadata/generation"_json_pointer, int64_t{0});
  const int64_t observed = sts.value("/status/observedGeneration"_json_pointer, int64_t{0});
  const int64_t want = sts.value("/spec/replicas"_json_pointer, int64_t{1});
  const int64_t ready = sts.value("/status/readyReplicas"_json_pointer, int64_t{0});
  const std::string current = sts.value("/status/currentRevision"_json_pointer, std::string());
  const std::string update = sts.value("/status/updateRevision"_json_pointer, std::string());
  return observed < generation || ready < want || current != update;
}

// Copies the worker's report into the status.
void AddWorkerReport(const v1::RunStatus& w, json* status) {
  (*status)["step"] = w.step();
  (*status)["lastCheckpointStep"] = w.last_checkpoint_step();
  (*status)["runID"] = w.run_id();
  if (w.revision() > 0) (*status)["revision"] = w.revision();
  const v1::BudgetUsage& b = w.budget();
  (*status)["budget"] = {{"steps", b.steps()}, {"maxSteps", b.max_steps()},
                         {"tokens", b.tokens()}, {"maxTokens", b.max_tokens()},
                         {"toolCalls", b.tool_calls()}, {"maxToolCalls", b.max_tool_calls()},
                         {"wallClockSeconds", b.wall_clock_ms() / 1000}};
  if (!w.result().empty()) (*status)["result"] = w.result();
  if (!w.reason().empty()) (*status)["message"] = w.reason();
  if (w.idle_since_ms() > 0) (*status)["idleSinceMs"] = w.idle_since_ms();
  if (w.waiting_size() > 0) (*status)["waitingFor"] = w.waiting(0).tool() + " (" + w.waiting(0).reason() + ")";
}

}  // namespace

json ComputeStatus(const Observation& o) {
  const json& old = o.agentrun.value("status", json::object());
  const int64_t generation = o.agentrun.value("/metadata/generation"_json_pointer, int64_t{0});
  json status = json::object();
  status["observedGeneration"] = generation;
  json conditions = old.value("conditions", json::array());
  auto set = [&](const std::string& type, const std::string& st, const std::string& reason, const std::string& msg) {
    SetCondition(&conditions, type, st, reason, msg, generation, o.now);
  };

  if (!o.invalid_spec.empty()) {
    status["phase"] = "Invalid";
    set("Accepted", "False", "InvalidSpec", o.invalid_spec);
    set("Ready", "False", "InvalidSpec", "nothing is created for an invalid spec");
    set("Progressing", "False", "InvalidSpec", "fix the spec to go on");
    set("Degraded", "False", "AsExpected", "");
    set("Succeeded", "False", "InvalidSpec", "");
    status["conditions"] = conditions;
    return status;
  }
  set("Accepted", "True", "SpecValid", "");
  status["specHash"] = o.spec_hash;

  // Carry the last worker report over while the worker cannot be asked (restart,
  // hibernation), so `kubectl get ar` keeps the step and the result.
  for (const char* key : {"step", "lastCheckpointStep", "runID", "revision", "budget", "result", "message", "idleSinceMs"}) {
    if (old.contains(key) && old.value("specHash", "") == o.spec_hash) status[key] = old[key];
  }
  std::string last_worker_phase = old.value("specHash", "") == o.spec_hash ? old.value("workerPhase", "") : "";
  if (last_worker_phase == "Idle" && o.one_shot && old.contains("result")) last_worker_phase = "Succeeded";
  std::string worker_phase = last_worker_phase;
  if (o.worker) {
    for (const char* key : {"result", "message", "waitingFor", "idleSinceMs"}) status.erase(key);
    AddWorkerReport(*o.worker, &status);
    worker_phase = PhaseName(o.worker->phase());
  }
  if (!worker_phase.empty()) status["workerPhase"] = worker_phase;
  // A worker stays up after its goal, Idle, ready for messages. An agent without a schedule
  // has then done what it was asked: to the user it has Succeeded.
  if (worker_phase == "Idle" && o.one_shot && status.contains("result")) worker_phase = "Succeeded";
  if (!o.hibernation.is_null()) status["hibernation"] = o.hibernation;

  const bool pod_ready = o.pod && PodReady(*o.pod);
  std::string phase;
  if (!o.conflict.empty()) {
    phase = "Pending";
    set("Ready", "False", "NameConflict", o.conflict);
    set("Progressing", "False", "NameConflict", o.conflict);
  } else if (o.suspended) {
    phase = "Suspended";
    set("Ready", "False", "Suspended", "spec.suspend is true: scaled to zero, the volume is kept");
    set("Progressing", "False", "Suspended", "");
  } else if (!o.hibernation.is_null()) {
    phase = "Hibernating";
    set("Ready", "False", "Hibernating",
        "idle longer than spec.idleTimeoutSeconds: scaled to zero until " + o.hibernation.value("wakeAt", "a spec change"));
    set("Progressing", "False", "Hibernating", "");
  } else if (!o.statefulset) {
    phase = "Pending";
    set("Ready", "False", "Creating", "the StatefulSet is being created");
    set("Progressing", "True", "Creating", "");
  } else {
    // One missed poll of a ready worker keeps the phase it had: no flapping through Pending.
    const bool keep_last = Terminal(last_worker_phase) || (pod_ready && !last_worker_phase.empty());
    phase = o.worker ? worker_phase : (keep_last ? last_worker_phase : "Pending");
    if (pod_ready) set("Ready", "True", "WorkerReady", "");
    else if (!o.control_tls_waiting.empty()) set("Ready", "False", "WaitingForCertificate", o.control_tls_waiting);
    else set("Ready", "False", "WorkerNotReady", "waiting for pod " + o.statefulset->value("/metadata/name"_json_pointer, std::string()) + "-0 to be ready");
    if (RollingOut(*o.statefulset)) {
      set("Progressing", "True", "RollingOut", "the worker pod is starting or being replaced");
    } else if (o.worker && o.worker->waiting_for() == "ModelUnavailable") {
      // The agent is fine and keeps its turn; the model service is not answering.
      set("Progressing", "False", "ModelUnavailable",
          "no model endpoint answered: " + o.worker->waiting_detail() +
              (o.worker->next_try_at_ms() > 0 ? "; next try at " + FormatRfc3339Millis(o.worker->next_try_at_ms()) : ""));
    } else if (o.worker && o.worker->waiting_for() == "VolumeFull") {
      set("Progressing", "False", "VolumeFull", o.worker->waiting_detail());
    } else if (o.worker && o.worker->waiting_for() == "PeriodBudget") {
      set("Progressing", "False", "PeriodBudgetExhausted", o.worker->waiting_detail());
    } else {
      set("Progressing", "False", Terminal(phase) ? "Finished" : "RolledOut", "");
    }
  }
  status["phase"] = phase;

  // Degraded: the worker says so, or its pod keeps crashing.
  std::string crash, restore_failed;
  if (o.pod) {
    for (const auto& cs : o.pod->value("/status/containerStatuses"_json_pointer, json::array())) {
      if (cs.value("/state/waiting/reason"_json_pointer, std::string()) == "CrashLoopBackOff") {
        crash = "the worker keeps exiting (" + std::to_string(cs.value("restartCount", 0)) + " restarts)";
      }
    }
    // spec.storage.restoreFrom: the restore init container failed, and the worker waits for it
    // to succeed. Its reason is the CLI's own (terminationMessagePolicy FallbackToLogsOnError).
    for (const auto& cs : o.pod->value("/status/initContainerStatuses"_json_pointer, json::array())) {
      const json failed = cs.value("/lastState/terminated"_json_pointer, json());
      if (cs.value("name", "") != kRestoreContainer || !failed.is_object() || failed.value("exitCode", 0) == 0 ||
          cs.contains("/state/terminated"_json_pointer)) {
        continue;
      }
      std::string why = failed.value("message", "");
      while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
      restore_failed = "restoring spec.storage.restoreFrom failed (exit " + std::to_string(failed.value("exitCode", 0)) +
                       ", " + std::to_string(cs.value("restartCount", 0)) + " tries)" + (why.empty() ? "" : ": " + why);
    }
  }
  const std::string held_by = o.worker ? o.worker->degraded_cause() : "";
  if (worker_phase == "Degraded" && held_by == "model_refused") {
    set("Degraded", "True", "ModelRefused", status.value("message", ""));
  } else if (worker_phase == "Degraded" && held_by == "context_length") {
    set("Degraded", "True", "ContextLengthExceeded", status.value("message", ""));
  } else if (worker_phase == "Degraded") set("Degraded", "True", "CrashLoopBreaker", status.value("message", ""));
  // The agent waits for room on its volume (and refuses messages meanwhile): a person must
  // free space or grow the claim.
  else if (o.worker && o.worker->waiting_for() == "VolumeFull") set("Degraded", "True", "VolumeFull", o.worker->waiting_detail());
  else if (!crash.empty()) set("Degraded", "True", "CrashLoopBackOff", crash);
  else if (!restore_failed.empty()) set("Degraded", "True", "RestoreFailed", restore_failed);
  else if (worker_phase == "Failed") set("Degraded", "True", "RunFailed", status.value("message", ""));
  else set("Degraded", "False", "AsExpected", "");

  if (worker_phase == "Succeeded") set("Succeeded", "True", "GoalReached", status.value("result", ""));
  else if (Terminal(worker_phase)) set("Succeeded", "False", worker_phase, status.value("message", ""));
  else set("Succeeded", "False", phase, "");
  status["conditions"] = conditions;
  return status;
}

}  // namespace carapace::controller
