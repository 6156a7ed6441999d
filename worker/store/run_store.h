// RunStore: one AgentRun's durable state in RocksDB under a state dir. It knows column
// families and key layouts, not what events mean (that is worker/runtime/).
//
// Layout of a state dir:
//   DIR/carapace.lock   flock()ed by the one process that may write; holds its pid
//   DIR/store/          RocksDB: column families events, checkpoints, transcript, artifacts, meta, memory
//   DIR/workspace/      files the agent's workspace tool reads and writes
//
// Writes are serialised by the write lock; reads may come from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class WriteBatch;
}  // namespace rocksdb

namespace carapace {

// History a retention policy removes (worker/runtime/retention.h), in the same write as the
// event that records it.
struct HistoryTrim {
  uint64_t events_before = 0;          // events with a lower sequence number
  int64_t checkpoints_before = 0;      // checkpoints of earlier steps
  int64_t transcript_before = 0;       // transcript messages with a lower index
  std::vector<std::string> artifacts;  // artifact keys
};

// Everything one Commit writes, atomically (one RocksDB WriteBatch).
struct StoreBatch {
  std::vector<std::string> events;  // appended in order; sequence numbers assigned by Commit
  std::optional<std::pair<int64_t, std::string>> checkpoint;      // (step, state)
  std::vector<std::pair<int64_t, std::string>> transcript;        // (message index, message)
  std::vector<std::pair<std::string, std::string>> artifacts;     // (key, bytes)
  std::vector<std::pair<std::string, std::string>> meta;          // (key, value)
  // The first event's sequence number, when events keep numbers they already have (a fork
  // of a run whose oldest events were removed); must be past last_seq(). Unset: next.
  std::optional<uint64_t> first_seq;
  std::optional<HistoryTrim> trim;
};

// What CopyConsistent made.
struct StoreCopy {
  uint64_t last_seq = 0;     // the newest event the copy holds
  uint64_t store_bytes = 0;  // of the store's files in the copy (hard links count whole)
  uint64_t workspace_bytes = 0;
};

class RunStore {
 public:
  enum class OpenMode {
    kCreateIfMissing,  // `carapace run`: a missing or empty dir becomes a new state dir
    kMustExist,        // `inspect`, `approve`, `fork` source: the dir must hold a run
  };

  // Opens (or creates) the state dir and takes its lock. Errors:
  //  kBusy        another process holds the state dir (message names its pid);
  //  kNotFound    kMustExist and there is no state dir;
  //  kFailedPrecondition  the dir holds files that are not a Carapace state dir;
  //  kCorruption  the store is damaged or has no Carapace format marker. Nothing is reset.
  static Result<std::unique_ptr<RunStore>> Open(const std::string& state_dir, OpenMode mode);

  ~RunStore();
  RunStore(const RunStore&) = delete;
  RunStore& operator=(const RunStore&) = delete;

  const std::string& state_dir() const { return dir_; }
  std::string workspace_dir() const { return dir_ + "/workspace"; }
  // True when Open created the store (no run has been recorded yet).
  bool created() const { return created_; }

  // Writes the batch atomically. With `sync`, the write is fdatasync'ed before returning,
  // and so is every earlier write (RocksDB's WAL is a single ordered log).
  // Returns the sequence number of the batch's first event (or of the next event when it
  // has none). Errors: kVolumeFull when the volume has no room for the write
  // (IsVolumeFull: nothing was written, the store is as before and the same write may be
  // tried again); kIoError, after which the store must not be written again.
  // Thread-safe: commits are serialised.
  Result<uint64_t> Commit(const StoreBatch& batch, bool sync);

  using WriteGuard = std::unique_lock<std::recursive_timed_mutex>;
  // Held by a writer that reads last_seq(), decides what to write and commits, so that no
  // other commit comes in between (the runner and the control API both append events).
  WriteGuard WriteLock() const { return WriteGuard(write_mu_); }
  // The write lock for writers other than the runner (the control API, schedules): while
  // the volume is full the runner waits for space holding the lock, so that its refused
  // write is the first one written when space is back; others get the refusal at once
  // (kVolumeFull, as Commit's) instead of queueing behind it.
  // Also refused (kFailedPrecondition) while external writes are refused.
  Result<WriteGuard> WriteLockUnlessFull() const;
  // A fence for every writer but the runner: WriteLockUnlessFull answers `why` from now on
  // (an exported agent takes no message, decision or control; worker/runtime/handoff.h).
  // Empty `why`: writes are taken again. Kept in memory only: whoever opens the store sets
  // it again from the log (Runner::Create). Call it holding WriteLock(), so no external
  // write is in progress. Thread-safe.
  void RefuseExternalWrites(const std::string& why);

  // While the volume is too full for the last write it refused: why (the refusal's
  // message). Empty once the volume has room for that write again (looked up on each call)
  // or a write succeeded. Thread-safe.
  std::optional<std::string> VolumeFull() const;
  // Free bytes of the volume (statvfs), empty when it cannot tell. Thread-safe.
  std::optional<uint64_t> FreeBytes() const;
  // Tests: what the store takes for the free bytes of its volume, in place of statvfs, to
  // fill the volume at a chosen write. Set before the store is shared with other threads.
  using FreeSpaceProbe = std::function<std::optional<uint64_t>()>;
  void SetFreeSpaceProbe(FreeSpaceProbe probe) { free_space_probe_ = std::move(probe); }

  // Sequence number of the newest event; 0 when there is none. Events are numbered from 1.
  uint64_t last_seq() const { return last_seq_.load(); }

  // The value of event `seq`, empty when there is none (never written, or removed).
  Result<std::optional<std::string>> GetEvent(uint64_t seq) const;
  // Sequence number of the oldest event kept; 0 when there is none.
  Result<uint64_t> FirstSeq() const;
  // Calls fn(seq, value) for each event with seq >= from, in order, until fn returns false.
  Status ForEachEvent(uint64_t from, const std::function<bool(uint64_t, std::string_view)>& fn) const;

  // The newest checkpoint at or before `max_step` (all when unset): (step, state).
  Result<std::optional<std::pair<int64_t, std::string>>> LatestCheckpoint(
      std::optional<int64_t> max_step = std::nullopt) const;
  Status ForEachCheckpoint(const std::function<bool(int64_t, std::string_view)>& fn) const;
  // The oldest checkpoint's step, empty when there is none.
  Result<std::optional<int64_t>> FirstCheckpointStep() const;
  // Transcript messages [from, to); kCorruption when one of them is not there.
  Result<std::vector<std::string>> ReadTranscript(int64_t from, int64_t to) const;
  // Calls fn(index, message) for each transcript message from `from` on, until fn returns false.
  Status ForEachTranscript(int64_t from, const std::function<bool(int64_t, std::string_view)>& fn) const;
  Result<std::optional<std::string>> GetMeta(const std::string& key) const;
  Result<std::optional<std::string>> GetArtifact(const std::string& key) const;

  // The memory column family (long-term memory of the agent): synced puts and deletes,
  // and a scan of every entry in key order.
  Status PutMemory(const std::vector<std::pair<std::string, std::string>>& entries, bool sync);
  Status DeleteMemory(const std::vector<std::string>& keys);
  Status ForEachMemory(const std::function<bool(std::string_view, std::string_view)>& fn) const;

  // Flushes memtables to SST files so the next Open need not replay the WAL.
  Status Flush();

  // A point-in-time copy of this state dir, made while the store stays open and writable:
  // `dest_dir`/store is the store as of one moment (RocksDB's Checkpoint: the write lock is
  // held only while it is made; its files are hard links when `dest_dir` is on the same
  // filesystem, else copies), then `dest_dir`/workspace is copied. A tool call in flight at
  // that moment is, in the copy, an intent without a result: opened, the copy recovers it
  // as after kill -9. `dest_dir` must not exist or be empty. Errors: kFailedPrecondition
  // (dest not empty), kVolumeFull / kIoError from the copy (what it wrote is removed).
  Result<StoreCopy> CopyConsistent(const std::string& dest_dir) const;

 private:
  RunStore() = default;
  Result<std::optional<std::string>> Get(rocksdb::ColumnFamilyHandle* cf, const std::string& key) const;
  // Refuses a write of `bytes` the volume has no room for (kVolumeFull) and
  // remembers it for VolumeFull(); forgets it when there is room.
  Status CheckRoomFor(uint64_t bytes, const std::string& what);
  // Writes `wb` after CheckRoomFor; a RocksDB "no space" (another process filled the
  // volume after the check) is a refusal too, and the next write first asks RocksDB to
  // resume from it.
  Status WriteWithRoom(rocksdb::WriteBatch* wb, bool sync, const std::string& what);

  std::string dir_;
  int lock_fd_ = -1;
  bool created_ = false;
  std::atomic<uint64_t> last_seq_{0};
  mutable std::recursive_timed_mutex write_mu_;
  FreeSpaceProbe free_space_probe_;
  mutable std::mutex full_mu_;
  std::string refuse_external_;  // under full_mu_
  uint64_t full_need_ = 0;    // bytes the last refused write needed; 0 when none was refused
  std::string full_reason_;   // its refusal
  bool resume_rocks_ = false;  // RocksDB itself met ENOSPC; DB::Resume() before the next write
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::ColumnFamilyHandle* events_ = nullptr;
  rocksdb::ColumnFamilyHandle* checkpoints_ = nullptr;
  rocksdb::ColumnFamilyHandle* transcript_ = nullptr;
  rocksdb::ColumnFamilyHandle* artifacts_ = nullptr;
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  rocksdb::ColumnFamilyHandle* memory_ = nullptr;
};

// Takes an exclusive, non-blocking flock on DIR/carapace.lock and writes our pid into it;
// returns the lock's fd (close it to let go). The lock dies with the process, so a kill -9
// never leaves a stale lock behind. Errors: kBusy (another process holds it), kIoError.
Result<int> LockStateDir(const std::string& dir);

// Free bytes of the volume that holds `dir` (statvfs f_bavail), empty when it cannot tell.
std::optional<uint64_t> VolumeFreeBytes(const std::string& dir);

// A store write (or an open) refused because the volume is full: nothing was written and it
// may be tried again once there is room.
inline bool IsVolumeFull(const Status& s) { return s.code() == StatusCode::kVolumeFull; }

// Key of a state dir's format marker in meta, and its value for this version.
inline constexpr const char* kFormatKey = "format";
inline constexpr const char* kFormatValue = "carapace.state/v1";

}  // namespace carapace
