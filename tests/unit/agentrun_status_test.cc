// AgentRun status from observations: phases, conditions, and a status that stays
// byte-identical when nothing changed (so the reconciler writes nothing).
#include <catch2/catch_test_macros.hpp>

#include "operator/controller/agentrun_reconciler.h"
#include "operator/controller/agentrun_status.h"

using namespace carapace::controller;
using nlohmann::json;
namespace v1 = carapace::worker::v1;

namespace {

json Condition(const json& status, const std::string& type) {
  for (const auto& c : status["conditions"]) {
    if (c["type"] == type) return c;
  }
  FAIL("no condition " << type);
  return {};
}

Observation Base() {
  Observation o;
  o.agentrun = {{"metadata", {{"name", "a"}, {"generation", 3}}}};
  o.spec_hash = "abc";
  o.now = "2026-11-27T10:00:00Z";
  o.statefulset = json{{"metadata", {{"name", "a"}, {"generation", 1}}},
                       {"spec", {{"replicas", 1}}},
                       {"status", {{"observedGeneration", 1}, {"readyReplicas", 1}, {"currentRevision", "r1"}, {"updateRevision", "r1"}}}};
  o.pod = json{{"status", {{"conditions", json::array({{{"type", "Ready"}, {"status", "True"}}})}}}};
  return o;
}

}  // namespace

TEST_CASE("an invalid spec is not accepted, with the parser's field path in the message", "[operator][status]") {
  Observation o = Base();
  o.invalid_spec = "AgentRun x:7:3: spec.model.backend: must be one of scripted, openai, triton";
  json s = ComputeStatus(o);
  CHECK(s["phase"] == "Invalid");
  CHECK(Condition(s, "Accepted")["status"] == "False");
  CHECK(Condition(s, "Accepted")["reason"] == "InvalidSpec");
  CHECK(Condition(s, "Accepted")["message"] == o.invalid_spec);
  CHECK(s["observedGeneration"] == 3);
}

TEST_CASE("the worker's report becomes phase, step, budgets and the Succeeded condition", "[operator][status]") {
  Observation o = Base();
  v1::RunStatus w;
  w.set_phase(v1::PHASE_SUCCEEDED);
  w.set_step(7);
  w.set_result("done: 3 issues");
  w.set_spec_hash("abc");
  w.mutable_budget()->set_tokens(1200);
  w.mutable_budget()->set_max_tokens(5000);
  o.worker = w;
  json s = ComputeStatus(o);
  CHECK(s["phase"] == "Succeeded");
  CHECK(s["step"] == 7);
  CHECK(s["result"] == "done: 3 issues");
  CHECK(s["budget"]["tokens"] == 1200);
  CHECK(Condition(s, "Succeeded")["status"] == "True");
  CHECK(Condition(s, "Ready")["status"] == "True");
  CHECK(Condition(s, "Accepted")["status"] == "True");
  CHECK(Condition(s, "Progressing")["reason"] == "Finished");

  // With the pod gone, the last report is kept: a finished run stays Succeeded.
  Observation later = Base();
  later.agentrun["status"] = s;
  later.pod.reset();
  later.now = "2026-11-27T11:00:00Z";
  json s2 = ComputeStatus(later);
  CHECK(s2["phase"] == "Succeeded");
  CHECK(s2["result"] == "done: 3 issues");
  CHECK(Condition(s2, "Ready")["status"] == "False");
  // Accepted did not change: its transition time did not move.
  CHECK(Condition(s2, "Accepted")["lastTransitionTime"] == "2026-11-27T10:00:00Z");
  CHECK(Condition(s2, "Ready")["lastTransitionTime"] == "2026-11-27T11:00:00Z");
}

TEST_CASE("the same observations give the same status, so nothing is written", "[operator][status]") {
  Observation o = Base();
  json first = ComputeStatus(o);
  o.agentrun["status"] = first;
  o.now = "2026-11-27T12:00:00Z";
  CHECK(ComputeStatus(o) == first);
}

TEST_CASE("suspended, hibernating, crash-looping and rolling-out agents say so", "[operator][status]") {
  Observation o = Base();
  o.suspended = true;
  CHECK(ComputeStatus(o)["phase"] == "Suspended");
  CHECK(Condition(ComputeStatus(o), "Ready")["reason"] == "Suspended");

  o = Base();
  o.hibernation = {{"since", "2026-11-27T09:00:00Z"}, {"wakeAt", "2026-11-30T09:00:00Z"}, {"specHash", "abc"}};
  json s = ComputeStatus(o);
  CHECK(s["phase"] == "Hibernating");
  CHECK(s["hibernation"]["wakeAt"] == "2026-11-30T09:00:00Z");

  o = Base();
  o.pod = json{{"status", {{"containerStatuses", json::array({{{"restartCount", 5}, {"state", {{"waiting", {{"reason", "CrashLoopBackOff"}}}}}}})}}}};
  s = ComputeStatus(o);
  CHECK(Condition(s, "Degraded")["status"] == "True");
  CHECK(Condition(s, "Degraded")["reason"] == "CrashLoopBackOff");
  CHECK(Condition(s, "Ready")["status"] == "False");

  o = Base();
  (*o.statefulset)["status"]["updateRevision"] = "r2";
  CHECK(Condition(ComputeStatus(o), "Progressing")["status"] == "True");
}

TEST_CASE("a restore that keeps failing makes the AgentRun Degraded with the CLI's reason; one that succeeded does not",
          "[operator][restore]") {
  auto restore = [](const json& state, const json& last) {
    json cs = {{"name", "restore"}, {"restartCount", 3}, {"state", state}};
    if (!last.is_null()) cs["lastState"] = {{"terminated", last}};
    return json{{"status", {{"initContainerStatuses", json::array({cs})},
                            {"containerStatuses", json::array({{{"name", "worker"}, {"restartCount", 0},
                                                                {"state", {{"waiting", {{"reason", "PodInitializing"}}}}}}})}}}};
  };
  const json refused = {{"exitCode", 1}, {"reason", "Error"},
                        {"message", "carapace: archive /restore-source/a.carapace was imported already, by ns/other/uid\n"}};
  Observation o = Base();
  o.pod = restore({{"waiting", {{"reason", "CrashLoopBackOff"}}}}, refused);
  json s = ComputeStatus(o);
  CHECK(Condition(s, "Degraded")["status"] == "True");
  CHECK(Condition(s, "Degraded")["reason"] == "RestoreFailed");
  CHECK(Condition(s, "Degraded")["message"] ==
        "restoring spec.storage.restoreFrom failed (exit 1, 3 tries): carapace: archive /restore-source/a.carapace was "
        "imported already, by ns/other/uid");
  CHECK(Condition(s, "Ready")["status"] == "False");

  // Running again after a failure: still the last failure's reason, until it completes.
  o.pod = restore({{"running", json::object()}}, refused);
  CHECK(Condition(ComputeStatus(o), "Degraded")["reason"] == "RestoreFailed");
  // Completed, after failures before: nothing wrong now.
  o.pod = restore({{"terminated", {{"exitCode", 0}, {"reason", "Completed"}}}}, refused);
  CHECK(Condition(ComputeStatus(o), "Degraded")["status"] == "False");
  // Never failed.
  o.pod = restore({{"running", json::object()}}, nullptr);
  CHECK(Condition(ComputeStatus(o), "Degraded")["status"] == "False");
}

TEST_CASE("drift is found by comparing only the fields we set", "[operator]") {
  CHECK(IsSubset(json{{"a", 1}}, json{{"a", 1}, {"b", 2}}));
  CHECK_FALSE(IsSubset(json{{"a", 1}}, json{{"a", 2}}));
  CHECK_FALSE(IsSubset(json{{"l", {1, 2}}}, json{{"l", {1}}}));
  CHECK(IsSubset(json{{"l", json::array({{{"x", 1}}})}}, json{{"l", json::array({{{"x", 1}, {"y", 2}}})}}));
  CHECK(IsSubset(json{{"n", 288}}, json{{"n", 288.0}}));
}

TEST_CASE("a worker waiting for its model, or held by a refusal, says so in its conditions; the revision is shown",
          "[operator][status]") {
  Observation o = Base();
  v1::RunStatus w;
  w.set_phase(v1::PHASE_RUNNING);
  w.set_spec_hash("abc");
  w.set_revision(3);
  w.set_waiting_for("ModelUnavailable");
  w.set_waiting_detail("openai llm@http://vllm:8000/v1: Failed to connect");
  w.set_next_try_at_ms(1795000000000);
  o.worker = w;
  json s = ComputeStatus(o);
  CHECK(s["phase"] == "Running");
  CHECK(s["revision"] == 3);
  json progressing = Condition(s, "Progressing");
  CHECK(progressing["status"] == "False");
  CHECK(progressing["reason"] == "ModelUnavailable");
  CHECK(progressing["message"].get<std::string>().find("Failed to connect; next try at 2026-11-18T") != std::string::npos);
  CHECK(Condition(s, "Degraded")["status"] == "False");

  w.clear_waiting_for();
  w.set_phase(v1::PHASE_DEGRADED);
  w.set_degraded_cause("model_refused");
  w.set_reason("ModelRefused: the model service refused the request: HTTP 401");
  o.worker = w;
  s = ComputeStatus(o);
  CHECK(Condition(s, "Degraded")["reason"] == "ModelRefused");
  CHECK(Condition(s, "Degraded")["message"] == "ModelRefused: the model service refused the request: HTTP 401");
  w.set_degraded_cause("context_length");
  o.worker = w;
  CHECK(Condition(ComputeStatus(o), "Degraded")["reason"] == "ContextLengthExceeded");
  w.set_degraded_cause("crash_loop");
  o.worker = w;
  CHECK(Condition(ComputeStatus(o), "Degraded")["reason"] == "CrashLoopBreaker");
}

TEST_CASE("a worker waiting for room on its volume is Degraded and not Progressing, with how much is free",
          "[operator][status]") {
  Observation o = Base();
  v1::RunStatus w;
  w.set_phase(v1::PHASE_RUNNING);
  w.set_waiting_for("VolumeFull");
  w.set_waiting_detail("the volume of /var/lib/carapace is full: 188416 bytes free, writing to the store needs about "
                       "1049014; nothing was written");
  o.worker = w;
  json s = ComputeStatus(o);
  CHECK(s["phase"] == "Running");
  for (const char* type : {"Progressing", "Degraded"}) {
    INFO(type);
    json c = Condition(s, type);
    CHECK(c["status"] == (std::string(type) == "Degraded" ? "True" : "False"));
    CHECK(c["reason"] == "VolumeFull");
    CHECK(c["message"].get<std::string>().find("188416 bytes free") != std::string::npos);
  }
  // Room again: the conditions say so.
  w.clear_waiting_for();
  w.clear_waiting_detail();
  o.worker = w;
  s = ComputeStatus(o);
  CHECK(Condition(s, "Degraded")["status"] == "False");
  CHECK(Condition(s, "Progressing")["reason"] != "VolumeFull");
}
