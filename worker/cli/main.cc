// `carapace`: run an AgentRun locally, inspect a state dir, settle approvals, fork a run.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "worker/runtime/process_setup.h"
#include "worker/cli/commands.h"

namespace {

constexpr const char* kUsage = R"(usage:
  carapace run FILE --state-dir DIR [--json]     run (or resume) an AgentRun until it ends or waits
  carapace inspect --state-dir DIR [--json]      phase, budgets, every event, checkpoints
  carapace approve --state-dir DIR --call ID [--deny]
                                                 settle a call that waits for a person
  carapace fork --state-dir DIR --from-step N --to DIR2
                                                 start a new run from the checkpoint of step N
  carapace validate FILE                         check an AgentRun manifest

exit codes: 0 succeeded, 1 error (I/O, damaged store), 2 bad input, 3 budget exhausted,
            4 failed, 5 waiting for approval
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
  return flag == "--state-dir" || flag == "--call" || flag == "--from-step" || flag == "--to";
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
    if (!Check(args, {"--state-dir", "--json"}, 1, &problem)) return Usage(problem);
    std::string dir = Need(args, "--state-dir", &problem);
    if (!problem.empty()) return Usage(problem);
    return cli::Run(args.positional[0], dir, args.flags.count("--json") > 0);
  }
  if (cmd == "inspect") {
    if (!Check(args, {"--state-dir", "--json"}, 0, &problem)) return Usage(problem);
    std::string dir = Need(args, "--state-dir", &problem);
    if (!problem.empty()) return Usage(problem);
    return cli::Inspect(dir, args.flags.count("--json") > 0);
  }
  if (cmd == "approve") {
    if (!Check(args, {"--state-dir", "--call", "--deny"}, 0, &problem)) return Usage(problem);
    std::string dir = Need(args, "--state-dir", &problem);
    std::string call = Need(args, "--call", &problem);
    if (!problem.empty()) return Usage(problem);
    return cli::Approve(dir, call, args.flags.count("--deny") > 0);
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
