// TLS on the worker's control API (docs/operations.md, "TLS on the control API"): a real
// carapace-worker serving certificates this test makes with openssl, the real CLI and gRPC
// clients at it, and a renewal written the way the kubelet updates a Secret volume.
#include <grpcpp/grpcpp.h>

#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
#include <filesystem>
#include <fstream>

#include "carapace/worker/v1/control.grpc.pb.h"
#include "common/control_channel.h"
#include "tests/support/carapace_cli.h"
#include "tests/support/child_process.h"
#include "tests/support/test_certs.h"
#include "tests/support/wait.h"
#include "tests/support/worker_process.h"

using carapace::testing::CertFiles;
using carapace::testing::CertSerial;
using carapace::testing::CommandResult;
using carapace::testing::RunCommand;
using carapace::testing::TempDir;
using carapace::testing::TestCa;
using carapace::testing::WorkerProcess;
using carapace::testing::WriteSecretVolume;
using Catch::Matchers::ContainsSubstring;
namespace fs = std::filesystem;
namespace v1 = carapace::worker::v1;

namespace {

constexpr const char* kSpec = R"(apiVersion: carapace.dev/v1alpha1
kind: AgentRun
metadata: {name: guarded}
spec:
  goal: say done
  model:
    backend: scripted
    script:
      - text: done
)";

using carapace::testing::Carapace;

// What a new connection to the worker saw: the call's status and the certificate shown.
struct Seen {
  grpc::Status status;
  std::string cert_pem;
};

// GetStatus over a connection of its own (a local subchannel pool: never one an earlier
// channel left open), verifying the worker against `ca_pem`.
Seen CallOverNewConnection(const std::string& address, const std::string& ca_pem, const std::string& token) {
  grpc::ChannelArguments args = carapace::ControlChannelArguments();
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ca_pem;
  auto stub = v1::WorkerControl::NewStub(grpc::CreateCustomChannel(address, grpc::SslCredentials(ssl), args));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  ctx.AddMetadata("authorization", "Bearer " + token);
  v1::RunStatus out;
  Seen seen;
  seen.status = stub->GetStatus(&ctx, v1::GetStatusRequest(), &out);
  if (auto auth = ctx.auth_context()) {
    for (const auto& v : auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME))
      seen.cert_pem.assign(v.data(), v.size());
  }
  return seen;
}

// A worker serving the certificate in `secret` (a Secret volume's directory), looked at every second.
struct TlsWorker {
  TempDir tmp;
  TestCa ca{tmp.Sub("ca"), "carapace-test-ca"};
  std::string secret = tmp.Sub("control-tls");
  std::unique_ptr<WorkerProcess> worker;

  explicit TlsWorker(const std::string& serial = "1001") {
    WriteSecretVolume(secret, ca.Issue({"localhost", "guarded.agents.svc"}, {"127.0.0.1"}, serial));
    worker =
        std::make_unique<WorkerProcess>(WORKER_BIN, tmp.Write("guarded.yaml", kSpec), tmp.Sub("state"), tmp.path(),
                                        std::vector<std::string>{"--tls-dir", secret, "--tls-reload-seconds", "1"});
  }
  std::string ca_file() const { return secret + "/ca.crt"; }
  std::string token_file() const { return tmp.path() + "/token"; }
};

}  // namespace

TEST_CASE("the CLI reads a TLS worker's status with the CA of its certificate, and still needs the token", "[tls]") {
  TlsWorker t;
  REQUIRE(t.worker->Start());
  CommandResult ok = Carapace(
      {"status", "--worker", t.worker->address(), "--token-file", t.token_file(), "--tls-ca", t.ca_file(), "--json"});
  INFO(ok.err);
  REQUIRE(ok.exit_code == 0);
  CHECK_THAT(ok.out, ContainsSubstring("\"name\":\"guarded\""));

  // The name checked can be the Service's, as the operator dials a pod by IP.
  CommandResult by_name = Carapace({"status", "--worker", t.worker->address(), "--token-file", t.token_file(),
                                    "--tls-ca", t.ca_file(), "--tls-server-name", "guarded.agents.svc"});
  INFO(by_name.err);
  CHECK(by_name.exit_code == 0);

  // TLS does not stand in for the token.
  CommandResult no_token = Carapace({"status", "--worker", t.worker->address(), "--tls-ca", t.ca_file()});
  CHECK(no_token.exit_code == 2);
  CHECK_THAT(no_token.err, ContainsSubstring("bearer token"));
  Seen wrong = CallOverNewConnection(t.worker->address(), t.ca.cert_pem(), "not-the-token-at-all-0000");
  CHECK(wrong.status.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK_FALSE(wrong.cert_pem.empty());  // refused after the handshake, by the token check
}

TEST_CASE("a worker is refused when its certificate is not from the CA given, or names another host", "[tls]") {
  TlsWorker t;
  REQUIRE(t.worker->Start());
  TestCa other(t.tmp.Sub("other-ca"), "someone-else");
  CommandResult r = Carapace(
      {"status", "--worker", t.worker->address(), "--token-file", t.token_file(), "--tls-ca", other.cert_path()});
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, ContainsSubstring("certificate verify failed"));
  CHECK_THAT(r.err, ContainsSubstring("not signed by the CA given (--tls-ca)"));

  CommandResult name = Carapace({"status", "--worker", t.worker->address(), "--token-file", t.token_file(), "--tls-ca",
                                 t.ca_file(), "--tls-server-name", "someone.else.svc"});
  CHECK(name.exit_code == 1);
  CHECK_THAT(name.err, ContainsSubstring("not issued for someone.else.svc"));

  // A CA file that is not one is named before anything is dialled.
  const std::string junk = t.tmp.Write("junk.crt", "not a certificate\n");
  CommandResult bad = Carapace({"status", "--worker", t.worker->address(), "--tls-ca", junk});
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.err, ContainsSubstring("the CA file " + junk + " holds no PEM certificate"));
  CommandResult missing = Carapace({"status", "--worker", t.worker->address(), "--tls-ca", t.tmp.Sub("nope.crt")});
  CHECK(missing.exit_code == 2);
  CHECK_THAT(missing.err, ContainsSubstring("cannot read the CA file " + t.tmp.Sub("nope.crt")));
  CommandResult name_alone =
      Carapace({"status", "--worker", t.worker->address(), "--tls-server-name", "guarded.agents.svc"});
  CHECK(name_alone.exit_code == 2);
  CHECK_THAT(name_alone.err, ContainsSubstring("--tls-server-name needs --tls-ca"));
}

TEST_CASE("plaintext and TLS clients at the wrong kind of worker fail with a message that says so", "[tls]") {
  TlsWorker t;
  REQUIRE(t.worker->Start());
  // The call ends (the worker closes a connection that is not TLS), with a hint at --tls-ca.
  CommandResult plain = Carapace({"status", "--worker", t.worker->address(), "--token-file", t.token_file()});
  CHECK(plain.exit_code == 1);
  CHECK_THAT(plain.err, ContainsSubstring("if it serves TLS (--tls-dir), connect with its CA (--tls-ca FILE)"));

  TempDir tmp;
  WorkerProcess plaintext(WORKER_BIN, tmp.Write("guarded.yaml", kSpec), tmp.Sub("state"), tmp.path());
  REQUIRE(plaintext.Start());
  CommandResult tls = Carapace(
      {"status", "--worker", plaintext.address(), "--token-file", tmp.path() + "/token", "--tls-ca", t.ca_file()});
  CHECK(tls.exit_code == 1);
  CHECK_THAT(tls.err, ContainsSubstring("the TLS handshake failed: does the worker serve TLS (--tls-dir)?"));
}

TEST_CASE("a renewed certificate is served to new connections without restarting the worker", "[tls]") {
  TlsWorker t("1001");
  REQUIRE(t.worker->Start());
  Seen first = CallOverNewConnection(t.worker->address(), t.ca.cert_pem(), t.worker->token());
  INFO(first.status.error_message());
  REQUIRE(first.status.ok());
  REQUIRE(CertSerial(first.cert_pem) == "1001");

  // cert-manager renews: a new key and certificate in the Secret; the kubelet swaps ..data.
  WriteSecretVolume(t.secret, t.ca.Issue({"localhost", "guarded.agents.svc"}, {"127.0.0.1"}, "2002"));
  std::string serial;
  CHECK(carapace::testing::WaitFor([&] {
    Seen s = CallOverNewConnection(t.worker->address(), t.ca.cert_pem(), t.worker->token());
    if (s.status.ok()) serial = CertSerial(s.cert_pem);
    return serial == "2002";
  }));
  CHECK(serial == "2002");
  CHECK(t.worker->child()->Running());  // the same process: no restart
}

TEST_CASE("a --tls-dir the worker cannot serve from stops it at start with exit 2, naming the file", "[tls]") {
  TempDir tmp;
  TestCa ca(tmp.Sub("ca"), "carapace-test-ca");
  const std::string spec = tmp.Write("guarded.yaml", kSpec);
  tmp.Write("token", "0123456789abcdef0123456789abcdef\n");
  auto start = [&](const std::string& dir) {
    return RunCommand({WORKER_BIN, "--spec", spec, "--state-dir", tmp.Sub("state"), "--token-file", tmp.Sub("token"),
                       "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--tls-dir", dir});
  };
  const std::string dir = tmp.Sub("tls");
  fs::create_directories(dir);

  CommandResult empty = start(dir);
  CHECK(empty.exit_code == 2);
  CHECK_THAT(empty.err, ContainsSubstring("cannot read the TLS certificate " + dir + "/tls.crt"));

  CertFiles good = ca.Issue({"localhost"}, {"127.0.0.1"}, "1001");
  tmp.Write("tls/tls.crt", good["tls.crt"]);
  CommandResult no_key = start(dir);
  CHECK(no_key.exit_code == 2);
  CHECK_THAT(no_key.err, ContainsSubstring("cannot read the TLS key " + dir + "/tls.key"));

  tmp.Write("tls/tls.key", ca.Issue({"localhost"}, {"127.0.0.1"}, "2002")["tls.key"]);
  CommandResult mismatched = start(dir);
  CHECK(mismatched.exit_code == 2);
  CHECK_THAT(mismatched.err,
             ContainsSubstring("the TLS key " + dir + "/tls.key does not match the certificate " + dir + "/tls.crt"));

  tmp.Write("tls/tls.crt", "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
  CommandResult garbled = start(dir);
  CHECK(garbled.exit_code == 2);
  CHECK_THAT(garbled.err, ContainsSubstring("the TLS certificate " + dir + "/tls.crt holds no PEM certificate"));
}
