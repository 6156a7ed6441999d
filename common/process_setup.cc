#include "worker/runtime/process_setup.h"

#include <utility>  // boost::asio, under pplx, uses std::exchange without including it

#include <pplx/threadpool.h>

namespace carapace {

void SetUpProcess() { crossplat::threadpool::initialize_with_threads(2); }

}  // namespace carapace
