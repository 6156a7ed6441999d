// An agent in one portable file: what `carapace export` writes and `carapace import` reads
// (docs/operations.md, "Move an agent"). It holds a point-in-time copy of the agent's store
// and workspace (a state dir's layout) and a manifest naming the run, its spec and revision,
// the last event it holds and the hand-off it carries.
//
// Format 1. Integers are big-endian.
//   "CARAPACE-AGENT-ARCHIVE 1\n"
//   records, each: kind (1 byte) | name length (u32) | name | mode (u32) | size (u64) | bytes
//     'M'  the manifest (JSON); the first record, its name empty
//     'D'  a directory, 'F' a regular file, 'L' a symbolic link (the bytes are its target);
//          names are relative, '/'-separated, without "." or ".." components
//     'E'  the end: the bytes are the lower-case hex SHA-256 of everything before the record
// An archive cut short (no end record) or whose digest differs is refused whole: nothing of
// it is unpacked.
//
// Our own format rather than tar: a reader that refuses anything but these five records is
// small enough to trust with files from elsewhere (no device nodes, hard links, sparse or
// long-name extensions to get wrong), and the digest makes a truncated copy a clear error.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace carapace {

inline constexpr char kAgentArchiveMagic[] = "CARAPACE-AGENT-ARCHIVE 1\n";

struct ArchiveManifest {
  std::string run_id, name, ns, spec_hash;
  std::string spec_json;   // the AgentRun the run was started or last revised with
  int64_t revision = 0;    // the spec revision in force
  uint64_t last_seq = 0;   // the newest event in the archive
  std::string handoff_id;  // the hand-off this archive carries (its handed_off event)
  std::string from;        // where it was exported from, for people
  int64_t created_ms = 0;  // Unix ms
};

// Writes the state-dir layout in `copy_dir` (store/ and workspace/) with `manifest` into
// `archive_path`: written beside it, synced, renamed, so the path holds a whole archive or
// none. Returns the archive's size in bytes. Errors: kIoError/kVolumeFull naming the path;
// kFailedPrecondition for what the format cannot hold (a socket, a device in the workspace).
Result<uint64_t> WriteAgentArchive(const std::string& copy_dir, const ArchiveManifest& manifest,
                                   const std::string& archive_path);

// True when the file at `path` starts as an agent archive does.
bool IsAgentArchive(const std::string& path);

// The manifest (the first record), without reading the rest. Errors: kNotFound (no file),
// kCorruption (not an archive of this format).
Result<ArchiveManifest> ReadArchiveManifest(const std::string& archive_path);

// Unpacks the archive into `dest_dir`, which must not exist, checking every record's name
// and, at the end, the digest. Files are synced before it returns. On any error nothing is
// left at `dest_dir`. Errors: kCorruption naming what is wrong (cut short, digest, a name
// that leaves the directory); kIoError/kVolumeFull.
Result<ArchiveManifest> UnpackAgentArchive(const std::string& archive_path, const std::string& dest_dir);

}  // namespace carapace
