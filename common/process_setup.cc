// Process-wide settings (see process_setup.h).
#include "common/process_setup.h"

#include <unistd.h>

#include <utility>  // boost::asio, under pplx, uses std::exchange without including it

#include <pplx/threadpool.h>

namespace carapace {

void SetUpProcess(int http_threads) { crossplat::threadpool::initialize_with_threads(http_threads); }

std::string HostName() {
  char host[256] = {0};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "unknown-host";
  return host;
}

}  // namespace carapace
