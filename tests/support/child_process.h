// Running the real binaries as child processes from tests: capture their output, wait
// with a time limit, or SIGKILL them at a chosen moment. Test support only.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace carapace::testing {

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
};

class ChildProcess {
 public:
  // Starts argv[0] with the given arguments, and `env` added to this process's
  // environment; stdout and stderr go to temp files.
  explicit ChildProcess(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {});
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // The file the child's stdout goes to (readable while it runs).
  const std::string& out_path() const { return out_path_; }
  const std::string& err_path() const { return err_path_; }
  void Kill(int signal);
  // True while the child has not exited (it is not reaped by this call).
  bool Running() const;
  // Waits up to timeout_ms (then SIGKILLs) and collects the result.
  CommandResult Wait(int timeout_ms = 60000);

 private:
  pid_t pid_ = -1;
  std::string out_path_;
  std::string err_path_;
  bool reaped_ = false;
};

// Runs a command to completion.
CommandResult RunCommand(const std::vector<std::string>& argv, int timeout_ms = 60000);

// Runs a command to completion, for benchmarks and soaks that measure a process: how it
// ended and its peak RSS (wait4's rusage). `quiet`: its output goes to /dev/null; otherwise
// it shares this process's.
struct MeasuredRun {
  int exit_code = -1;  // -1 when a signal ended it
  int signal = 0;
  long max_rss_kib = 0;
};
MeasuredRun RunMeasured(const std::vector<std::string>& argv, bool quiet = false);


// A fresh empty directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }
  // Writes `text` to Sub(name) and returns that path (a manifest for a test to run).
  std::string Write(const std::string& name, const std::string& text) const;

 private:
  std::string path_;
};

}  // namespace carapace::testing
