// RocksDB-backed RunStore. Keys of events, checkpoints and transcript are 8-byte
// big-endian integers so RocksDB's byte order is numeric order.
#include "worker/store/run_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/cache.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>

#include "common/file.h"
#include "common/log.h"

namespace carapace {
namespace fs = std::filesystem;

namespace {

std::string EncodeKey(uint64_t v) {
  std::string k(8, '\0');
  for (int i = 7; i >= 0; --i) {
    k[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return k;
}

uint64_t DecodeKey(const rocksdb::Slice& s) {
  uint64_t v = 0;
  for (size_t i = 0; i < s.size() && i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(s[i]);
  return v;
}

Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::Ok();
  if (s.IsCorruption()) return Corruption(what + ": " + s.ToString());
  if (s.IsNotFound()) return NotFound(what + ": " + s.ToString());
  return IoError(what + ": " + s.ToString());
}

const char* kColumnFamilies[] = {"events", "checkpoints", "transcript", "artifacts", "meta", "memory"};
// Column families a store must already have to be ours; later ones are added on open.
const char* kOriginalColumnFamilies[] = {"events", "checkpoints", "transcript", "artifacts", "meta"};

rocksdb::Options StoreOptions() {
  rocksdb::Options options;
  options.create_if_missing = false;
  options.paranoid_checks = true;
  // Small memtables: a run writes little, each column family's memtable arena costs
  // write_buffer_size / 8 of memory up front, and less WAL is left to replay after a crash.
  options.write_buffer_size = 1 << 20;
  options.max_write_buffer_number = 2;
  // A WAL file is kept until every column family with data in it is flushed, and the small
  // ones (meta, memory) rarely fill a memtable: without a cap a long-lived run keeps every
  // WAL file it ever wrote, and its open after a crash replays them all. Past 4 MiB of WAL,
  // the column families holding the oldest file are flushed.
  options.max_total_wal_size = 4 << 20;
  options.keep_log_file_num = 2;
  options.max_log_file_size = 1 << 20;
  options.max_open_files = 64;
  // The default (16) starts 16 threads per column family at every open: ~100 threads
  // and ~30 ms for a store this small.
  options.max_file_opening_threads = 1;
  options.max_background_jobs = 1;
  options.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  // After a crash, replay the WAL into memory instead of writing L0 files before the run
  // can resume; the memtables are flushed later as usual.
  options.avoid_flush_during_recovery = true;
  return options;
}

std::vector<rocksdb::ColumnFamilyDescriptor> ColumnFamilies(const rocksdb::Options& options) {
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(1 << 20);
  rocksdb::ColumnFamilyOptions cf_options(options);
  cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  cfs.emplace_back(rocksdb::kDefaultColumnFamilyName, cf_options);
  for (const char* name : kColumnFamilies) cfs.emplace_back(name, cf_options);
  return cfs;
}

// Builds a complete store (column families and format marker) under store.creating/ and
// renames it to store/ only when it is whole, so a crash while creating a state dir never
// leaves a half-made store that would later look damaged. A leftover store.creating/ is
// ours and held no data: it is removed.
Status CreateStore(const std::string& state_dir, rocksdb::Options options,
                   const std::vector<rocksdb::ColumnFamilyDescriptor>& cfs) {
  const std::string tmp = state_dir + "/store.creating";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  CARAPACE_RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(options, tmp, cfs, &handles, &raw), "creating the store"));
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::ColumnFamilyHandle* meta = nullptr;
  for (auto* h : handles) {
    if (h->GetName() == "meta") meta = h;
  }
  Status st = FromRocks(db->Put(wo, meta, kFormatKey, kFormatValue), "writing the format marker");
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  db->Close();
  db.reset();
  CARAPACE_RETURN_IF_ERROR(st);
  if (::rename(tmp.c_str(), (state_dir + "/store").c_str()) != 0) {
    return IoError("cannot move the new store into place: " + std::string(std::strerror(errno)));
  }
  return SyncDirectory(state_dir);
}

}  // namespace

Result<int> LockStateDir(const std::string& dir) {
  std::string path = dir + "/carapace.lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return IoError("cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char buf[32] = {0};
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "unknown";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    if (err == EWOULDBLOCK) {
      return Busy("state dir " + dir + " is in use by another carapace process (pid " + holder +
                  "); only one process may write a state dir at a time");
    }
    return IoError("cannot lock " + path + ": " + std::strerror(err));
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // The lock is held; the pid is only informational.
  }
  return fd;
}

std::optional<uint64_t> VolumeFreeBytes(const std::string& dir) {
  struct statvfs vfs {};
  if (::statvfs(dir.c_str(), &vfs) != 0) return std::nullopt;
  return static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
}

namespace {

// Room kept free beyond what a write needs: the MANIFEST, OPTIONS and LOG files RocksDB
// writes besides the data.
constexpr uint64_t kSpaceReserve = 1 << 20;

// A write of `bytes` goes to the WAL now and to a table file when the memtable is flushed:
// about twice its size, and the reserve.
uint64_t RoomNeeded(uint64_t bytes) { return 2 * bytes + kSpaceReserve; }

// RocksDB is never let to meet ENOSPC itself (a failed WAL append left stores that aborted
// on every later open, with RocksDB's assertions on), so the room is checked first and a
// full volume is refused, with nothing written. The check is as good as statvfs (or the
// store's FreeSpaceProbe); when it cannot tell, the write goes ahead.
Status CheckSpace(const std::optional<uint64_t>& free_bytes, uint64_t bytes, const std::string& dir,
                  const std::string& what) {
  const uint64_t need = RoomNeeded(bytes);
  if (!free_bytes || *free_bytes >= need) return Status::Ok();
  return VolumeFull("the volume of " + dir + " is full: " + std::to_string(*free_bytes) + " bytes free, " + what +
                    " needs about " + std::to_string(need) +
                    "; nothing was written. Free space or grow the volume, then try again");
}

// The write-ahead logs a store's open replays (and may flush to table files).
uint64_t WalBytes(const std::string& db_dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(db_dir, ec)) {
    if (entry.path().extension() == ".log" && entry.is_regular_file(ec)) total += entry.file_size(ec);
  }
  return total;
}

}  // namespace

Result<std::unique_ptr<RunStore>> RunStore::Open(const std::string& state_dir, OpenMode mode) {
  std::unique_ptr<RunStore> store(new RunStore());
  store->dir_ = state_dir;
  std::error_code ec;
  const std::string db_dir = state_dir + "/store";

  if (!fs::exists(state_dir, ec)) {
    if (mode == OpenMode::kMustExist) return NotFound("state dir " + state_dir + " does not exist");
    if (!fs::create_directories(state_dir, ec)) {
      return IoError("cannot create state dir " + state_dir + ": " + ec.message());
    }
  } else if (!fs::is_directory(state_dir, ec)) {
    return FailedPrecondition(state_dir + " is not a directory");
  }

  bool has_store = fs::exists(db_dir, ec);
  if (!has_store) {
    // Refuse a folder with someone else's files in it: we never take over or reset it.
    for (const auto& entry : fs::directory_iterator(state_dir, ec)) {
      std::string name = entry.path().filename().string();
      if (name != "carapace.lock" && name != "workspace" && name != "store.creating") {
        return FailedPrecondition("state dir " + state_dir + " is not empty and is not a Carapace state dir (found \"" +
                                  name + "\"); use an empty or new directory");
      }
    }
    if (mode == OpenMode::kMustExist) return NotFound("state dir " + state_dir + " holds no run");
  }

  CARAPACE_ASSIGN_OR_RETURN(store->lock_fd_, LockStateDir(state_dir));
  // Another process may have created the store between our look and our lock.
  has_store = fs::exists(db_dir, ec);

  rocksdb::Options options = StoreOptions();
  auto cfs = ColumnFamilies(options);
  CARAPACE_RETURN_IF_ERROR(
      CheckSpace(VolumeFreeBytes(state_dir), has_store ? WalBytes(db_dir) : 0, state_dir, "opening the store"));
  if (!has_store) {
    CARAPACE_RETURN_IF_ERROR(CreateStore(state_dir, options, cfs));
    store->created_ = true;
  }
  std::vector<std::string> existing;
  rocksdb::Status ls = rocksdb::DB::ListColumnFamilies(options, db_dir, &existing);
  if (!ls.ok()) {
    return Corruption("state dir " + state_dir + " has a store/ that is not a readable Carapace store (" +
                      ls.ToString() + "); it was left untouched");
  }
  for (const char* name : kOriginalColumnFamilies) {
    if (std::find(existing.begin(), existing.end(), name) == existing.end()) {
      return Corruption("state dir " + state_dir + ": store has no \"" + name +
                        "\" column family; it is not a Carapace store and was left untouched");
    }
  }
  // A store made by an earlier version gets the column families added since.
  options.create_missing_column_families = true;

  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, db_dir, cfs, &store->handles_, &raw);
  if (!s.ok()) {
    return Corruption("cannot open the store in " + state_dir + " (" + s.ToString() +
                      "); it was left untouched");
  }
  store->db_.reset(raw);
  store->events_ = store->handles_[1];
  store->checkpoints_ = store->handles_[2];
  store->transcript_ = store->handles_[3];
  store->artifacts_ = store->handles_[4];
  store->meta_ = store->handles_[5];
  store->memory_ = store->handles_[6];

  CARAPACE_ASSIGN_OR_RETURN(auto format, store->GetMeta(kFormatKey));
  if (!format) {
    return Corruption("state dir " + state_dir + " has no Carapace format marker; it was left untouched");
  }
  if (*format != kFormatValue) {
    return Corruption("state dir " + state_dir + " has format \"" + *format + "\", this build reads \"" +
                      kFormatValue + "\"");
  }
  fs::create_directories(store->workspace_dir(), ec);

  std::unique_ptr<rocksdb::Iterator> it(store->db_->NewIterator(rocksdb::ReadOptions(), store->events_));
  it->SeekToLast();
  if (it->Valid()) store->last_seq_ = DecodeKey(it->key());
  CARAPACE_RETURN_IF_ERROR(FromRocks(it->status(), "reading the event log"));
  return store;
}

RunStore::~RunStore() {
  if (db_) {
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
    db_->Close();
    db_.reset();
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

Result<uint64_t> RunStore::Commit(const StoreBatch& batch, bool sync) {
  auto lock = WriteLock();
  rocksdb::WriteBatch wb;
  if (batch.first_seq && *batch.first_seq <= last_seq_) {
    return InvalidArgument("events numbered from " + std::to_string(*batch.first_seq) + " would overwrite event " +
                           std::to_string(last_seq_.load()));
  }
  uint64_t first = batch.first_seq.value_or(last_seq_ + 1);
  uint64_t seq = first - 1;
  for (const auto& e : batch.events) wb.Put(events_, EncodeKey(++seq), e);
  if (batch.checkpoint) {
    wb.Put(checkpoints_, EncodeKey(static_cast<uint64_t>(batch.checkpoint->first)), batch.checkpoint->second);
  }
  for (const auto& [idx, msg] : batch.transcript) wb.Put(transcript_, EncodeKey(static_cast<uint64_t>(idx)), msg);
  for (const auto& [k, v] : batch.artifacts) wb.Put(artifacts_, k, v);
  for (const auto& [k, v] : batch.meta) wb.Put(meta_, k, v);
  if (const auto& t = batch.trim) {
    wb.DeleteRange(events_, EncodeKey(0), EncodeKey(t->events_before));
    wb.DeleteRange(checkpoints_, EncodeKey(0), EncodeKey(static_cast<uint64_t>(t->checkpoints_before)));
    wb.DeleteRange(transcript_, EncodeKey(0), EncodeKey(static_cast<uint64_t>(t->transcript_before)));
    for (const auto& k : t->artifacts) wb.Delete(artifacts_, k);
  }
  CARAPACE_RETURN_IF_ERROR(WriteWithRoom(&wb, sync, "writing to the store"));
  last_seq_ = std::max<uint64_t>(last_seq_, seq);
  if (const auto& t = batch.trim) {
    lock.unlock();
    // Give the room back now rather than at some later compaction: the ranges are dead.
    const std::string zero = EncodeKey(0);
    for (auto [cf, end] : {std::pair{events_, EncodeKey(t->events_before)},
                           std::pair{checkpoints_, EncodeKey(static_cast<uint64_t>(t->checkpoints_before))},
                           std::pair{transcript_, EncodeKey(static_cast<uint64_t>(t->transcript_before))}}) {
      rocksdb::Slice begin_slice(zero), end_slice(end);
      rocksdb::Status compacted = db_->CompactRange(rocksdb::CompactRangeOptions(), cf, &begin_slice, &end_slice);
      if (!compacted.ok()) log::Warn("compacting removed history", {{"dir", dir_}, {"error", compacted.ToString()}});
    }
  }
  return first;
}

Result<std::optional<std::string>> RunStore::GetEvent(uint64_t seq) const { return Get(events_, EncodeKey(seq)); }

Result<uint64_t> RunStore::FirstSeq() const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), events_));
  it->SeekToFirst();
  CARAPACE_RETURN_IF_ERROR(FromRocks(it->status(), "reading the event log"));
  return it->Valid() ? DecodeKey(it->key()) : uint64_t{0};
}

Result<std::optional<int64_t>> RunStore::FirstCheckpointStep() const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), checkpoints_));
  it->SeekToFirst();
  CARAPACE_RETURN_IF_ERROR(FromRocks(it->status(), "reading checkpoints"));
  if (!it->Valid()) return std::optional<int64_t>();
  return std::optional<int64_t>(static_cast<int64_t>(DecodeKey(it->key())));
}

std::optional<uint64_t> RunStore::FreeBytes() const {
  return free_space_probe_ ? free_space_probe_() : VolumeFreeBytes(dir_);
}

Status RunStore::CheckRoomFor(uint64_t bytes, const std::string& what) {
  Status room = CheckSpace(FreeBytes(), bytes, dir_, what);
  std::lock_guard<std::mutex> lock(full_mu_);
  full_need_ = room.ok() ? 0 : RoomNeeded(bytes);
  if (!room.ok()) full_reason_ = room.message();
  return room;
}

Status RunStore::WriteWithRoom(rocksdb::WriteBatch* wb, bool sync, const std::string& what) {
  CARAPACE_RETURN_IF_ERROR(CheckRoomFor(wb->GetDataSize(), what));
  if (resume_rocks_) {
    CARAPACE_RETURN_IF_ERROR(FromRocks(db_->Resume(), "resuming the store in " + dir_ + " after the volume was full"));
    resume_rocks_ = false;
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  rocksdb::Status s = db_->Write(wo, wb);
  if (s.IsNoSpace()) {
    // Filled by someone else between the check and the write. RocksDB keeps the write out
    // of the database and refuses writes until DB::Resume().
    resume_rocks_ = true;
    std::lock_guard<std::mutex> lock(full_mu_);
    full_need_ = RoomNeeded(wb->GetDataSize());
    full_reason_ = "the volume of " + dir_ + " is full: " + what + " met \"" + s.ToString() +
                   "\"; nothing was written. Free space or grow the volume, then try again";
    return carapace::VolumeFull(full_reason_);
  }
  return FromRocks(s, what + " in " + dir_);
}

std::optional<std::string> RunStore::VolumeFull() const {
  uint64_t need;
  {
    std::lock_guard<std::mutex> lock(full_mu_);
    if (full_need_ == 0) return std::nullopt;
    need = full_need_;
  }
  const std::optional<uint64_t> free_bytes = FreeBytes();
  std::lock_guard<std::mutex> lock(full_mu_);
  if (full_need_ == 0 || !free_bytes || *free_bytes >= need) return std::nullopt;
  return full_reason_;
}

Result<RunStore::WriteGuard> RunStore::WriteLockUnlessFull() const {
  WriteGuard guard(write_mu_, std::defer_lock);
  // In slices: a runner that took the lock just before the volume filled is seen waiting.
  while (!guard.try_lock_for(std::chrono::milliseconds(100))) {
    if (auto full = VolumeFull()) return carapace::VolumeFull(*full);
  }
  {
    std::lock_guard<std::mutex> lock(full_mu_);
    if (!refuse_external_.empty()) return FailedPrecondition(refuse_external_);
  }
  return guard;
}

void RunStore::RefuseExternalWrites(const std::string& why) {
  std::lock_guard<std::mutex> lock(full_mu_);
  refuse_external_ = why;
}

Status RunStore::ForEachEvent(uint64_t from, const std::function<bool(uint64_t, std::string_view)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), events_));
  for (it->Seek(EncodeKey(from)); it->Valid(); it->Next()) {
    if (!fn(DecodeKey(it->key()), std::string_view(it->value().data(), it->value().size()))) break;
  }
  return FromRocks(it->status(), "reading the event log");
}

Result<std::optional<std::pair<int64_t, std::string>>> RunStore::LatestCheckpoint(
    std::optional<int64_t> max_step) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), checkpoints_));
  if (max_step) it->SeekForPrev(EncodeKey(static_cast<uint64_t>(*max_step)));
  else it->SeekToLast();
  CARAPACE_RETURN_IF_ERROR(FromRocks(it->status(), "reading checkpoints"));
  if (!it->Valid()) return std::optional<std::pair<int64_t, std::string>>();
  return std::optional<std::pair<int64_t, std::string>>(
      std::make_pair(static_cast<int64_t>(DecodeKey(it->key())), it->value().ToString()));
}

Status RunStore::ForEachCheckpoint(const std::function<bool(int64_t, std::string_view)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), checkpoints_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (!fn(static_cast<int64_t>(DecodeKey(it->key())), std::string_view(it->value().data(), it->value().size()))) break;
  }
  return FromRocks(it->status(), "reading checkpoints");
}

Result<std::vector<std::string>> RunStore::ReadTranscript(int64_t from, int64_t to) const {
  std::vector<std::string> out;
  if (to <= from) return out;
  out.reserve(static_cast<size_t>(to - from));
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), transcript_));
  auto next = [&] { return from + static_cast<int64_t>(out.size()); };
  for (it->Seek(EncodeKey(static_cast<uint64_t>(from))); it->Valid() && next() < to; it->Next()) {
    if (static_cast<int64_t>(DecodeKey(it->key())) != next()) {
      return Corruption("transcript in " + dir_ + " lacks message " + std::to_string(next()));
    }
    out.push_back(it->value().ToString());
  }
  CARAPACE_RETURN_IF_ERROR(FromRocks(it->status(), "reading the transcript"));
  if (next() != to) {
    return Corruption("transcript in " + dir_ + " ends at message " + std::to_string(next()) +
                      ", the checkpoint expects messages up to " + std::to_string(to));
  }
  return out;
}

Status RunStore::ForEachTranscript(int64_t from, const std::function<bool(int64_t, std::string_view)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), transcript_));
  for (it->Seek(EncodeKey(static_cast<uint64_t>(from))); it->Valid(); it->Next()) {
    if (!fn(static_cast<int64_t>(DecodeKey(it->key())), std::string_view(it->value().data(), it->value().size()))) break;
  }
  return FromRocks(it->status(), "reading the transcript");
}

Result<std::optional<std::string>> RunStore::Get(rocksdb::ColumnFamilyHandle* cf, const std::string& key) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf, key, &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  CARAPACE_RETURN_IF_ERROR(FromRocks(s, "reading " + key));
  return std::optional<std::string>(std::move(value));
}

Result<std::optional<std::string>> RunStore::GetMeta(const std::string& key) const { return Get(meta_, key); }
Result<std::optional<std::string>> RunStore::GetArtifact(const std::string& key) const { return Get(artifacts_, key); }

Status RunStore::PutMemory(const std::vector<std::pair<std::string, std::string>>& entries, bool sync) {
  rocksdb::WriteBatch wb;
  for (const auto& [k, v] : entries) wb.Put(memory_, k, v);
  auto lock = WriteLock();
  return WriteWithRoom(&wb, sync, "writing memory");
}

Status RunStore::DeleteMemory(const std::vector<std::string>& keys) {
  rocksdb::WriteBatch wb;
  for (const auto& k : keys) wb.Delete(memory_, k);
  auto lock = WriteLock();
  return WriteWithRoom(&wb, true, "deleting memory");
}

Status RunStore::ForEachMemory(const std::function<bool(std::string_view, std::string_view)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), memory_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (!fn(std::string_view(it->key().data(), it->key().size()), std::string_view(it->value().data(), it->value().size()))) break;
  }
  return FromRocks(it->status(), "reading memory");
}

Status RunStore::Flush() {
  rocksdb::FlushOptions fo;
  fo.wait = true;
  return FromRocks(db_->Flush(fo, handles_), "flushing the store");
}

Result<StoreCopy> RunStore::CopyConsistent(const std::string& dest_dir) const {
  std::error_code ec;
  if (fs::exists(dest_dir, ec) && !fs::is_empty(dest_dir, ec)) {
    return FailedPrecondition("backup target " + dest_dir + " is not empty; give a new or empty directory");
  }
  fs::create_directories(dest_dir, ec);
  if (ec) return IoError("creating " + dest_dir + ": " + ec.message());
  auto cleanup = [&](Status s) {
    fs::remove_all(dest_dir + "/store", ec);
    fs::remove_all(dest_dir + "/workspace", ec);
    return s;
  };
  StoreCopy copy;
  {
    // No commit between reading last_seq and the checkpoint: the copy holds exactly the
    // events up to it. The memtables are not flushed (that would hold the lock, and the
    // agent's steps, for the flush): the live WAL is copied instead, and replayed when the
    // copy is opened, as after kill -9.
    auto lock = WriteLock();
    copy.last_seq = last_seq();
    rocksdb::Checkpoint* raw = nullptr;
    Status made = FromRocks(rocksdb::Checkpoint::Create(db_.get(), &raw), "starting a checkpoint");
    std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
    if (made.ok()) {
      made = FromRocks(checkpoint->CreateCheckpoint(dest_dir + "/store", std::numeric_limits<uint64_t>::max()),
                       "checkpointing the store");
    }
    if (!made.ok()) return cleanup(made);
  }
  fs::copy(workspace_dir(), dest_dir + "/workspace",
           fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
  if (ec) return cleanup(ec == std::errc::no_space_on_device ? ::carapace::VolumeFull("copying the workspace: " + ec.message())
                                                             : IoError("copying the workspace: " + ec.message()));
  copy.store_bytes = DirectoryBytes(dest_dir + "/store");
  copy.workspace_bytes = DirectoryBytes(dest_dir + "/workspace");
  return copy;
}

}  // namespace carapace
