#include "worker/runtime/handoff.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/file.h"
#include "common/json_text.h"
#include "common/log.h"
#include "common/process_setup.h"
#include "common/time.h"
#include "worker/runtime/backup.h"
#include "worker/runtime/event.h"
#include "worker/runtime/run_loader.h"
#include "worker/runtime/runner.h"

namespace carapace {

namespace fs = std::filesystem;

namespace {

bool EmptyOrMissing(const std::string& dir) {
  std::error_code ec;
  return !fs::exists(dir, ec) || fs::is_empty(dir, ec);
}

std::string Absolute(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  return p.empty() ? path : p.lexically_normal().string();
}

std::string DefaultClaimant(const std::string& state_dir) { return HostName() + ":" + Absolute(state_dir); }

// Claims, markers and events name paths, which need not be UTF-8: JSON text that cannot fail.
std::string JsonText(const nlohmann::json& j) { return ValidUtf8(j).dump(2) + "\n"; }

// A small JSON file we wrote (a claim, a marker), or null when it is missing or not ours.
nlohmann::json ReadJsonFile(const std::string& path) {
  auto text = ReadFile(path);
  nlohmann::json j = text.ok() ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
  return j.is_object() ? j : nlohmann::json();
}

std::string Str(const nlohmann::json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

// The claim beside an archive, made exclusively, so of two imports only one gets it; marked
// complete once the import is in place. The same claimant may claim again only while its
// claim is incomplete (a retry after a crash mid-import): importing a fenced agent again,
// after its first import ran, would start it a second time from the fence. Returns whether
// this call made the file (a failed import removes only a claim it made).
Result<bool> ClaimArchive(const std::string& claim_path, const std::string& archive, const std::string& claimant,
                          const std::string& state_dir, const std::string& run_id) {
  const std::string text = JsonText({{"claimedBy", claimant},
                                     {"stateDir", state_dir},
                                     {"runId", run_id},
                                     {"complete", false},
                                     {"at", FormatRfc3339Millis(WallNowMillis())}});
  const int fd = ::open(claim_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0 && errno == EEXIST) {
    const nlohmann::json had = ReadJsonFile(claim_path);
    const bool complete = had.is_object() && had.value("complete", true) == true;
    if (Str(had, "claimedBy") == claimant && !complete) return false;
    const std::string who = had.is_object()
                                ? Str(had, "claimedBy") + " into " + Str(had, "stateDir") + " at " + Str(had, "at")
                                : "(unreadable claim)";
    return FailedPrecondition("archive " + archive + " was imported already, by " + who + " (" + claim_path +
                              "): two copies of one agent must never both act, nor one start twice from its "
                              "fence. To start a new agent from it, with a new run id, import it with --fork");
  }
  if (fd < 0) {
    return FailedPrecondition("cannot record the import beside the archive (" + claim_path + ": " +
                              std::strerror(errno) +
                              "); a second import could not be refused. Put the archive where it can be written, "
                              "or import it with --fork");
  }
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!written) {
    ::unlink(claim_path.c_str());
    return IoError(claim_path + ": cannot write the import's claim");
  }
  return true;
}

}  // namespace

std::string HandedOffRefusal(const std::string& handoff_id) {
  return "this agent was handed off (export " + handoff_id +
         "): it goes on where its archive is imported, and this copy takes nothing more. If the archive was "
         "lost and never imported, `carapace resume --take-back` (with --worker ADDR or --state-dir DIR) lets "
         "this copy go on";
}

Result<std::string> RecordHandOff(RunStore* store, const std::string& current_handoff, const std::string& by) {
  if (!current_handoff.empty()) return current_handoff;
  // The event and the fence together: no external write comes between them, and none after.
  CARAPACE_ASSIGN_OR_RETURN(auto lock, store->WriteLockUnlessFull());
  Event e;
  e.type = event_type::kHandedOff;
  const std::string id = NewRunId();
  e.data = {{"handoffId", id}, {"by", by}};
  CARAPACE_RETURN_IF_ERROR(AppendExternalEvent(store, e).status());
  store->RefuseExternalWrites(HandedOffRefusal(id));
  return id;
}

Status RevokeHandOff(RunStore* store, const std::string& current_handoff, const std::string& by) {
  if (current_handoff.empty())
    return FailedPrecondition("the agent is not handed off: there is no export to take back");
  auto lock = store->WriteLock();
  store->RefuseExternalWrites("");
  Event e;
  e.type = event_type::kHandOffRevoked;
  e.data = {{"handoffId", current_handoff}, {"by", by}};
  Status appended = AppendExternalEvent(store, e).status();
  if (!appended.ok()) store->RefuseExternalWrites(HandedOffRefusal(current_handoff));
  return appended;
}

Result<ArchiveManifest> ExportRun(const RunStore& store, const std::string& from, const std::string& archive_path) {
  // Beside the store, on the same file system: the checkpoint hard-links the store's files.
  // One left by an export that was killed is removed first (exports do not overlap: the
  // worker makes one at a time, and the CLI holds the store's lock).
  std::error_code ec;
  for (fs::directory_iterator it(store.state_dir(), ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename().string().rfind(".export-", 0) == 0) fs::remove_all(it->path(), ec);
  }
  const std::string scratch = store.state_dir() + "/.export-" + NewRunId().substr(0, 12);
  auto done = [&](auto result) {
    fs::remove_all(scratch, ec);
    return result;
  };
  auto copy = store.CopyConsistent(scratch);
  if (!copy.ok()) return done(Result<ArchiveManifest>(copy.status()));
  ArchiveManifest m;
  {
    // The manifest from the copy itself: it says exactly what the archive holds.
    auto copied = RunStore::Open(scratch, RunStore::OpenMode::kMustExist);
    if (!copied.ok()) return done(Result<ArchiveManifest>(copied.status().WithContext("opening the copy")));
    auto identity = LoadRunIdentity(**copied);
    if (!identity.ok()) return done(Result<ArchiveManifest>(identity.status()));
    if (!*identity)
      return done(Result<ArchiveManifest>(FailedPrecondition("the state dir holds no run yet: nothing to export")));
    auto state = LoadRunState(**copied);
    if (!state.ok()) return done(Result<ArchiveManifest>(state.status().WithContext("loading the copy")));
    m.run_id = (*identity)->run_id;
    m.name = (*identity)->name;
    m.ns = (*identity)->ns;
    m.spec_hash = (*identity)->spec_hash;
    m.spec_json = (*identity)->spec_json;
    m.revision = state->revision;
    m.last_seq = copy->last_seq;
    m.handoff_id = state->handoff_id;
    m.from = from;
    m.created_ms = WallNowMillis();
  }
  auto written = WriteAgentArchive(scratch, m, archive_path);
  if (!written.ok()) return done(Result<ArchiveManifest>(written.status()));
  return done(Result<ArchiveManifest>(m));
}

Result<RestoreResult> RestoreAgent(const std::string& from, const std::string& state_dir,
                                   const RestoreOptions& options) {
  RestoreResult r;
  const std::string source = Absolute(from);
  const std::string dest = Absolute(state_dir);
  // A state dir that holds something: done already (an init container runs on every new pod,
  // and the copy it restored may be gone by then), or not ours to touch.
  if (!EmptyOrMissing(dest)) {
    const nlohmann::json had = ReadJsonFile(dest + "/" + kRestoredFromFile);
    if (options.skip_if_restored && Str(had, "source") == source) {
      r.kind = Str(had, "kind");
      r.run_id = Str(had, "runId");
      r.source_run_id = Str(had, "sourceRunId");
      r.already = true;
      return r;
    }
    return FailedPrecondition("restore target " + state_dir + " is not empty" +
                              (had.is_object() ? " (it was restored from " + Str(had, "source") + ")" : "") +
                              "; give a new or empty directory");
  }
  std::error_code ec;
  const fs::file_status st = fs::status(from, ec);
  if (!fs::exists(st)) return NotFound(from + ": no such backup directory or archive");
  if (fs::is_directory(st)) {
    CARAPACE_ASSIGN_OR_RETURN(BackupInfo b, ReadBackup(from));
    r.kind = "backup";
    r.source_run_id = b.run_id;
    r.name = b.name;
    r.ns = b.ns;
    r.last_seq = b.last_seq;
    r.created_ms = b.created_ms;
  } else if (IsAgentArchive(from)) {
    CARAPACE_ASSIGN_OR_RETURN(ArchiveManifest m, ReadArchiveManifest(from));
    r.kind = "archive";
    r.source_run_id = m.run_id;
    r.name = m.name;
    r.ns = m.ns;
    r.last_seq = m.last_seq;
    r.created_ms = m.created_ms;
    r.handoff_id = m.handoff_id;
  } else {
    return InvalidArgument(from +
                           " is neither a backup directory (carapace backup) nor an agent archive (carapace export)");
  }

  // Beside the archive itself, whatever link or path led to it.
  const std::string claim_path = fs::canonical(from, ec).string() + kImportClaimSuffix;
  const bool claims = r.kind == "archive" && !options.fork;
  bool claimed = false;
  if (claims) {
    const std::string claimant = options.claim_as.empty() ? DefaultClaimant(dest) : options.claim_as;
    CARAPACE_ASSIGN_OR_RETURN(claimed, ClaimArchive(claim_path, from, claimant, dest, r.source_run_id));
  }
  // Made beside the state dir and renamed into place: a restore cut short (kill -9) leaves
  // the state dir empty, and running it again starts afresh.
  const std::string work = dest + ".restoring";
  fs::remove_all(work, ec);
  fs::create_directories(fs::path(dest).parent_path(), ec);
  auto fail = [&](Status s) {
    fs::remove_all(work, ec);
    if (claimed) fs::remove(claim_path, ec);
    return s;
  };
  if (r.kind == "archive") {
    auto unpacked = UnpackAgentArchive(from, work);
    if (!unpacked.ok()) return fail(unpacked.status());
  } else {
    fs::create_directories(work, ec);
    for (const char* part : {"store", "workspace"}) {
      if (!ec)
        fs::copy(from + "/" + part, work + "/" + part, fs::copy_options::recursive | fs::copy_options::copy_symlinks,
                 ec);
    }
    if (ec) return fail(IoError("copying the backup: " + ec.message()));
    Status synced = SyncTree(work);
    if (!synced.ok()) return fail(synced);
  }
  r.run_id = r.source_run_id;
  {
    auto store = RunStore::Open(work, RunStore::OpenMode::kMustExist);
    if (!store.ok()) return fail(store.status().WithContext("opening the restored store"));
    auto identity = LoadRunIdentity(**store);
    if (!identity.ok()) return fail(identity.status());
    if (!*identity || (*identity)->run_id != r.source_run_id || (*store)->last_seq() != r.last_seq) {
      return fail(Corruption(from + " does not hold what its manifest says (run " + r.source_run_id + ", last event " +
                             std::to_string(r.last_seq) + ")"));
    }
    auto state = LoadRunState(**store);
    if (!state.ok()) return fail(state.status().WithContext("loading the restored run"));
    {
      StoreBatch home;
      home.meta = {{meta_key::kAwaitingHome, "1"}};
      auto committed = (*store)->Commit(home, true);
      if (!committed.ok()) return fail(committed.status());
    }
    // A backup restored as it is needs no event: it is the same agent, as it was. An import
    // lifts its copy's fence; a fork is a new agent.
    if (r.kind == "archive" || options.fork) {
      if (options.fork) r.run_id = NewRunId();
      Event e;
      e.type = event_type::kImported;
      e.step = state->step;
      e.ts_ms = WallNowMillis();
      e.data = ValidUtf8({{"from", source},
                          {"kind", r.kind},
                          {"handoffId", r.handoff_id},
                          {"fork", options.fork},
                          {"runId", r.run_id},
                          {"sourceRunId", r.source_run_id}});
      StoreBatch batch;
      batch.events.push_back(e.Encode());
      if (options.fork) batch.meta = {{meta_key::kRunId, r.run_id}};
      auto committed = (*store)->Commit(batch, true);
      if (!committed.ok()) return fail(committed.status());
      Status flushed = (*store)->Flush();
      if (!flushed.ok()) return fail(flushed);
    }
  }
  fs::remove(work + "/carapace.lock", ec);
  const nlohmann::json marker = {{"source", source},
                                 {"kind", r.kind},
                                 {"sourceRunId", r.source_run_id},
                                 {"runId", r.run_id},
                                 {"handoffId", r.handoff_id},
                                 {"fork", options.fork},
                                 {"at", FormatRfc3339Millis(WallNowMillis())}};
  Status marked = WriteFileAtomic(work + "/" + kRestoredFromFile, JsonText(marker));
  if (!marked.ok()) return fail(marked);
  if (fs::exists(dest, ec)) fs::remove(dest, ec);  // empty, checked above
  if (::rename(work.c_str(), dest.c_str()) != 0)
    return fail(IoError("moving " + work + " to " + dest + ": " + std::strerror(errno)));
  (void)SyncDirectory(fs::path(dest).parent_path().string());
  if (claims) {
    // In place: from now on the claim refuses even its own claimant.
    nlohmann::json claim = ReadJsonFile(claim_path);
    if (claim.is_object()) {
      claim["complete"] = true;
      Status done = WriteFileAtomic(claim_path, JsonText(claim));
      if (!done.ok())
        log::Warn("could not mark the archive's claim complete", {{"claim", claim_path}, {"error", done.ToString()}});
    }
  }
  return r;
}

}  // namespace carapace
