// The operator process at the edges of its life: a stop asked for at any stage of start-up
// is prompt and clean, an API server it cannot reach is logged and makes it not Ready, and
// when it stops on its own its log says why. Real carapace-operator processes; the API is
// the double, a port nobody listens on, or a socket that never answers.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/e2e/e2e_cluster.h"
#include "tests/support/child_process.h"
#include "tests/support/socket_io.h"
#include "tests/support/wait.h"
#include "tests/support/worker_process.h"

using namespace carapace::testing;
using Catch::Matchers::ContainsSubstring;
using nlohmann::json;

namespace {

// A TCP port that takes connections (the kernel completes the handshake) and never answers:
// an API server behind a broken load balancer. Closed on destruction.
class SilentServer {
 public:
  SilentServer() {
    fd_ = ListenOnLoopbackPort(&port_, 64);
    REQUIRE(fd_ >= 0);
  }
  ~SilentServer() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

std::string Kubeconfig(const TempDir& dir, int port) {
  const std::string path = dir.Sub("kubeconfig");
  std::ofstream(path) << "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                         "clusters: [{name: k, cluster: {server: \"http://127.0.0.1:" << port << "\"}}]\n"
                         "users: [{name: u, user: {token: t}}]\n"
                         "contexts: [{name: c, context: {cluster: k, user: u, namespace: carapace-system}}]\n";
  return path;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Waits for the operator's HTTP port to answer /healthz.
bool Serving(int port) {
  return WaitFor([&] { return HttpGet(port, "/healthz").first == 200; }, 10000);
}

// The stop line's JSON ("carapace-operator stopping").
json StopLine(const std::string& log) {
  size_t at = log.find("carapace-operator stopping");
  if (at == std::string::npos) return json();
  size_t begin = log.rfind('\n', at);
  size_t end = log.find('\n', at);
  return json::parse(log.substr(begin == std::string::npos ? 0 : begin + 1, end - (begin == std::string::npos ? 0 : begin + 1)),
                     nullptr, false);
}

}  // namespace

TEST_CASE("SIGTERM while the caches fill stops the operator at once, with exit 0, in both modes", "[e2e][lifecycle]") {
  for (bool leader_elect : {false, true}) {
    DYNAMIC_SECTION((leader_elect ? "with" : "without") << " --leader-elect") {
      SilentServer api;
      TempDir dir;
      const int http = FreePort();
      std::vector<std::string> argv = {OPERATOR_BIN, "--kubeconfig", Kubeconfig(dir, api.port()), "--http-listen",
                                       "127.0.0.1:" + std::to_string(http)};
      if (leader_elect) argv.insert(argv.end(), {"--leader-elect", "--lease-seconds", "3"});
      ChildProcess op(argv);
      REQUIRE(Serving(http));
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // well into start-up
      CHECK(HttpGet(http, "/readyz").first == 503);  // not the leader with full caches, nor a useful standby
      const auto start = std::chrono::steady_clock::now();
      op.Kill(SIGTERM);
      CommandResult r = op.Wait(30000);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      INFO(ReadAll(op.err_path()));
      CHECK(r.exit_code == 0);
      // The caches' 60 s timeout is not waited out; a request in flight may take its own
      // timeout (a few seconds) to give up.
      CHECK(seconds < 15);
      CHECK(StopLine(ReadAll(op.err_path())).value("/reason"_json_pointer, std::string()) == "SIGTERM received");
    }
  }
}

TEST_CASE("a standby that cannot reach the API server says so in its log and is not ready", "[e2e][lifecycle]") {
  TempDir dir;
  const int closed_port = FreePort();  // nobody listens there
  const int http = FreePort();
  ChildProcess op({OPERATOR_BIN, "--kubeconfig", Kubeconfig(dir, closed_port), "--http-listen",
                   "127.0.0.1:" + std::to_string(http), "--leader-elect", "--lease-seconds", "3"});
  REQUIRE(Serving(http));
  REQUIRE(WaitFor([&] { return ReadAll(op.err_path()).find("cannot take or renew the lease") != std::string::npos; }, 15000));
  auto [code, body] = HttpGet(http, "/readyz");
  CHECK(code == 503);
  CHECK_THAT(body, ContainsSubstring("cannot reach the API server"));
  // Logged with backoff: tries every ~0.6 s here, but not a line for each.
  std::this_thread::sleep_for(std::chrono::seconds(6));
  const std::string log = ReadAll(op.err_path());
  size_t lines = 0;
  for (size_t at = log.find("cannot take or renew the lease"); at != std::string::npos;
       at = log.find("cannot take or renew the lease", at + 1)) {
    ++lines;
  }
  CHECK(lines >= 2);
  CHECK(lines <= 5);
  op.Kill(SIGTERM);
  CHECK(op.Wait(15000).exit_code == 0);
}

TEST_CASE("an operator that loses its lease stops with exit 1 and a log line that says so, not a signal", "[e2e][lifecycle]") {
  Cluster cluster;
  REQUIRE(WaitFor([&] { return cluster.Leader(0) == 1; }, 20000));
  CHECK(HttpGet(cluster.operator_http_port(0), "/readyz").first == 200);
  // Another replica takes the lease over (as one would after judging it expired).
  auto lease = cluster.api().Get("coordination.k8s.io/v1", "leases", "carapace-system", "carapace-operator");
  REQUIRE(lease.ok());
  json taken = *lease;
  taken["spec"]["holderIdentity"] = "another-replica";
  taken["spec"]["leaseDurationSeconds"] = 600;
  REQUIRE(cluster.api().Update("coordination.k8s.io/v1", "leases", "carapace-system", taken).ok());
  CommandResult r = cluster.operator_process(0).Wait(20000);
  const std::string log = cluster.OperatorLog(0);
  INFO(log);
  CHECK(r.exit_code == 1);
  const json stop = StopLine(log);
  CHECK_THAT(stop.value("/reason"_json_pointer, std::string()), ContainsSubstring("lost the lease"));
  CHECK_FALSE(stop.contains("/signal"_json_pointer));
}
