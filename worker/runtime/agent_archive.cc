#include "worker/runtime/agent_archive.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "common/file.h"
#include "common/json_text.h"
#include "common/time.h"

namespace carapace {

namespace fs = std::filesystem;

namespace {

constexpr int kManifestFormat = 1;
constexpr size_t kChunk = 1 << 20;
constexpr uint32_t kMaxName = 4096;
constexpr uint64_t kMaxManifest = 64ull << 20;
constexpr uint64_t kMaxLinkTarget = 4096;

// SHA-256 of an archive's content, through OpenSSL: a gigabyte store hashes at memory speed
// (common/hash.h's own SHA-256 is for small values, where OpenSSL's set-up costs more).
class ContentDigest {
 public:
  ContentDigest() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ContentDigest(const ContentDigest& other) : ctx_(EVP_MD_CTX_new()) { EVP_MD_CTX_copy_ex(ctx_, other.ctx_); }
  ContentDigest& operator=(const ContentDigest& other) {
    if (this != &other) EVP_MD_CTX_copy_ex(ctx_, other.ctx_);
    return *this;
  }
  ~ContentDigest() { EVP_MD_CTX_free(ctx_); }

  void Update(std::string_view data) { EVP_DigestUpdate(ctx_, data.data(), data.size()); }
  // Lower-case hex; the digest is spent afterwards.
  std::string FinishHex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, md, &n);
    static const char* kHex = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < n; ++i) {
      out.push_back(kHex[md[i] >> 4]);
      out.push_back(kHex[md[i] & 0xf]);
    }
    return out;
  }

 private:
  EVP_MD_CTX* ctx_;
};

Status ErrnoStatus(const std::string& path, const std::string& what, int err) {
  const std::string message = path + ": cannot " + what + ": " + std::strerror(err);
  return err == ENOSPC || err == EDQUOT ? VolumeFull(message) : IoError(message);
}

// Writes through a buffer and hashes everything it writes.
class ArchiveOut {
 public:
  ArchiveOut(int fd, std::string path) : fd_(fd), path_(std::move(path)) { buf_.reserve(kChunk); }

  Status Put(std::string_view data, bool hashed = true) {
    if (hashed) hash_.Update(data);
    bytes_ += data.size();
    if (buf_.size() + data.size() > kChunk) CARAPACE_RETURN_IF_ERROR(Flush());
    if (data.size() >= kChunk) return WriteAll(data);
    buf_.append(data);
    return Status::Ok();
  }
  Status PutU32(uint32_t v, bool hashed = true) {
    char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
                 static_cast<char>(v)};
    return Put(std::string_view(b, 4), hashed);
  }
  Status PutU64(uint64_t v, bool hashed = true) {
    CARAPACE_RETURN_IF_ERROR(PutU32(static_cast<uint32_t>(v >> 32), hashed));
    return PutU32(static_cast<uint32_t>(v), hashed);
  }
  Status Header(char kind, const std::string& name, uint32_t mode, uint64_t size, bool hashed = true) {
    CARAPACE_RETURN_IF_ERROR(Put(std::string_view(&kind, 1), hashed));
    CARAPACE_RETURN_IF_ERROR(PutU32(static_cast<uint32_t>(name.size()), hashed));
    CARAPACE_RETURN_IF_ERROR(Put(name, hashed));
    CARAPACE_RETURN_IF_ERROR(PutU32(mode, hashed));
    return PutU64(size, hashed);
  }
  Status Flush() {
    Status s = WriteAll(buf_);
    buf_.clear();
    return s;
  }
  std::string DigestHex() { return hash_.FinishHex(); }
  uint64_t bytes() const { return bytes_; }

 private:
  Status WriteAll(std::string_view data) {
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return ErrnoStatus(path_, "write", errno);
      done += static_cast<size_t>(n);
    }
    return Status::Ok();
  }

  int fd_;
  std::string path_;
  std::string buf_;
  ContentDigest hash_;
  uint64_t bytes_ = 0;
};

Status PutFile(ArchiveOut& out, const std::string& name, const fs::path& path, uint32_t mode) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return ErrnoStatus(path.string(), "open", errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoStatus(path.string(), "stat", err);
  }
  Status s = out.Header('F', name, mode, static_cast<uint64_t>(st.st_size));
  std::string chunk(kChunk, '\0');
  uint64_t left = static_cast<uint64_t>(st.st_size);
  while (s.ok() && left > 0) {
    const ssize_t n = ::read(fd, chunk.data(), std::min<uint64_t>(chunk.size(), left));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      s = ErrnoStatus(path.string(), "read", errno);
    } else if (n == 0) {
      // The copy is a snapshot nobody writes to; a file that shrank is not one.
      s = IoError(path.string() + " changed while it was archived");
    } else {
      s = out.Put(std::string_view(chunk.data(), static_cast<size_t>(n)));
      left -= static_cast<uint64_t>(n);
    }
  }
  ::close(fd);
  return s;
}

nlohmann::json ManifestJson(const ArchiveManifest& m) {
  nlohmann::json spec = nlohmann::json::parse(m.spec_json, nullptr, false);
  return {{"format", kManifestFormat},
          {"runId", m.run_id},
          {"name", m.name},
          {"namespace", m.ns},
          {"specHash", m.spec_hash},
          {"spec", spec.is_discarded() ? nlohmann::json(m.spec_json) : spec},
          {"revision", m.revision},
          {"lastSeq", m.last_seq},
          {"handoffId", m.handoff_id},
          {"from", m.from},
          {"createdAt", FormatRfc3339Millis(m.created_ms)},
          {"createdMs", m.created_ms}};
}

Result<ArchiveManifest> ManifestFrom(const std::string& text, const std::string& path) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object() || !j["format"].is_number_integer() || !j["runId"].is_string() ||
      !j["lastSeq"].is_number_unsigned()) {
    return Corruption(path + ": the archive's manifest is not one this version reads");
  }
  if (j["format"].get<int>() != kManifestFormat) {
    return Corruption(path + ": the archive's manifest has format " + std::to_string(j["format"].get<int>()) +
                      "; this version reads format " + std::to_string(kManifestFormat));
  }
  // A field of the wrong type is a damaged manifest, said so, not an exception.
  try {
    ArchiveManifest m;
    m.run_id = j["runId"].get<std::string>();
    m.name = j.value("name", "");
    m.ns = j.value("namespace", "");
    m.spec_hash = j.value("specHash", "");
    m.spec_json = j.contains("spec") ? (j["spec"].is_string() ? j["spec"].get<std::string>() : j["spec"].dump()) : "";
    m.revision = j.value("revision", int64_t{0});
    m.last_seq = j["lastSeq"].get<uint64_t>();
    m.handoff_id = j.value("handoffId", "");
    m.from = j.value("from", "");
    m.created_ms = j.value("createdMs", int64_t{0});
    return m;
  } catch (const nlohmann::json::exception& e) {
    return Corruption(path + ": the archive's manifest is damaged (" + e.what() + ")");
  }
}

// Reads an archive, hashing what it consumes.
class ArchiveIn {
 public:
  ArchiveIn(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

  // Fills `out` with exactly n bytes; false at the end of the file.
  Result<bool> Take(size_t n, std::string* out) {
    out->clear();
    while (out->size() < n) {
      if (pos_ == buf_.size()) {
        buf_.resize(kChunk);
        ssize_t got = ::read(fd_, buf_.data(), buf_.size());
        while (got < 0 && errno == EINTR) got = ::read(fd_, buf_.data(), buf_.size());
        if (got < 0) return ErrnoStatus(path_, "read", errno);
        buf_.resize(static_cast<size_t>(got));
        pos_ = 0;
        if (got == 0) return false;
      }
      const size_t take = std::min(n - out->size(), buf_.size() - pos_);
      out->append(buf_, pos_, take);
      pos_ += take;
    }
    hash_.Update(*out);
    return true;
  }
  Result<bool> AtEnd() {
    std::string one;
    ContentDigest keep = hash_;
    CARAPACE_ASSIGN_OR_RETURN(bool more, Take(1, &one));
    hash_ = keep;
    return !more;
  }
  Status Need(size_t n, std::string* out, const char* what) {
    CARAPACE_ASSIGN_OR_RETURN(bool got, Take(n, out));
    if (!got) return Corruption(path_ + " is cut short (in " + what + "): not a whole archive");
    return Status::Ok();
  }
  Result<uint64_t> Number(size_t width, const char* what) {
    std::string b;
    CARAPACE_RETURN_IF_ERROR(Need(width, &b, what));
    uint64_t v = 0;
    for (char c : b) v = (v << 8) | static_cast<unsigned char>(c);
    return v;
  }
  ContentDigest hash() const { return hash_; }
  const std::string& path() const { return path_; }

 private:
  int fd_;
  std::string path_;
  std::string buf_;
  size_t pos_ = 0;
  ContentDigest hash_;
};

struct RecordHeader {
  char kind = 0;
  std::string name;
  uint32_t mode = 0;
  uint64_t size = 0;
};

Result<RecordHeader> ReadHeader(ArchiveIn& in) {
  RecordHeader h;
  std::string b;
  CARAPACE_RETURN_IF_ERROR(in.Need(1, &b, "a record's kind"));
  h.kind = b[0];
  CARAPACE_ASSIGN_OR_RETURN(uint64_t name_len, in.Number(4, "a record's name length"));
  if (name_len > kMaxName)
    return Corruption(in.path() + ": a record's name is " + std::to_string(name_len) + " bytes long");
  CARAPACE_RETURN_IF_ERROR(in.Need(static_cast<size_t>(name_len), &h.name, "a record's name"));
  CARAPACE_ASSIGN_OR_RETURN(uint64_t mode, in.Number(4, "a record's mode"));
  h.mode = static_cast<uint32_t>(mode);
  CARAPACE_ASSIGN_OR_RETURN(h.size, in.Number(8, "a record's size"));
  return h;
}

// A name the unpacker may create: relative, under store/ or workspace/, no "." or "..".
bool SafeName(const std::string& name) {
  if (name.empty() || name.front() == '/' || name.find('\0') != std::string::npos) return false;
  size_t start = 0;
  bool first = true;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    const std::string part = name.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    if (first && part != "store" && part != "workspace") return false;
    first = false;
    start = end + 1;
  }
  return true;
}

std::string ParentName(const std::string& name) {
  const size_t slash = name.rfind('/');
  return slash == std::string::npos ? std::string() : name.substr(0, slash);
}

}  // namespace

Result<uint64_t> WriteAgentArchive(const std::string& copy_dir, const ArchiveManifest& manifest,
                                   const std::string& archive_path) {
  const std::string tmp = archive_path + ".writing";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(archive_path, "create", errno);
  ArchiveOut out(fd, archive_path);
  auto write_all = [&]() -> Status {
    CARAPACE_RETURN_IF_ERROR(out.Put(kAgentArchiveMagic));
    const std::string m = ValidUtf8(ManifestJson(manifest)).dump(2) + "\n";
    CARAPACE_RETURN_IF_ERROR(out.Header('M', "", 0644, m.size()));
    CARAPACE_RETURN_IF_ERROR(out.Put(m));
    for (const char* top : {"store", "workspace"}) {
      const fs::path root = fs::path(copy_dir) / top;
      CARAPACE_RETURN_IF_ERROR(out.Header('D', top, 0755, 0));
      std::error_code ec;
      // A directory comes before what it holds, so the unpacker makes it first.
      for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
        const fs::file_status st = it->symlink_status(ec);
        if (ec) break;
        const std::string name = std::string(top) + "/" + fs::relative(it->path(), root, ec).generic_string();
        const uint32_t mode = static_cast<uint32_t>(st.permissions()) & 0777;
        if (fs::is_symlink(st)) {
          const std::string target = fs::read_symlink(it->path(), ec).string();
          if (ec) break;
          CARAPACE_RETURN_IF_ERROR(out.Header('L', name, 0777, target.size()));
          CARAPACE_RETURN_IF_ERROR(out.Put(target));
        } else if (fs::is_directory(st)) {
          CARAPACE_RETURN_IF_ERROR(out.Header('D', name, mode, 0));
        } else if (fs::is_regular_file(st)) {
          CARAPACE_RETURN_IF_ERROR(PutFile(out, name, it->path(), mode));
        } else {
          return FailedPrecondition(it->path().string() +
                                    " is neither a file, a directory nor a link: an archive cannot hold it");
        }
      }
      if (ec) return IoError("reading " + root.string() + ": " + ec.message());
    }
    CARAPACE_RETURN_IF_ERROR(out.Flush());
    // The end record is not part of what its digest covers.
    const std::string digest = out.DigestHex();
    CARAPACE_RETURN_IF_ERROR(out.Header('E', "", 0, digest.size(), false));
    CARAPACE_RETURN_IF_ERROR(out.Put(digest, false));
    CARAPACE_RETURN_IF_ERROR(out.Flush());
    if (::fsync(fd) != 0) return ErrnoStatus(archive_path, "sync", errno);
    return Status::Ok();
  };
  Status s = write_all();
  ::close(fd);
  if (s.ok() && ::rename(tmp.c_str(), archive_path.c_str()) != 0) s = ErrnoStatus(archive_path, "rename", errno);
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  (void)SyncDirectory(fs::path(archive_path).parent_path().empty() ? "."
                                                                   : fs::path(archive_path).parent_path().string());
  return out.bytes();
}

bool IsAgentArchive(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const size_t n = sizeof(kAgentArchiveMagic) - 1;
  std::string head(n, '\0');
  const ssize_t got = ::read(fd, head.data(), n);
  ::close(fd);
  return got == static_cast<ssize_t>(n) && head == kAgentArchiveMagic;
}

static Result<ArchiveManifest> ReadManifestRecord(ArchiveIn& in) {
  std::string magic;
  CARAPACE_ASSIGN_OR_RETURN(bool got, in.Take(sizeof(kAgentArchiveMagic) - 1, &magic));
  if (!got || magic != kAgentArchiveMagic) {
    return Corruption(in.path() + " is not a Carapace agent archive (made by `carapace export`) of format 1");
  }
  CARAPACE_ASSIGN_OR_RETURN(RecordHeader h, ReadHeader(in));
  if (h.kind != 'M' || h.size > kMaxManifest)
    return Corruption(in.path() + ": the archive does not start with its manifest");
  std::string text;
  CARAPACE_RETURN_IF_ERROR(in.Need(static_cast<size_t>(h.size), &text, "the manifest"));
  return ManifestFrom(text, in.path());
}

Result<ArchiveManifest> ReadArchiveManifest(const std::string& archive_path) {
  const int fd = ::open(archive_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return NotFound(archive_path + ": no such file");
    return ErrnoStatus(archive_path, "open", errno);
  }
  ArchiveIn in(fd, archive_path);
  auto m = ReadManifestRecord(in);
  ::close(fd);
  return m;
}

Result<ArchiveManifest> UnpackAgentArchive(const std::string& archive_path, const std::string& dest_dir) {
  std::error_code ec;
  if (fs::exists(fs::symlink_status(dest_dir, ec)))
    return FailedPrecondition(dest_dir + " exists; unpack into a new directory");
  const int fd = ::open(archive_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return NotFound(archive_path + ": no such file");
    return ErrnoStatus(archive_path, "open", errno);
  }
  ArchiveIn in(fd, archive_path);
  std::set<std::string> dirs = {""};  // made by this unpacker: a file is only ever made in one
  auto unpack = [&]() -> Result<ArchiveManifest> {
    CARAPACE_ASSIGN_OR_RETURN(ArchiveManifest m, ReadManifestRecord(in));
    if (::mkdir(dest_dir.c_str(), 0700) != 0) return ErrnoStatus(dest_dir, "create", errno);
    std::string chunk;
    for (;;) {
      const ContentDigest before = in.hash();
      CARAPACE_ASSIGN_OR_RETURN(RecordHeader h, ReadHeader(in));
      if (h.kind == 'E') {
        std::string digest;
        CARAPACE_RETURN_IF_ERROR(in.Need(static_cast<size_t>(std::min<uint64_t>(h.size, 64)), &digest, "the digest"));
        ContentDigest want = before;
        if (h.size != 64 || digest != want.FinishHex()) {
          return Corruption(archive_path + ": its digest does not match its content (damaged in transit or on disk)");
        }
        CARAPACE_ASSIGN_OR_RETURN(bool at_end, in.AtEnd());
        if (!at_end) return Corruption(archive_path + ": bytes follow the end of the archive");
        break;
      }
      if (!SafeName(h.name)) {
        return Corruption(archive_path + ": an entry is named \"" + h.name.substr(0, 200) +
                          "\"; names must stay inside store/ or workspace/");
      }
      if (dirs.count(ParentName(h.name)) == 0) {
        return Corruption(archive_path + ": " + h.name + " comes before its directory, or its directory is a link");
      }
      const std::string path = dest_dir + "/" + h.name;
      if (h.kind == 'D') {
        if (h.size != 0) return Corruption(archive_path + ": directory " + h.name + " has content");
        if (::mkdir(path.c_str(), 0700 | (h.mode & 0777)) != 0) return ErrnoStatus(path, "create", errno);
        dirs.insert(h.name);
      } else if (h.kind == 'L') {
        // A store is RocksDB's files, never links: one there could only make the store read
        // a file from elsewhere on the machine.
        if (h.name.rfind("workspace/", 0) != 0)
          return Corruption(archive_path + ": a link in the store (" + h.name + ")");
        if (h.size > kMaxLinkTarget) return Corruption(archive_path + ": link " + h.name + " has a target too long");
        std::string target;
        CARAPACE_RETURN_IF_ERROR(in.Need(static_cast<size_t>(h.size), &target, "a link's target"));
        if (target.empty() || target.find('\0') != std::string::npos) {
          return Corruption(archive_path + ": link " + h.name + " has no valid target");
        }
        if (::symlink(target.c_str(), path.c_str()) != 0) return ErrnoStatus(path, "create", errno);
      } else if (h.kind == 'F') {
        const int out =
            ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600 | (h.mode & 0777));
        if (out < 0) return ErrnoStatus(path, "create", errno);
        Status s;
        uint64_t left = h.size;
        while (s.ok() && left > 0) {
          s = in.Need(static_cast<size_t>(std::min<uint64_t>(left, kChunk)), &chunk, "a file's content");
          for (size_t done = 0; s.ok() && done < chunk.size();) {
            const ssize_t n = ::write(out, chunk.data() + done, chunk.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
              s = ErrnoStatus(path, "write", errno);
            } else {
              done += static_cast<size_t>(n);
            }
          }
          left -= chunk.size();
        }
        if (s.ok() && ::fdatasync(out) != 0) s = ErrnoStatus(path, "sync", errno);
        ::close(out);
        CARAPACE_RETURN_IF_ERROR(s);
      } else {
        return Corruption(archive_path + ": an entry of unknown kind " + std::to_string(static_cast<int>(h.kind)));
      }
    }
    if (dirs.count("store") == 0 || dirs.count("workspace") == 0) {
      return Corruption(archive_path + " holds no store/ or no workspace/");
    }
    for (const auto& d : dirs) (void)SyncDirectory(d.empty() ? dest_dir : dest_dir + "/" + d);
    return m;
  };
  auto m = unpack();
  ::close(fd);
  if (!m.ok()) fs::remove_all(dest_dir, ec);
  return m;
}

}  // namespace carapace
