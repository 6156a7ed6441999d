// `carapace`: run an AgentRun locally, inspect a state dir, settle approvals, fork a run.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "common/process_setup.h"
#include "worker/cli/commands.h"
#include "worker/cli/remote.h"
#include "worker/cli/timeline_ui.h"

namespace {

constexpr const char* kUsage = R"(usage:
  carapace run FILE --state-dir DIR [--json] [--restart]
                                                 run (or resume) an AgentRun until it ends or waits;
                                                 a changed FILE is a new revision of the same run;
                                                 --restart sets the old run aside and starts afresh
  carapace inspect --state-dir DIR [--json]      phase, budgets, every event, checkpoints
  carapace approve --state-dir DIR --call ID [--deny]
                                                 settle a call that waits for a person
  carapace fork --state-dir DIR --from-step N --to DIR2
                                                 start a new run from the checkpoint of step N
  carapace compact FILE --state-dir DIR          fold older messages into the summary now (the
                                                 model in FILE writes it; the transcript keeps all)
  carapace validate FILE                         check an AgentRun manifest
  carapace backup --state-dir DIR --to DIR2      a consistent copy of a stopped agent (docs/operations.md)
  carapace export --state-dir DIR --to FILE      hand a stopped agent off: fence it, write one archive
  carapace resume --state-dir DIR --take-back    lift that fence (its archive never imported)
  carapace import|restore --from PATH --state-dir DIR [--fork] [--claim-as ID] [--skip-if-restored]
                                                 start the agent in a new state dir from an archive
                                                 (export) or a backup dir; an archive once only
                                                 (--fork: a new agent, new run id); see
                                                 docs/operations.md, "Move an agent"

against a running carapace-worker (its control API; the token from --token-file FILE,
CARAPACE_TOKEN_FILE or CARAPACE_TOKEN; over TLS with --tls-ca FILE or CARAPACE_TLS_CA, the CA
that signed the worker's certificate, and --tls-server-name NAME when the certificate names
another host than ADDR; without a CA, plaintext):
  carapace status --worker ADDR [--json]          phase, step, budgets, inbox, waiting calls
  carapace events --worker ADDR [--from N] [--follow]
                                                 the event log from seq N; --follow: as it grows
  carapace send --worker ADDR TEXT               queue a message (stored before it is acknowledged)
  carapace approve --worker ADDR --call ID [--deny]
  carapace pause|resume --worker ADDR
  carapace resume --worker ADDR --take-back      lift an export's fence (its archive never imported)
  carapace export --worker ADDR --to FILE        hand the agent off: it finishes its action, is fenced
                                                 for good, and its archive is written to FILE
  carapace cancel --worker ADDR [--reason TEXT]
  carapace compact --worker ADDR                 fold older messages into the summary at the next step
  carapace backup --worker ADDR [--name NAME]    a consistent copy of the live agent, on its volume
  carapace ui --worker ADDR [--listen HOST:PORT] a web page of the agent's timeline, live, on
                                                 127.0.0.1:7071 (loopback only unless
                                                 --allow-remote-listen); see docs/timeline.md

exit codes: 0 succeeded, 1 error (I/O, damaged store), 2 bad input, 3 budget exhausted,
            4 failed, 5 waiting for a person (approval, or a model service that refused the turn),
            6 waiting for a time (the model unreachable for recovery.modelUnavailableSeconds, or
            a period budget): run again to resume
)";

int Usage(const std::string& problem) {
  if (!problem.empty()) std::cerr << "carapace: " << problem << "\n";
  std::cerr << kUsage;
  return 2;
}

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> flags;  // value "" for boolean flags
};

// Flags that take a value; everything else starting with -- is boolean.
bool TakesValue(const std::string& flag) {
  return flag == "--state-dir" || flag == "--call" || flag == "--from-step" || flag == "--to" || flag == "--worker" ||
         flag == "--token-file" || flag == "--from" || flag == "--reason" || flag == "--listen" || flag == "--name" ||
         flag == "--claim-as" || flag == "--tls-ca" || flag == "--tls-server-name";
}

bool Parse(int argc, char** argv, Args* out, std::string* problem) {
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) == 0) {
      std::string value;
      auto eq = a.find('=');
      if (eq != std::string::npos) {
        value = a.substr(eq + 1);
        a = a.substr(0, eq);
      } else if (TakesValue(a)) {
        if (i + 1 >= argc) {
          *problem = a + " needs a value";
          return false;
        }
        value = argv[++i];
      }
      out->flags[a] = value;
    } else {
      out->positional.push_back(a);
    }
  }
  return true;
}

bool Check(const Args& args, const std::vector<std::string>& allowed, size_t positional, std::string* problem) {
  for (const auto& [flag, value] : args.flags) {
    if (std::find(allowed.begin(), allowed.end(), flag) == allowed.end()) {
      *problem = "unknown flag " + flag;
      return false;
    }
    if (TakesValue(flag) && value.empty()) {
      *problem = flag + " needs a value";
      return false;
    }
  }
  if (args.positional.size() != positional) {
    *problem = "expected " + std::to_string(positional) + " argument(s), got " + std::to_string(args.positional.size());
    return false;
  }
  return true;
}

std::string Need(const Args& args, const std::string& flag, std::string* problem) {
  auto it = args.flags.find(flag);
  if (it == args.flags.end()) {
    *problem = flag + " is required";
    return "";
  }
  return it->second;
}

}  // namespace

static int Main(int argc, char** argv) {
  if (argc < 2) return Usage("");
  std::string cmd = argv[1];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    std::cout << kUsage;
    return 0;
  }
  Args args;
  std::string problem;
  if (!Parse(argc, argv, &args, &problem)) return Usage(problem);
  namespace cli = carapace::cli;

  if (cmd == "run") {
    if (!Check(args, {"--state-dir", "--json", "--restart"}, 1, &problem)) return Usage(problem);
    std::string dir = Need(args, "--state-dir", &problem);
    if (!problem.empty()) return Usage(problem);
    return cli::Run(args.positional[0], dir, args.flags.count("--json") > 0, args.flags.count("--restart") > 0);
  }
  if (cmd == "inspect") {
    if (!Check(args, {"--state-dir", "--json"}, 0, &problem)) return Usage(problem);
    std::string dir = Need(args, "--state-dir", &problem);
    if (!problem.empty()) return Usage(problem);
    return cli::Inspect(dir, args.flags.count("--json") > 0);
  }
  // Commands against a running worker.
  if (args.flags.count("--worker")) {
    cli::WorkerTarget w;
    w.address = args.flags["--worker"];
    auto token_file = args.flags.count("--token-file") ? args.flags["--token-file"] : std::string();
    const std::vector<std::string> common = {"--worker", "--token-file", "--tls-ca", "--tls-server-name"};
    auto flag = [&](const char* name) { return args.flags.count(name) ? args.flags[name] : std::string(); };
    if (!cli::LoadWorkerTls(flag("--tls-ca"), flag("--tls-server-name"), &w, &problem)) return Usage(problem);
    auto allowed = [&](std::vector<std::string> extra) {
      extra.insert(extra.end(), common.begin(), common.end());
      return extra;
    };
    if (cmd == "status" && Check(args, allowed({"--json"}), 0, &problem) && cli::LoadWorkerToken(token_file, &w, &problem)) {
      return cli::RemoteStatus(w, args.flags.count("--json") > 0);
    }
    if (cmd == "events" && Check(args, allowed({"--from", "--follow"}), 0, &problem) && cli::LoadWorkerToken(token_file, &w, &problem)) {
      char* end = nullptr;
      const std::string from = args.flags.count("--from") ? args.flags["--from"] : "1";
      unsigned long long n = std::strtoull(from.c_str(), &end, 10);
      if (*end != '\0') return Usage("--from must be an event number, got \"" + from + "\"");
      return cli::RemoteEvents(w, n, args.flags.count("--follow") > 0);
    }
    if (cmd == "send" && Check(args, allowed({}), 1, &problem) && cli::LoadWorkerToken(token_file, &w, &problem)) {
      return cli::RemoteSend(w, args.positional[0]);
    }
    if (cmd == "approve" && Check(args, allowed({"--call", "--deny"}), 0, &problem) && cli::LoadWorkerToken(token_file, &w, &problem)) {
      std::string call = Need(args, "--call", &problem);
      if (!problem.empty()) return Usage(problem);
      return cli::RemoteDecide(w, call, args.flags.count("--deny") > 0);
    }
    if (cmd == "pause" && Check(args, allowed({}), 0, &problem) && cli::LoadWorkerToken(token_file, &w, &problem)) {
      return cli::RemotePause(w);
    }
    if (cmd == "resume" && Check(args, allowed({"--take-back"}), 0, &problem) && cli::LoadWorkerToken(token_file, &w, &problem)) {
      return cli::RemoteResume(w, args.flags.count("--take-back") > 0);
    }
    if (cmd == "export" && Check(args, allowed({"--to"}), 0, &problem) && cli::LoadWorkerToken(token_file, &w, &problem)) {
      std::string to = Need(args, "--to", &problem);
      if (!problem.empty()) return Usage(problem);
      return cli::RemoteExport(w, to);
    }
    if (cmd == "compact" && Check(args, allowed({}), 0, &problem) && cli::LoadWorkerToken(token_file, &w, &problem)) {
      return cli::RemoteCompact(w);
    }
    if (cmd == "backup" && Check(args, allowed({"--name"}), 0, &problem) && cli::LoadWorkerToken(token_file, &w, &problem)) {
      return cli::RemoteBackup(w, args.flags.count("--name") ? args.flags["--name"] : "");
    }
    if (cmd == "ui" && Check(args, allowed({"--listen", "--allow-remote-listen"}), 0, &problem) &&
        cli::LoadWorkerToken(token_file, &w, &problem)) {
      cli::UiOptions options;
      if (args.flags.count("--listen")) options.listen = args.flags["--listen"];
      options.allow_remote = args.flags.count("--allow-remote-listen") > 0;
      return cli::RunUi(w, options);
    }
    if (cmd == "cancel" && Check(args, allowed({"--reason"}), 0, &problem) && cli::LoadWorkerToken(token_file, &w, &problem)) {
      return cli::RemoteCancel(w, args.flags.count("--reason") ? args.flags["--reason"] : "");
    }
    return Usage(problem.empty() ? "\"" + cmd + "\" does not take --worker" : problem);
  }
  if (cmd == "ui") return Usage("ui needs --worker ADDR (the worker's control API, as for status)");
  if (cmd == "approve") {
    if (!Check(args, {"--state-dir", "--call", "--deny"}, 0, &problem)) return Usage(problem);
    std::string dir = Need(args, "--state-dir", &problem);
    std::string call = Need(args, "--call", &problem);
    if (!problem.empty()) return Usage(problem);
    return cli::Approve(dir, call, args.flags.count("--deny") > 0);
  }
  if (cmd == "backup") {
    if (!Check(args, {"--state-dir", "--to"}, 0, &problem)) return Usage(problem);
    std::string dir = Need(args, "--state-dir", &problem);
    std::string to = Need(args, "--to", &problem);
    if (!problem.empty()) return Usage(problem);
    return cli::Backup(dir, to);
  }
  if (cmd == "restore" || cmd == "import") {
    if (!Check(args, {"--from", "--state-dir", "--fork", "--claim-as", "--skip-if-restored"}, 0, &problem)) return Usage(problem);
    std::string from = Need(args, "--from", &problem);
    std::string dir = Need(args, "--state-dir", &problem);
    if (!problem.empty()) return Usage(problem);
    return cli::Restore(from, dir, args.flags.count("--fork") > 0,
                        args.flags.count("--claim-as") ? args.flags["--claim-as"] : "",
                        args.flags.count("--skip-if-restored") > 0);
  }
  if (cmd == "resume") {
    if (!Check(args, {"--state-dir", "--take-back"}, 0, &problem)) return Usage(problem);
    std::string dir = Need(args, "--state-dir", &problem);
    if (problem.empty() && !args.flags.count("--take-back")) {
      problem = "resume of a state dir is --take-back (an export's fence); a paused worker resumes with --worker ADDR";
    }
    if (!problem.empty()) return Usage(problem);
    return cli::TakeBack(dir);
  }
  if (cmd == "export") {
    if (!Check(args, {"--state-dir", "--to"}, 0, &problem)) return Usage(problem);
    std::string dir = Need(args, "--state-dir", &problem);
    std::string to = Need(args, "--to", &problem);
    if (!problem.empty()) return Usage(problem);
    return cli::Export(dir, to);
  }
  if (cmd == "fork") {
    if (!Check(args, {"--state-dir", "--from-step", "--to"}, 0, &problem)) return Usage(problem);
    std::string dir = Need(args, "--state-dir", &problem);
    std::string step = Need(args, "--from-step", &problem);
    std::string to = Need(args, "--to", &problem);
    if (!problem.empty()) return Usage(problem);
    char* end = nullptr;
    long long n = std::strtoll(step.c_str(), &end, 10);
    if (*end != '\0' || n < 0) return Usage("--from-step must be a step number, got \"" + step + "\"");
    return cli::Fork(dir, n, to);
  }
  if (cmd == "compact") {
    if (!Check(args, {"--state-dir"}, 1, &problem)) return Usage(problem);
    std::string dir = Need(args, "--state-dir", &problem);
    if (!problem.empty()) return Usage(problem);
    return cli::Compact(args.positional[0], dir);
  }
  if (cmd == "validate") {
    if (!Check(args, {}, 1, &problem)) return Usage(problem);
    return cli::Validate(args.positional[0]);
  }
  return Usage("unknown command \"" + cmd + "\"");
}

int main(int argc, char** argv) {
  carapace::SetUpProcess();
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    // Every expected failure is a Status; reaching here is a bug. Say so plainly; the
    // store is safe, as every write is atomic.
    std::cerr << "carapace: internal error: " << e.what() << "\n";
    return 1;
  }
}
