// Process-wide settings (see process_setup.h).
#include "common/process_setup.h"

#include <utility>  // boost::asio, under pplx, uses std::exchange without including it

#include <pplx/threadpool.h>

namespace carapace {

void SetUpProcess(int http_threads) { crossplat::threadpool::initialize_with_threads(http_threads); }

}  // namespace carapace
