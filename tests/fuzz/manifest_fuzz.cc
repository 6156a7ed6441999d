// The manifest reader (YAML 1.2 core schema, the YAML 1.1 scalar checks, JSON manifests)
// and the whole AgentRun spec validation: any text in, a spec or a list of errors out, and
// a valid spec's canonical JSON and hash computed as the operator does.
#include <cstdint>
#include <string>

#include "common/agentrun/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto run = carapace::ParseAgentRun(text, "fuzz.yaml");
  if (run.ok()) {
    (void)run->ManifestJson().dump();
    (void)run->SpecHash();
  }
  return 0;
}
