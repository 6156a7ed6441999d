// Implementation of the CLI commands on top of the runtime library.
#include "worker/cli/commands.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <thread>

#include "common/agentrun/spec.h"
#include "common/log.h"
#include "common/process_setup.h"
#include "common/telemetry/tracing.h"
#include "common/time.h"
#include "worker/cli/status_view.h"
#include "worker/model/model_families.h"
#include "worker/runtime/backup.h"
#include "worker/runtime/handoff.h"
#include "worker/runtime/model_outcome.h"
#include "worker/runtime/retention.h"
#include "worker/runtime/run_dirs.h"
#include "worker/runtime/run_loader.h"
#include "worker/runtime/runner.h"

namespace carapace::cli {

namespace {

int ExitCodeFor(const Status& st) {
  switch (st.code()) {
    case StatusCode::kOk: return kExitSucceeded;
    case StatusCode::kInvalidArgument:
    case StatusCode::kNotFound:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kBusy:
    case StatusCode::kAlreadyExists:
    case StatusCode::kPermissionDenied:
      return kExitBadInput;
    default:
      return kExitError;
  }
}

int ExitCodeFor(Phase p) {
  switch (p) {
    case Phase::kSucceeded: return kExitSucceeded;
    case Phase::kBudgetExhausted: return kExitBudgetExhausted;
    case Phase::kFailed: return kExitFailed;
    case Phase::kWaitingForApproval: return kExitWaiting;
    // A state dir a worker wrote: a finished turn is a success; paused or degraded waits
    // for a person; cancelled did not get to an answer.
    case Phase::kIdle: return kExitSucceeded;
    case Phase::kPaused:
    case Phase::kDegraded: return kExitWaiting;
    case Phase::kCancelled: return kExitFailed;
    default: return kExitError;
  }
}

int Fail(const Status& st) {
  std::cerr << "carapace: " << st.message() << "\n";
  return ExitCodeFor(st);
}

// The store of a state dir no process runs (backup, export, take-back). One a worker holds
// is refused with `through_worker`, the command that reaches it through the worker instead.
Result<std::unique_ptr<RunStore>> OpenStoppedStore(const std::string& state_dir, const std::string& through_worker) {
  auto store = RunStore::Open(state_dir, RunStore::OpenMode::kMustExist);
  if (!store.ok() && store.status().code() == StatusCode::kBusy) {
    return store.status().WithContext("a running worker holds it; use `" + through_worker + "`");
  }
  return store;
}

std::string BudgetLeft(const AgentRun& run, const RunState& s) {
  const auto& b = run.spec.budget;
  return "left: " + std::to_string(b.max_steps - s.used.steps) + " steps, " +
         std::to_string(b.max_tokens - s.used.tokens) + " tokens, " +
         std::to_string(b.max_tool_calls - s.used.tool_calls) + " tool calls";
}

// "write plan.md", "POST http://127.0.0.1:8080/orders": the arguments people recognise a
// call by, or the start of the JSON when there are none of those.
std::string Summarize(const nlohmann::json& args) {
  std::string out;
  for (const char* key : {"op", "method", "path", "url"}) {
    if (args.contains(key) && args[key].is_string()) out += (out.empty() ? "" : " ") + args[key].get<std::string>();
  }
  if (out.empty()) out = args.dump();
  return out.size() > 48 ? out.substr(0, 45) + "..." : out;
}

// The human view of a live run: one line per tool call / step, then the outcome.
void PrintHuman(const AgentRun& run, const Event& e, const RunState& s, int64_t* step_tokens) {
  const auto& d = e.data;
  char line[512];
  if (e.type == event_type::kModelResponse) {
    *step_tokens = d.value("promptTokens", int64_t{0}) + d.value("completionTokens", int64_t{0});
    if (d.contains("firstTokenMs")) {
      std::string figures = "first token " + std::to_string(d["firstTokenMs"].get<int64_t>()) + " ms";
      if (d.contains("tokensPerSecond")) {
        std::snprintf(line, sizeof line, ", %.1f tokens/s", d["tokensPerSecond"].get<double>());
        figures += line;
      }
      if (d.value("retries", 0) > 0) figures += ", " + std::to_string(d.value("retries", 0)) + " retries";
      std::cout << "step " << std::setw(3) << e.step << "  model " << d.value("answeredBy", "") << ": " << figures << "\n";
    }
  } else if (e.type == event_type::kToolResult) {
    const CallState* call = s.FindCall(d.value("callId", ""));
    std::string what = d.value("tool", "") + " " + (call ? Summarize(call->call.arguments) : "");
    if (!d.value("ok", false)) what += "  -> error: " + d.value("error", "").substr(0, 60);
    std::snprintf(line, sizeof line, "step %3lld  %-56s %8.1f ms  tokens %6lld  %s\n", static_cast<long long>(e.step),
                  what.c_str(), d.value("durationMs", 0.0), static_cast<long long>(*step_tokens),
                  BudgetLeft(run, s).c_str());
    std::cout << line;
    *step_tokens = 0;
  } else if (e.type == event_type::kToolOutcomeUnknown) {
    std::cout << "step " << e.step << "  " << d.value("tool", "") << " call " << d.value("callId", "")
              << " was cut off by a restart: outcome unknown, not repeated (recovery.unknownOutcome: "
              << UnknownOutcomePolicyName(run.spec.unknown_outcome) << ")\n";
  } else if (e.type == event_type::kModelUnavailable) {
    std::cout << "step " << e.step << "  no model answered (attempt " << d.value("attempt", 0) << "): "
              << d.value("error", "").substr(0, 160) << "; trying again in " << d.value("retryInMs", 0) / 1000.0 << " s\n";
  } else if (e.type == event_type::kModelReplyCut) {
    std::cout << "step " << e.step << "  the reply was cut short (finish_reason " << d.value("finishReason", "")
              << "): not taken as an answer\n";
  } else if (e.type == event_type::kSpecRevised || e.type == event_type::kBudgetDeferred) {
    std::cout << DescribeEvent(e) << "\n";
  } else if (e.type == event_type::kApprovalRequested) {
    std::cout << "step " << e.step << "  " << d.value("tool", "") << " call " << d.value("callId", "")
              << " waits for a person (" << d.value("reason", "") << ")\n";
  } else if (e.type == event_type::kPhaseChanged && IsTerminal(s.phase) && e.step > 0 && *step_tokens > 0) {
    std::snprintf(line, sizeof line, "step %3lld  %-56s %8s     tokens %6lld  %s\n", static_cast<long long>(e.step),
                  "(answer)", "", static_cast<long long>(*step_tokens), BudgetLeft(run, s).c_str());
    std::cout << line;
  }
  std::cout.flush();
}

void PrintOutcome(const RunState& s, const std::string& state_dir) {
  std::cout << PhaseName(s.phase);
  if (s.phase == Phase::kSucceeded) std::cout << ": " << s.result;
  else if (!s.reason.empty()) std::cout << ": " << s.reason;
  std::cout << "\n  steps " << s.used.steps << ", tokens " << s.used.tokens << ", tool calls " << s.used.tool_calls
            << "\n  state: " << state_dir << " (workspace: " << state_dir << "/workspace)\n";
  for (const auto* c : s.WaitingCalls()) {
    std::cout << "  waiting: call " << c->call.id << " " << c->call.name << " " << c->call.arguments.dump() << " ("
              << c->wait_reason << ")\n    carapace approve --state-dir " << state_dir << " --call " << c->call.id
              << " [--deny]\n";
  }
}

}  // namespace

int Validate(const std::string& file) {
  auto run = LoadAgentRunFile(file);
  if (!run.ok()) return Fail(run.status());
  // A chat template is loaded here as the worker loads it, so a template the worker cannot
  // render is found before the agent is deployed. A ConfigMap's exists only in the cluster.
  std::vector<std::pair<std::string, const ModelEndpointSpec*>> endpoints = {{"spec.model", &run->spec.model}};
  for (size_t i = 0; i < run->spec.model.fallbacks.size(); ++i) {
    endpoints.emplace_back("spec.model.fallbacks[" + std::to_string(i) + "]", &run->spec.model.fallbacks[i]);
  }
  if (run->spec.context && run->spec.context->summary_model) {
    endpoints.emplace_back("spec.context.summaryModel", &*run->spec.context->summary_model);
  }
  for (const auto& [field, endpoint] : endpoints) {
    if (endpoint->backend != "triton") continue;
    if (!endpoint->triton.jinja.config_map.empty()) {
      std::cout << file << ": " << field << ".triton.chatTemplate is read from ConfigMap \""
                << endpoint->triton.jinja.config_map << "\" in the cluster; not checked here\n";
      continue;
    }
    auto chat_template = ChatTemplateFor(endpoint->triton);
    if (!chat_template.ok()) return Fail(chat_template.status().WithContext(file + ": " + field));
    if (chat_template->jinja) {
      for (const auto& note : chat_template->jinja->Deferred()) std::cout << file << ": " << field << ": " << note << "\n";
    }
  }
  std::cout << file << ": valid AgentRun " << run->metadata.ns << "/" << run->metadata.name << "\n";
  return kExitSucceeded;
}

int Run(const std::string& file, const std::string& state_dir, bool json, bool restart) {
  auto run = LoadAgentRunFile(file);
  if (!run.ok()) return Fail(run.status());
  // The same spans as the worker's, when OTEL_EXPORTER_OTLP_ENDPOINT names a receiver.
  if (Status s = telemetry::InitTracing(telemetry::ParseTracingEnv("carapace"), {{"carapace.agentrun.name", run->metadata.name},
                                                   {"carapace.agentrun.namespace", run->metadata.ns}});
      !s.ok()) {
    return Fail(s);
  }
  struct StopTracing {
    ~StopTracing() { telemetry::ShutdownTracing(std::chrono::milliseconds(2000)); }
  } stop_tracing;
  if (restart) {
    auto aside = SetRunAside(state_dir);
    if (!aside.ok()) return Fail(aside.status());
    if (!aside->empty() && !json) {
      std::cout << "carapace: the previous run is kept in " << *aside << " (inspect or fork it there); starting afresh\n";
    }
  }
  auto store = RunStore::Open(state_dir, RunStore::OpenMode::kCreateIfMissing);
  if (!store.ok()) return Fail(store.status());

  ModelRegistry models;
  RegisterBuiltinModels(&models);
  ToolRegistry tools;
  RegisterBuiltinTools(&tools);

  int64_t step_tokens = 0;
  RunnerOptions options;
  const AgentRun& spec = *run;
  options.on_event = [&](const Event& e, const RunState& s) {
    if (json) {
      std::cout << e.ToJson().dump() << "\n";
      std::cout.flush();
    } else {
      PrintHuman(spec, e, s, &step_tokens);
    }
  };
  auto runner = Runner::Create(store->get(), *run, models, tools, options);
  if (!runner.ok()) return Fail(runner.status());
  const RunState& before = (*runner)->state();
  if (before.phase == Phase::kDegraded && before.degraded_hold) {
    // Running it again is a person's word to try the held turn again (a fixed key in the
    // environment, a model service back): as `carapace resume` for a worker.
    Event resume;
    resume.type = event_type::kResumeRequested;
    resume.data = {{"by", "cli"}};
    if (auto st = AppendExternalEvent(store->get(), resume); !st.ok()) return Fail(st.status());
  }
  bool finished_before = IsTerminal(before.phase);
  if (!json) {
    if (finished_before) {
      std::cout << "carapace: " << run->metadata.name << " already finished in " << state_dir
                << "; nothing redone (see `carapace inspect --state-dir " << state_dir << "`)\n";
    } else if (before.phase != Phase::kPending) {
      std::cout << "carapace: resuming " << run->metadata.name << " at step " << before.step << " from " << state_dir
                << (before.spec_hash.empty() || before.spec_hash == run->SpecHash()
                        ? std::string()
                        : " (the spec changed: it becomes revision " + std::to_string(before.revision + 1) + ")")
                << "\n";
    } else {
      std::cout << "carapace: running " << run->metadata.name << " (state: " << state_dir << ")\n";
    }
  }
  // A model that cannot be reached is waited out here too, for recovery.modelUnavailableSeconds.
  const int64_t limit_ms = run->spec.model_unavailable_seconds.value_or(kDefaultModelUnavailableSeconds) * 1000;
  auto phase = (*runner)->Run();
  int wait_exit = 0;
  while (phase.ok() && *phase == Phase::kRunning && (*runner)->NextTryAtMs()) {
    const int64_t now = RealClock()->NowMillis();
    const int64_t since = (*runner)->ModelUnavailableSinceMs();
    if (since == 0 || now - since >= limit_ms) {
      wait_exit = kExitModelUnavailable;  // a period budget, or the model gone too long
      break;
    }
    const int64_t until = std::min(*(*runner)->NextTryAtMs(), since + limit_ms);
    if (until > now) std::this_thread::sleep_for(std::chrono::milliseconds(until - now));
    phase = (*runner)->Run();
  }
  if (!phase.ok()) return Fail(phase.status());
  if (json) {
    auto identity = LoadRunIdentity(**store);
    if (identity.ok() && *identity) {
      std::cout << "{\"type\":\"status\",\"status\":" << RunStatusJson(BuildRunStatus(**identity, (*runner)->state()))
                << "}\n";
    }
  } else {
    PrintOutcome((*runner)->state(), state_dir);
  }
  if (wait_exit != 0) {
    const RunState& s = (*runner)->state();
    std::cerr << "carapace: "
              << (s.deferred_reason.empty() ? "no model answered for " + std::to_string(limit_ms / 1000) +
                                                  " s (recovery.modelUnavailableSeconds): " + s.model_error
                                            : s.deferred_reason)
              << "\n  the turn is kept; run `carapace run " << file << " --state-dir " << state_dir
              << "` again to resume it\n";
    return wait_exit;
  }
  return ExitCodeFor(*phase);
}

int Inspect(const std::string& state_dir, bool json) {
  auto store = RunStore::Open(state_dir, RunStore::OpenMode::kMustExist);
  if (!store.ok()) return Fail(store.status());
  auto identity = LoadRunIdentity(**store);
  if (!identity.ok()) return Fail(identity.status());
  if (!*identity) return Fail(NotFound("state dir " + state_dir + " holds no run"));
  auto state = LoadRunState(**store);
  if (!state.ok()) return Fail(state.status());
  auto events = ReadAllEvents(**store);
  if (!events.ok()) return Fail(events.status());
  std::vector<int64_t> checkpoints;
  Status st = (*store)->ForEachCheckpoint([&](int64_t step, std::string_view) {
    checkpoints.push_back(step);
    return true;
  });
  if (!st.ok()) return Fail(st);
  auto status = BuildRunStatus(**identity, *state);

  if (json) {
    nlohmann::json out;
    out["status"] = nlohmann::json::parse(RunStatusJson(status));
    out["events"] = nlohmann::json::array();
    for (const auto& e : *events) out["events"].push_back(e.ToJson());
    out["checkpoints"] = checkpoints;
    std::cout << out.dump() << "\n";
    return kExitSucceeded;
  }
  const auto& s = *state;
  const auto& b = status.budget();
  std::cout << "AgentRun " << status.namespace_() << "/" << status.name() << "  run " << status.run_id() << "\n"
            << "phase:   " << PhaseName(s.phase) << (s.reason.empty() ? "" : " (" + s.reason + ")") << "\n";
  if (s.phase == Phase::kSucceeded) std::cout << "result:  " << s.result << "\n";
  std::cout << LongLifeLines(status);
  std::cout << "step:    " << s.step << "   last checkpoint: step " << s.last_checkpoint_step << "   events: "
            << events->size() << "\n"
            << "budget:  steps " << b.steps() << "/" << b.max_steps() << ", tokens " << b.tokens() << "/"
            << b.max_tokens() << ", tool calls " << b.tool_calls() << "/" << b.max_tool_calls() << ", wall clock "
            << b.wall_clock_ms() / 1000.0 << "s/" << b.max_wall_clock_seconds() << "s\n";
  for (const auto* c : s.WaitingCalls()) {
    std::cout << "waiting: " << c->call.id << " " << c->call.name << " " << c->call.arguments.dump() << " ("
              << c->wait_reason << ")\n";
  }
  std::cout << "events:\n";
  for (const auto& e : *events) {
    std::cout << "  " << e.seq << "  step " << e.step << "  " << DescribeEvent(e) << "\n";
  }
  // A step per checkpoint: a long life has many, and the first and last are what fork needs.
  if (checkpoints.size() <= 20) {
    std::cout << "checkpoints: steps";
    for (auto c : checkpoints) std::cout << " " << c;
  } else {
    std::cout << "checkpoints: " << checkpoints.size() << ", steps " << checkpoints.front() << " to " << checkpoints.back();
  }
  auto trimmed = LastRemovedHistory(**store);
  if (!trimmed.ok()) return Fail(trimmed.status());
  if (*trimmed) {
    std::cout << "\nretention: events before " << (*trimmed)->events_before << ", checkpoints before step "
              << (*trimmed)->checkpoints_before << " and transcript messages before " << (*trimmed)->messages_before
              << " were removed by spec.retention";
  }
  std::cout << "\nstate dir: " << state_dir << "\n";
  return kExitSucceeded;
}

int Approve(const std::string& state_dir, const std::string& call_id, bool deny) {
  auto store = RunStore::Open(state_dir, RunStore::OpenMode::kMustExist);
  if (!store.ok()) return Fail(store.status());
  const char* user = std::getenv("USER");
  Status st = SettleWaitingCall(store->get(), call_id, !deny, std::string("cli:") + (user ? user : "unknown"));
  if (!st.ok()) return Fail(st);
  std::cout << "call " << call_id << (deny ? " denied" : " approved")
            << "; the next `carapace run` continues the run\n";
  return kExitSucceeded;
}

int Compact(const std::string& file, const std::string& state_dir) {
  auto run = LoadAgentRunFile(file);
  if (!run.ok()) return Fail(run.status());
  auto store = RunStore::Open(state_dir, RunStore::OpenMode::kMustExist);
  if (!store.ok()) return Fail(store.status());
  ModelRegistry models;
  RegisterBuiltinModels(&models);
  ToolRegistry tools;
  RegisterBuiltinTools(&tools);
  RunnerOptions options;
  options.persistent = true;  // a worker's run stays Idle; nothing is run on
  auto runner = Runner::Create(store->get(), *run, models, tools, options);
  if (!runner.ok()) return Fail(runner.status());
  const char* user = std::getenv("USER");
  const RunState& s = (*runner)->state();
  const int64_t before = s.compactions;
  auto changed = (*runner)->CompactNow(std::string("cli:") + (user ? user : "unknown"));
  if (!changed.ok()) return Fail(changed.status());
  if (s.compactions == before) {
    std::cout << "nothing to compact: every turn before the current one is already in the summary, or the "
                 "conversation is no longer than what a compaction keeps\n";
  } else {
    std::cout << "compacted: messages before " << s.compacted_to << " are in the summary (" << s.summary.size()
              << " bytes); " << s.compactions << " compaction" << (s.compactions == 1 ? "" : "s")
              << " in all. Every original message stays in the event log and transcript\n";
  }
  return kExitSucceeded;
}

int Backup(const std::string& state_dir, const std::string& to_dir) {
  auto store = OpenStoppedStore(state_dir, "carapace backup --worker ADDR");
  if (!store.ok()) return Fail(store.status());
  auto made = BackupRun(**store, to_dir);
  if (!made.ok()) return Fail(made.status());
  std::cout << "backed up run " << made->run_id << " (" << made->ns << "/" << made->name << ") to " << to_dir
            << ": events up to " << made->last_seq << ", " << made->bytes << " bytes, " << made->duration_ms << " ms\n";
  return kExitSucceeded;
}

int Restore(const std::string& from, const std::string& state_dir, bool fork, const std::string& claim_as,
            bool skip_if_restored) {
  RestoreOptions options;
  options.fork = fork;
  options.claim_as = claim_as;
  options.skip_if_restored = skip_if_restored;
  auto r = RestoreAgent(from, state_dir, options);
  if (!r.ok()) return Fail(r.status());
  if (r->already) {
    std::cout << "already restored: " << state_dir << " holds run " << r->run_id << " from " << from << "; nothing to do\n";
    return kExitSucceeded;
  }
  std::cout << (r->kind == "archive" ? "imported" : "restored") << " run " << r->source_run_id << " (" << r->ns << "/"
            << r->name << ") into " << state_dir << ": events up to " << r->last_seq << " (copied "
            << FormatRfc3339Millis(r->created_ms) << ").";
  if (fork) {
    std::cout << " It is a new agent, run " << r->run_id << ": it repeats nothing the original did\n";
  } else if (r->kind == "archive") {
    std::cout << " It goes on as the same agent; the archive is claimed (" << from << kImportClaimSuffix
              << ") and cannot be imported again\n";
  } else {
    std::cout << " It is the same agent: run it in one place only\n";
  }
  return kExitSucceeded;
}

int TakeBack(const std::string& state_dir) {
  auto store = OpenStoppedStore(state_dir, "carapace resume --worker ADDR --take-back");
  if (!store.ok()) return Fail(store.status());
  auto state = LoadRunState(**store);
  if (!state.ok()) return Fail(state.status());
  const std::string id = state->handoff_id;
  Status st = RevokeHandOff(store->get(), id, "cli");
  if (!st.ok()) return Fail(st);
  std::cout << "took export " << id << " back: " << state_dir
            << " goes on with `carapace run`; the archive of that export must never be imported\n";
  return kExitSucceeded;
}

int Export(const std::string& state_dir, const std::string& to) {
  std::error_code ec;
  if (std::filesystem::exists(to, ec)) return Fail(FailedPrecondition(to + " exists; export into a new file"));
  auto store = OpenStoppedStore(state_dir, "carapace export --worker ADDR");
  if (!store.ok()) return Fail(store.status());
  auto state = LoadRunState(**store);
  if (!state.ok()) return Fail(state.status());
  {
    // Where the archive goes must take it before the agent is fenced for it.
    const std::string probe = to + ".writing";
    const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return Fail(IoError("cannot write " + probe + ": " + std::strerror(errno) + "; nothing was exported"));
    ::close(fd);
    ::unlink(probe.c_str());
  }
  auto id = RecordHandOff(store->get(), state->handoff_id, "cli");
  if (!id.ok()) return Fail(id.status());
  auto m = ExportRun(**store, HostName() + ":" + state_dir, to);
  if (!m.ok()) return Fail(m.status().WithContext("the hand-off is recorded (export " + *id + "); export again"));
  std::cout << "exported run " << m->run_id << " (" << m->ns << "/" << m->name << ") to " << to << ": events up to "
            << m->last_seq << ", hand-off " << *id << ". " << state_dir
            << " is fenced: it never acts again. Continue the agent with `carapace import --from " << to
            << " --state-dir DIR`, or in a cluster with spec.storage.restoreFrom\n";
  return kExitSucceeded;
}

int Fork(const std::string& state_dir, long long from_step, const std::string& to_dir) {
  auto store = RunStore::Open(state_dir, RunStore::OpenMode::kMustExist);
  if (!store.ok()) return Fail(store.status());
  Status st = ForkRun(**store, from_step, to_dir);
  if (!st.ok()) return Fail(st);
  std::cout << "forked " << state_dir << " at step " << from_step << " into " << to_dir
            << "; continue it with `carapace run FILE --state-dir " << to_dir << "`\n";
  return kExitSucceeded;
}

}  // namespace carapace::cli
