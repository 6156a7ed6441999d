// Agent archives (`carapace import`, worker/runtime/agent_archive.h): a file from another
// machine, unpacked into a directory of this one. Each input is written to a file, its
// manifest read, and the whole of it unpacked into a fresh directory, which is removed again.
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "worker/runtime/agent_archive.h"

namespace {

// One scratch directory per process, removed at exit.
struct Scratch {
  std::string dir;
  Scratch() {
    char pattern[] = "/tmp/carapace-fuzz-archive-XXXXXX";
    dir = ::mkdtemp(pattern) != nullptr ? pattern : "/tmp";
  }
  ~Scratch() {
    std::error_code ec;
    if (dir != "/tmp") std::filesystem::remove_all(dir, ec);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Scratch scratch;
  const std::string file = scratch.dir + "/in.carapace";
  const std::string out = scratch.dir + "/out";
  std::ofstream(file, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data),
                                                                static_cast<std::streamsize>(size));
  (void)carapace::IsAgentArchive(file);
  (void)carapace::ReadArchiveManifest(file);
  (void)carapace::UnpackAgentArchive(file, out);
  std::error_code ec;
  std::filesystem::remove_all(out, ec);
  return 0;
}
