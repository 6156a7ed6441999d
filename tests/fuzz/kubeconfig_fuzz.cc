// kubeconfig files: contexts, clusters, users, inline and file credentials (files named
// relative to a directory that does not exist, so none is read).
#include <cstdint>
#include <string>

#include "operator/kube/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)carapace::kube::ParseKubeconfig(text, "/nonexistent-carapace-fuzz/kubeconfig");
  (void)carapace::kube::ParseKubeconfig(text, "/nonexistent-carapace-fuzz/kubeconfig", "other");
  return 0;
}
