// Reading small files whole: manifests, certificates, tokens mounted from Secrets.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace carapace {

// The file's bytes. Errors: kNotFound ("PATH: no such file"), kIoError ("PATH: cannot read:
// REASON").
Result<std::string> ReadFile(const std::string& path);

// Writes `content` to `path` so that it is either absent or whole, even across a crash:
// written beside it, fsync'ed, renamed over it, and the directory fsync'ed. Errors: kIoError
// naming the path (kVolumeFull when the disk is full).
Status WriteFileAtomic(const std::string& path, const std::string& content);

// fsync's the directory `dir`: what was created, renamed or removed in it is durable.
// Errors: kIoError naming it.
Status SyncDirectory(const std::string& dir);

// fsync's every regular file and directory under `dir` (and `dir`): a tree copied with
// std::filesystem::copy is in the page cache only. Errors: kIoError naming the first path
// that could not be synced.
Status SyncTree(const std::string& dir);

// The bytes of the regular files under `dir` (0 when it cannot be read).
uint64_t DirectoryBytes(const std::string& dir);

// `s` without trailing line breaks and spaces: a value as it is kept in a file (echo adds
// a newline; a Secret may too).
std::string TrimLineEnd(std::string s);

// A bearer token kept in a file: read whole, line end trimmed. The worker and the CLI read
// their token files alike, so the same file always gives the same token.
Result<std::string> ReadTokenFile(const std::string& path);

}  // namespace carapace
