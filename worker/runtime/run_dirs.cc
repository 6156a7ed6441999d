// Setting a run aside and adopting a legacy one: each a single rename under the state dir's lock.
#include "worker/runtime/run_dirs.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/log.h"
#include "worker/runtime/run_loader.h"
#include "worker/store/run_store.h"

namespace carapace {

namespace fs = std::filesystem;

namespace {

// Renames `from` to `to` while holding `from`'s lock, so no process writes it mid-move.
Status MoveStateDir(const std::string& from, const std::string& to) {
  CARAPACE_ASSIGN_OR_RETURN(int lock_fd, LockStateDir(from));
  std::error_code ec;
  if (fs::exists(to, ec) && fs::is_empty(to, ec)) fs::remove(to, ec);  // an empty mount point or mkdir
  const int rc = ::rename(from.c_str(), to.c_str());
  const int err = errno;
  ::close(lock_fd);
  if (rc != 0) return IoError("cannot move " + from + " to " + to + ": " + std::strerror(err));
  return Status::Ok();
}

// The run's identity and the time of its last event; empty when `dir` holds no run.
struct StoredRun {
  std::string run_id;
  int64_t last_event_ms = 0;
};
Result<std::optional<StoredRun>> ReadStoredRun(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir + "/store", ec)) return std::optional<StoredRun>();
  CARAPACE_ASSIGN_OR_RETURN(auto store, RunStore::Open(dir, RunStore::OpenMode::kMustExist));
  CARAPACE_ASSIGN_OR_RETURN(auto identity, LoadRunIdentity(*store));
  if (!identity) return std::optional<StoredRun>();
  StoredRun run{identity->run_id, 0};
  Status st;
  CARAPACE_RETURN_IF_ERROR(store->ForEachEvent(store->last_seq(), [&](uint64_t seq, std::string_view value) {
    auto e = Event::Decode(seq, value);
    if (e.ok()) run.last_event_ms = e->ts_ms;
    else st = e.status();
    return false;
  }));
  CARAPACE_RETURN_IF_ERROR(st);
  return std::optional<StoredRun>(run);
}

}  // namespace

Result<std::string> SetRunAside(const std::string& state_dir) {
  CARAPACE_ASSIGN_OR_RETURN(auto run, ReadStoredRun(state_dir));
  if (!run) return std::string();
  std::string dir = state_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  const std::string aside = dir + ".previous-" + run->run_id.substr(0, 12);
  std::error_code ec;
  if (fs::exists(aside, ec)) return AlreadyExists(aside + " already exists; move it away to restart " + state_dir);
  CARAPACE_RETURN_IF_ERROR(MoveStateDir(state_dir, aside));
  return aside;
}

Result<std::string> AdoptNewestRun(const std::string& legacy_dir, const std::string& state_dir) {
  std::error_code ec;
  if (fs::exists(state_dir + "/store", ec) || !fs::is_directory(legacy_dir, ec)) return std::string();
  std::string newest;
  int64_t newest_ms = -1;
  for (const auto& entry : fs::directory_iterator(legacy_dir, ec)) {
    if (!entry.is_directory()) continue;
    auto run = ReadStoredRun(entry.path().string());
    if (!run.ok()) {
      log::Warn("not adopting a legacy run that cannot be read", {{"dir", entry.path().string()},
                                                                  {"error", run.status().ToString()}});
      continue;
    }
    if (*run && (*run)->last_event_ms > newest_ms) {
      newest_ms = (*run)->last_event_ms;
      newest = entry.path().string();
    }
  }
  if (ec) return IoError("cannot list " + legacy_dir + ": " + ec.message());
  if (newest.empty()) return std::string();
  CARAPACE_RETURN_IF_ERROR(MoveStateDir(newest, state_dir));
  log::Info("adopted the newest run of the spec-hash layout", {{"from", newest}, {"to", state_dir}});
  return newest;
}

}  // namespace carapace
