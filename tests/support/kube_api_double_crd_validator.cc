// Talks to `crd_validate.py --serve` over a pair of pipes, one JSON line each way.
#include "tests/support/kube_api_double_crd_validator.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

extern char** environ;

namespace carapace::testing::kube_double {

using nlohmann::json;

CrdValidator::CrdValidator(std::string script) : script_(std::move(script)) {}

CrdValidator::~CrdValidator() { StopProcess(); }

Status CrdValidator::StartProcess() {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) return Internal("crd validator: pipe failed");
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(in[0]);
    close(in[1]);
    return Internal("crd validator: pipe failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  std::string python = "/usr/bin/python3", flag = "--serve";
  char* argv[] = {python.data(), script_.data(), flag.data(), nullptr};
  int rc = posix_spawn(&pid_, python.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(in[0]);
  close(out[1]);
  if (rc != 0) {
    close(in[1]);
    close(out[0]);
    pid_ = -1;
    return Internal("crd validator: cannot start /usr/bin/python3 " + script_);
  }
  to_child_ = in[1];
  from_child_ = fdopen(out[0], "r");
  sent_.clear();
  return Status::Ok();
}

void CrdValidator::StopProcess() {
  if (pid_ <= 0) return;
  close(to_child_);  // the serve loop ends at end of input
  if (from_child_ != nullptr) fclose(from_child_);
  to_child_ = -1;
  from_child_ = nullptr;
  int status = 0;
  for (int i = 0; i < 100 && waitpid(pid_, &status, WNOHANG) == 0; ++i) usleep(10000);
  if (waitpid(pid_, &status, WNOHANG) == 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
  }
  pid_ = -1;
}

Result<json> CrdValidator::Ask(const json& request) {
  if (pid_ <= 0) CARAPACE_RETURN_IF_ERROR(StartProcess());
  std::string line = request.dump() + "\n";
  // A child that died must not take this process down with SIGPIPE: blocked for the write,
  // and a pending one taken before unblocking.
  sigset_t pipe_signal, before;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_signal, &before);
  bool written = true;
  for (size_t at = 0; at < line.size() && written;) {
    ssize_t n = write(to_child_, line.data() + at, line.size() - at);
    written = n > 0;
    if (written) at += static_cast<size_t>(n);
  }
  if (!written) {
    timespec none{0, 0};
    sigtimedwait(&pipe_signal, nullptr, &none);
  }
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
  if (!written) {
    StopProcess();
    return Internal("crd validator: the process is gone");
  }
  std::string answer;
  char buf[65536];
  while (answer.empty() || answer.back() != '\n') {
    if (fgets(buf, sizeof buf, from_child_) == nullptr) {
      StopProcess();
      return Internal("crd validator: no answer");
    }
    answer += buf;
  }
  json parsed = json::parse(answer, nullptr, false);
  if (parsed.is_discarded()) return Internal("crd validator: unreadable answer");
  return parsed;
}

Result<CrdVerdict> CrdValidator::Validate(const std::string& schema_id, const json& schema, const json& object,
                                          const json& old) {
  json request = {{"schema_id", schema_id}, {"object", object}};
  if (!old.is_null()) request["old"] = old;
  for (int attempt = 0; attempt < 3; ++attempt) {
    const bool send_schema = sent_.count(schema_id) == 0;
    if (send_schema) request["schema"] = schema;
    auto answer = Ask(request);
    if (!answer.ok() && attempt == 0) continue;  // the process died: once more, from a fresh one
    CARAPACE_RETURN_IF_ERROR(answer.status());
    if (send_schema) sent_.insert(schema_id);
    request.erase("schema");
    if (answer->value("unknown_schema", false)) {
      sent_.erase(schema_id);
      continue;
    }
    if (answer->contains("fatal")) return Internal((*answer)["fatal"].get<std::string>());
    CrdVerdict verdict;
    verdict.errors = answer->value("errors", std::vector<std::string>{});
    verdict.unknown = answer->value("unknown", std::vector<std::string>{});
    verdict.object = answer->value("object", json::object());
    return verdict;
  }
  return Internal("crd validator: no verdict");
}

}  // namespace carapace::testing::kube_double
