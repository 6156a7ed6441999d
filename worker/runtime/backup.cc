#include "worker/runtime/backup.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/file.h"
#include "common/time.h"
#include "worker/runtime/run_loader.h"

namespace carapace {

namespace fs = std::filesystem;

namespace {

constexpr int kManifestFormat = 1;

nlohmann::json ToJson(const BackupInfo& b) {
  return {{"format", kManifestFormat}, {"runId", b.run_id},     {"name", b.name},
          {"namespace", b.ns},        {"specHash", b.spec_hash}, {"lastSeq", b.last_seq},
          {"createdAt", FormatRfc3339Millis(b.created_ms)},      {"createdMs", b.created_ms},
          {"bytes", b.bytes},         {"durationMs", b.duration_ms}};
}

}  // namespace

Result<BackupInfo> BackupRun(const RunStore& store, const std::string& dest_dir) {
  const int64_t started = MonoNowMillis();
  CARAPACE_ASSIGN_OR_RETURN(auto identity, LoadRunIdentity(store));
  if (!identity) return FailedPrecondition("state dir " + store.state_dir() + " holds no run yet: nothing to back up");
  CARAPACE_ASSIGN_OR_RETURN(StoreCopy copy, store.CopyConsistent(dest_dir));
  BackupInfo b;
  b.dir = dest_dir;
  b.run_id = identity->run_id;
  b.name = identity->name;
  b.ns = identity->ns;
  b.spec_hash = identity->spec_hash;
  b.last_seq = copy.last_seq;
  b.created_ms = WallNowMillis();
  b.bytes = copy.store_bytes + copy.workspace_bytes;
  b.duration_ms = MonoNowMillis() - started;
  // The copy durable first, then the manifest, last and atomically (written aside, synced,
  // renamed): its presence says the copy is whole.
  CARAPACE_RETURN_IF_ERROR(SyncTree(dest_dir));
  CARAPACE_RETURN_IF_ERROR(WriteFileAtomic(dest_dir + "/" + kBackupManifest, ToJson(b).dump(2) + "\n"));
  return b;
}

Result<BackupInfo> ReadBackup(const std::string& dir) {
  const std::string path = dir + "/" + kBackupManifest;
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    return NotFound(dir + " is not a Carapace backup (no " + std::string(kBackupManifest) +
                    "): not one, or one cut short before it was whole");
  }
  CARAPACE_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object() || !j["format"].is_number_integer() || !j["lastSeq"].is_number_unsigned() ||
      !j["runId"].is_string()) {
    return Corruption(path + " is not a backup manifest this version reads");
  }
  if (j["format"].get<int>() != kManifestFormat) {
    return Corruption(path + " has format " + std::to_string(j["format"].get<int>()) + "; this version reads format " +
                      std::to_string(kManifestFormat));
  }
  BackupInfo b;
  b.dir = dir;
  b.run_id = j["runId"].get<std::string>();
  b.name = j.value("name", "");
  b.ns = j.value("namespace", "");
  b.spec_hash = j.value("specHash", "");
  b.last_seq = j["lastSeq"].get<uint64_t>();
  b.created_ms = j.value("createdMs", int64_t{0});
  b.bytes = j.value("bytes", uint64_t{0});
  b.duration_ms = j.value("durationMs", int64_t{0});
  return b;
}

Status ValidateBackupName(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 63 && std::isalnum(static_cast<unsigned char>(name[0])) != 0;
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-');
  }
  if (!ok) {
    return InvalidArgument("backup name \"" + name + "\": 1 to 63 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit");
  }
  return Status::Ok();
}

std::string BackupDirFor(const std::string& state_dir, const std::string& name) {
  return (fs::path(state_dir).parent_path() / "backups" / name).string();
}

}  // namespace carapace
