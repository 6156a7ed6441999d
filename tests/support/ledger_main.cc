// carapace-test-ledger [PORT [DELAY_MS]]: runs a LedgerServer on 127.0.0.1 until SIGTERM or
// SIGINT and prints its port. PORT 0 (the default) picks a free one.
// Used by `make demo` as the HTTP endpoint the example agent calls.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>

#include "tests/support/ledger_server.h"

int main(int argc, char** argv) {
  int port = argc > 1 ? std::atoi(argv[1]) : 0;
  int delay = argc > 2 ? std::atoi(argv[2]) : 0;
  carapace::testing::LedgerServer server(delay);
  if (!server.Start(port)) {
    std::fprintf(stderr, "ledger: cannot listen on 127.0.0.1:%d (in use?)\n", port);
    return 1;
  }
  std::printf("%d\n", server.port());
  std::fflush(stdout);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  int sig = 0;
  sigwait(&set, &sig);
  return 0;
}
