// The operator's Kubernetes client on what an API server sends: each line of the input as
// one line of a watch stream (decoded as Watch decodes it), and the whole input as a list
// reply whose items get the list's type.
#include <cstdint>
#include <string_view>

#include "common/json_text.h"
#include "operator/kube/rest_client.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  while (!rest.empty()) {
    const size_t nl = rest.find('\n');
    auto event = carapace::kube::DecodeWatchLine(rest.substr(0, nl));
    if (event.ok()) (void)carapace::kube::DecodeWatchLine(event.value.type);
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }
  nlohmann::json list = carapace::ParsePeerJson(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!list.is_discarded()) carapace::kube::GiveListItemsTheirType(&list);
  return 0;
}
