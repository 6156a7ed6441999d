// An AgentRun's status, computed by a pure function from what the reconciler observed: the
// spec's validity, the StatefulSet and its pod, the worker's own report from its control
// API, and hibernation. Conditions follow metav1.Condition: a condition's
// lastTransitionTime only moves when its status changes, so an unchanged world gives an
// identical status and the reconciler writes nothing.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "carapace/worker/v1/run.pb.h"

namespace carapace::controller {

struct Observation {
  nlohmann::json agentrun;             // as read: metadata.generation, the current status
  std::string invalid_spec;            // the parser's message when the spec is invalid
  std::string spec_hash;               // of the valid spec
  bool suspended = false;              // spec.suspend
  bool one_shot = true;                // no spec.schedule: once its goal is reached, nothing wakes it
  nlohmann::json hibernation;          // {since, wakeAt, specHash} while hibernating, else null
  std::optional<nlohmann::json> statefulset;
  std::optional<nlohmann::json> pod;   // NAME-0
  std::optional<worker::v1::RunStatus> worker;  // when its control API answered
  std::string conflict;                // an object of that name exists and is not ours
  // With --worker-tls-issuer, while the certificate's Secret (or its ca.crt) is not there:
  // what the worker waits for ("" otherwise).
  std::string control_tls_waiting;
  std::string now;                     // RFC 3339, for lastTransitionTime
};

// "Running", "WaitingForApproval", ... as shown in `kubectl get ar`.
std::string PhaseName(worker::v1::Phase phase);

nlohmann::json ComputeStatus(const Observation& o);

// Sets condition `type` in `conditions` (a JSON array), keeping lastTransitionTime when
// the status is unchanged.
void SetCondition(nlohmann::json* conditions, const std::string& type, const std::string& status,
                  const std::string& reason, const std::string& message, int64_t generation,
                  const std::string& now);

// True when the pod reports Ready.
bool PodReady(const nlohmann::json& pod);

}  // namespace carapace::controller
