// The operator's Kubernetes plumbing against the API server double: the REST client (CRUD,
// errors, paging, patches, watches, retries, RBAC, token rotation), informers through
// dropped watches and 410 Gone, and leader election on a Lease between two replicas.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include <cpprest/http_listener.h>

#include "common/process_setup.h"
#include "operator/kube/informer.h"
#include "operator/kube/leader_election.h"
#include "operator/kube/rest_client.h"
#include "tests/support/child_process.h"
#include "tests/support/kube_api_double.h"
#include "tests/support/socket_io.h"

using namespace carapace;
using namespace carapace::kube;
using carapace::testing::CommandResult;
using carapace::testing::KubeApiDouble;
using carapace::testing::RunCommand;
using carapace::testing::KubeApiDoubleOptions;
using carapace::testing::TempDir;
using Catch::Matchers::ContainsSubstring;
using namespace std::chrono_literals;

namespace {

// As the binaries do first thing: a small cpprest pool, where a blocking wait inside a
// continuation would deadlock the client.
[[maybe_unused]] const bool kPoolSized = (carapace::SetUpProcess(2), true);

constexpr const char* kOperatorToken = "carapace-operator-token";
constexpr const char* kNs = "agents";

// The client's every verb is exercised on ConfigMaps, some of which (update) the operator's
// least-privilege role does not grant: a test role adds them.
std::string ClientTestRole() {
  static const std::string path = [] {
    const std::string p = std::filesystem::temp_directory_path().string() + "/carapace-client-test-role-" +
                          std::to_string(getpid()) + ".yaml";
    std::ofstream(p) << "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: client-test}\n"
                        "rules: [{apiGroups: [\"\"], resources: [configmaps], verbs: [\"*\"]}]\n";
    return p;
  }();
  return path;
}

KubeApiDoubleOptions DoubleOptions() {
  KubeApiDoubleOptions o;
  o.operator_token = kOperatorToken;
  o.rbac_files = {std::string(CARAPACE_SOURCE_DIR) + "/deploy/rbac/cluster_role.yaml",
                  std::string(CARAPACE_SOURCE_DIR) + "/deploy/rbac/leader_election_role.yaml", ClientTestRole()};
  return o;
}

// A started double; fails the test when it cannot listen.
struct Server {
  explicit Server(KubeApiDoubleOptions o = DoubleOptions()) : api(std::move(o)) { REQUIRE(api.Start().ok()); }
  KubeApiDouble api;
};

KubeConfig ConfigFor(const KubeApiDouble& api, const std::string& token = kOperatorToken) {
  KubeConfig c;
  c.server = api.url();
  c.token = token;
  c.ns = kNs;
  c.source = "test";
  return c;
}

std::unique_ptr<RestClient> ClientFor(const KubeApiDouble& api, RestClientOptions options = {},
                                      const std::string& token = kOperatorToken) {
  options.qps = 0;  // tests measure the server, not our bucket, unless they say so
  auto client = RestClient::Create(ConfigFor(api, token), std::move(options));
  REQUIRE(client.ok());
  return std::move(client).value();
}

nlohmann::json ConfigMap(const std::string& name, const std::string& value = "1") {
  return {{"apiVersion", "v1"},
          {"kind", "ConfigMap"},
          {"metadata", {{"name", name}, {"namespace", kNs}, {"labels", {{"app", "t"}}}}},
          {"data", {{"v", value}}}};
}

std::string Rv(const nlohmann::json& o) { return o["metadata"]["resourceVersion"].get<std::string>(); }

// Polls `pred` until it holds or `timeout` passes.
bool Eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 5000ms) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

// What an informer reported, for checks from the test thread.
struct Recorder {
  struct Change {
    std::string type, key, value;
  };
  std::mutex mu;
  std::vector<Change> changes;

  std::function<void(const std::string&, const nlohmann::json&, const nlohmann::json&)> Callback() {
    return [this](const std::string& type, const nlohmann::json& object, const nlohmann::json&) {
      std::lock_guard<std::mutex> lock(mu);
      std::string value = object.contains("data") && object["data"].contains("v") ? object["data"]["v"].get<std::string>() : "";
      changes.push_back({type, Informer::KeyOf(object), value});
    };
  }
  bool Saw(const std::string& type, const std::string& key, const std::string& value = "") {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& c : changes) {
      if (c.type == type && c.key == key && (value.empty() || c.value == value)) return true;
    }
    return false;
  }
  size_t Count(const std::string& type) {
    std::lock_guard<std::mutex> lock(mu);
    size_t n = 0;
    for (const auto& c : changes) n += c.type == type;
    return n;
  }
};

}  // namespace

// ---------------------------------------------------------------- REST client, no server

TEST_CASE("a config with unusable TLS material or URL is refused at creation", "[operator][kube]") {
  KubeConfig c;
  c.server = "https://127.0.0.1:6443";
  c.ca_pem = "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n";
  auto bad_ca = RestClient::Create(c);
  REQUIRE_FALSE(bad_ca.ok());
  CHECK(bad_ca.status().code() == StatusCode::kInvalidArgument);

  c.ca_pem.clear();
  c.client_cert_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  auto no_key = RestClient::Create(c);
  REQUIRE_FALSE(no_key.ok());
  CHECK(no_key.status().code() == StatusCode::kInvalidArgument);

  KubeConfig url;
  url.server = "ftp://example";
  CHECK(RestClient::Create(url).status().code() == StatusCode::kInvalidArgument);
  url.server = "";
  CHECK(RestClient::Create(url).status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("no reply from the server is code -1 Unavailable and is counted with code 0", "[operator][kube]") {
  KubeConfig c;
  c.server = "http://127.0.0.1:1";  // nothing listens on port 1
  std::vector<std::pair<std::string, int>> seen;
  RestClientOptions o;
  o.on_request = [&](const std::string& method, int code) { seen.push_back({method, code}); };
  auto client = RestClient::Create(c, o);
  REQUIRE(client.ok());
  auto got = (*client)->Get(ConfigMaps(), kNs, "x");
  CHECK(got.error.code == -1);
  CHECK(got.error.reason == "Unavailable");
  CHECK(got.status().code() == StatusCode::kUnavailable);
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == std::make_pair(std::string("GET"), 0));
  auto watched = (*client)->Watch(ConfigMaps(), kNs, {}, [](const WatchEvent&) { return true; });
  CHECK(watched.status().code() == StatusCode::kUnavailable);
}

TEST_CASE("a token file that cannot be read fails the request without sending it", "[operator][kube]") {
  KubeConfig c;
  c.server = "http://127.0.0.1:1";
  c.token_file = "/nonexistent/carapace/token";
  auto client = RestClient::Create(c);
  REQUIRE(client.ok());
  auto got = (*client)->Get(ConfigMaps(), kNs, "x");
  CHECK(got.status().code() == StatusCode::kUnavailable);
  CHECK_THAT(got.error.message, ContainsSubstring("/nonexistent/carapace/token"));
}

TEST_CASE("the client-side token bucket spaces requests beyond the burst", "[operator][kube]") {
  Server s;
  RestClientOptions o;
  auto config = ConfigFor(s.api);
  o.qps = 10;
  o.burst = 2;
  auto client = RestClient::Create(config, o);
  REQUIRE(client.ok());
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) (void)(*client)->Get(ConfigMaps(), kNs, "x");
  // Two from the burst, then three at 10/s: at least ~300 ms.
  CHECK(std::chrono::steady_clock::now() - start >= 250ms);
}

// ---------------------------------------------------------------- TLS

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl.
struct Pki {
  explicit Pki(const TempDir& dir) {
    auto run = [&](const std::string& script) {
      CommandResult r = RunCommand({"/bin/sh", "-c", "cd " + dir.path() + " && " + script});
      INFO(r.err);
      REQUIRE(r.exit_code == 0);
    };
    const std::string req = "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -batch ";
    for (const std::string ca : {"ca", "other-ca"}) {
      run(req + "-x509 -days 2 -keyout " + ca + ".key -out " + ca + ".crt -subj /CN=" + ca);
    }
    run("printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext && " + req +
        "-keyout server.key -out server.csr -subj /CN=kube-apiserver && "
        "openssl x509 -req -days 2 -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -extfile san.ext -out server.crt");
    run(req + "-keyout client.key -out client.csr -subj /CN=carapace-operator && "
              "openssl x509 -req -days 2 -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt");
    ca = ReadFile(dir.Sub("ca.crt"));
    other_ca = ReadFile(dir.Sub("other-ca.crt"));
    client_cert = ReadFile(dir.Sub("client.crt"));
    client_key = ReadFile(dir.Sub("client.key"));
    server_cert = dir.Sub("server.crt");
    server_key = dir.Sub("server.key");
    ca_file = dir.Sub("ca.crt");
  }
  std::string ca, other_ca, client_cert, client_key, server_cert, server_key, ca_file;
};

// An https server that demands a client certificate from the CA and answers every GET with
// a ConfigMap.
std::unique_ptr<web::http::experimental::listener::http_listener> TlsServer(const Pki& pki, int* port) {
  using web::http::experimental::listener::http_listener;
  using web::http::experimental::listener::http_listener_config;
  http_listener_config config;
  config.set_ssl_context_callback([&pki](boost::asio::ssl::context& ctx) {
    ctx.use_certificate_chain_file(pki.server_cert);
    ctx.use_private_key_file(pki.server_key, boost::asio::ssl::context::pem);
    ctx.load_verify_file(pki.ca_file);
    ctx.set_verify_mode(boost::asio::ssl::verify_peer | boost::asio::ssl::verify_fail_if_no_peer_cert);
  });
  std::mt19937 rng(std::random_device{}());
  for (int attempt = 0; attempt < 50; ++attempt) {
    const int p = 20000 + static_cast<int>(rng() % 40000);
    auto listener = std::make_unique<http_listener>("https://127.0.0.1:" + std::to_string(p), config);
    listener->support(web::http::methods::GET, [](web::http::http_request req) {
      const std::string body = R"({"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"tls"}})";
      req.reply(web::http::status_codes::OK, body, "application/json").wait();
    });
    try {
      listener->open().wait();
      *port = p;
      return listener;
    } catch (const std::exception&) {
      continue;
    }
  }
  return nullptr;
}

}  // namespace

TEST_CASE("TLS: the CA and client certificate are loaded from memory", "[operator][kube][tls]") {
  TempDir dir;
  Pki pki(dir);
  int port = 0;
  auto server = TlsServer(pki, &port);
  REQUIRE(server);
  KubeConfig c;
  c.server = "https://127.0.0.1:" + std::to_string(port);
  c.ca_pem = pki.ca;
  c.client_cert_pem = pki.client_cert;
  c.client_key_pem = pki.client_key;
  c.source = "test";
  RestClientOptions o;
  o.request_timeout_seconds = 5;

  SECTION("the cluster CA and the client certificate") {
    auto client = RestClient::Create(c, o);
    REQUIRE(client.ok());
    auto got = (*client)->Get(ConfigMaps(), kNs, "tls");
    INFO(got.error.message);
    REQUIRE(got.ok());
    CHECK(got.value["metadata"]["name"] == "tls");
  }
  SECTION("a server certificate from another CA is refused") {
    c.ca_pem = pki.other_ca;
    auto client = RestClient::Create(c, o);
    REQUIRE(client.ok());
    auto got = (*client)->Get(ConfigMaps(), kNs, "tls");
    CHECK(got.error.code == -1);
    CHECK(got.status().code() == StatusCode::kUnavailable);
  }
  SECTION("insecure-skip-tls-verify accepts any server certificate") {
    c.ca_pem.clear();
    c.insecure_skip_tls_verify = true;
    auto client = RestClient::Create(c, o);
    REQUIRE(client.ok());
    CHECK((*client)->Get(ConfigMaps(), kNs, "tls").ok());
  }
  SECTION("without a client certificate the server refuses the handshake") {
    c.client_cert_pem.clear();
    c.client_key_pem.clear();
    auto client = RestClient::Create(c, o);
    REQUIRE(client.ok());
    CHECK((*client)->Get(ConfigMaps(), kNs, "tls").error.code == -1);
  }
  server->close().wait();
}

// ---------------------------------------------------------------- REST client, CRUD

TEST_CASE("a create/get/update/delete round trip keeps the API's errors", "[operator][kube]") {
  Server s;
  auto client = ClientFor(s.api);

  auto missing = client->Get(ConfigMaps(), kNs, "a");
  CHECK(missing.error.code == 404);
  CHECK(missing.error.reason == "NotFound");
  CHECK(missing.status().code() == StatusCode::kNotFound);

  auto created = client->Create(ConfigMaps(), kNs, ConfigMap("a"));
  REQUIRE(created.ok());
  CHECK(created.value["metadata"]["name"] == "a");
  CHECK_FALSE(Rv(created.value).empty());

  auto again = client->Create(ConfigMaps(), kNs, ConfigMap("a"));
  CHECK(again.error.code == 409);
  CHECK(again.error.reason == "AlreadyExists");
  CHECK(again.status().code() == StatusCode::kAlreadyExists);

  auto got = client->Get(ConfigMaps(), kNs, "a");
  REQUIRE(got.ok());
  CHECK(got.value["data"]["v"] == "1");

  nlohmann::json changed = got.value;
  changed["data"]["v"] = "2";
  auto updated = client->Update(ConfigMaps(), kNs, changed);
  REQUIRE(updated.ok());
  CHECK(updated.value["data"]["v"] == "2");
  CHECK(Rv(updated.value) != Rv(got.value));

  // The same stale copy again: its resourceVersion is gone.
  changed["data"]["v"] = "3";
  auto stale = client->Update(ConfigMaps(), kNs, changed);
  CHECK(stale.error.code == 409);
  CHECK(stale.error.reason == "Conflict");
  CHECK(stale.status().code() == StatusCode::kFailedPrecondition);
  CHECK(s.api.Get("v1", "configmaps", kNs, "a")->at("data")["v"] == "2");

  auto deleted = client->Delete(ConfigMaps(), kNs, "a", Propagation::kOrphan);
  CHECK(deleted.ok());
  CHECK_FALSE(s.api.Get("v1", "configmaps", kNs, "a").ok());
  CHECK(client->Delete(ConfigMaps(), kNs, "a").error.code == 404);
}

TEST_CASE("status is written through the status subresource only", "[operator][kube]") {
  Server s;
  // As an administrator: the operator's role writes the status of AgentRuns only.
  auto client = ClientFor(s.api, {}, "cluster-admin-token");
  nlohmann::json sts = nlohmann::json::parse(R"({
    "apiVersion": "apps/v1", "kind": "StatefulSet",
    "metadata": {"name": "w", "namespace": "agents"},
    "spec": {"replicas": 1, "serviceName": "w", "selector": {"matchLabels": {"app": "w"}},
             "template": {"metadata": {"labels": {"app": "w"}},
                          "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})");
  auto created = client->Create(StatefulSets(), kNs, sts);
  REQUIRE(created.ok());

  nlohmann::json with_status = created.value;
  with_status["status"] = {{"replicas", 1}, {"readyReplicas", 1}};
  auto updated = client->UpdateStatus(StatefulSets(), kNs, with_status);
  INFO(updated.error.reason << ": " << updated.error.message);
  REQUIRE(updated.ok());
  CHECK(updated.value["status"]["readyReplicas"] == 1);

  // A plain update does not touch status.
  nlohmann::json spec_only = updated.value;
  spec_only["status"]["readyReplicas"] = 0;
  spec_only["spec"]["replicas"] = 2;
  auto plain = client->Update(StatefulSets(), kNs, spec_only);
  REQUIRE(plain.ok());
  CHECK(plain.value["spec"]["replicas"] == 2);
  CHECK(plain.value["status"]["readyReplicas"] == 1);

  // And a status patch goes to the subresource.
  auto patched = client->Patch(StatefulSets(), kNs, "w", {{"status", {{"readyReplicas", 0}}}}, PatchType::kMerge, "status");
  REQUIRE(patched.ok());
  CHECK(patched.value["status"]["readyReplicas"] == 0);
}

TEST_CASE("merge and JSON patches change only what they name", "[operator][kube]") {
  Server s;
  auto client = ClientFor(s.api);
  nlohmann::json cm = ConfigMap("p");
  cm["data"]["keep"] = "yes";
  REQUIRE(client->Create(ConfigMaps(), kNs, cm).ok());

  auto merged = client->Patch(ConfigMaps(), kNs, "p", {{"data", {{"v", "9"}, {"new", "n"}}}});
  REQUIRE(merged.ok());
  CHECK(merged.value["data"]["v"] == "9");
  CHECK(merged.value["data"]["new"] == "n");
  CHECK(merged.value["data"]["keep"] == "yes");

  auto removed = client->Patch(ConfigMaps(), kNs, "p", {{"data", {{"new", nullptr}}}});
  REQUIRE(removed.ok());
  CHECK_FALSE(removed.value["data"].contains("new"));

  auto json_patch = client->Patch(ConfigMaps(), kNs, "p",
                                  nlohmann::json::array({{{"op", "replace"}, {"path", "/data/v"}, {"value", "10"}}}),
                                  PatchType::kJson);
  REQUIRE(json_patch.ok());
  CHECK(json_patch.value["data"]["v"] == "10");

  CHECK(client->Patch(ConfigMaps(), kNs, "absent", {{"data", {{"v", "1"}}}}).error.code == 404);
}

TEST_CASE("ListAll joins every page of a paged list", "[operator][kube]") {
  Server s;
  constexpr int kObjects = 1203;
  for (int i = 0; i < kObjects; ++i) REQUIRE(s.api.Create("v1", "configmaps", kNs, ConfigMap("cm-" + std::to_string(i))).ok());
  auto client = ClientFor(s.api);
  s.api.ResetCounters();
  auto all = client->ListAll(ConfigMaps(), kNs);
  REQUIRE(all.ok());
  CHECK(all.value["items"].size() == kObjects);
  CHECK(s.api.Requests("GET") == 3);  // pages of 500
  CHECK_FALSE(all.value["metadata"].value("resourceVersion", "").empty());
  CHECK_FALSE(all.value["metadata"].contains("continue"));

  ListOptions page;
  page.limit = 100;
  auto first = client->List(ConfigMaps(), kNs, page);
  REQUIRE(first.ok());
  CHECK(first.value["items"].size() == 100);
  CHECK_FALSE(first.value["metadata"].value("continue", "").empty());

  ListOptions selected;
  selected.label_selector = "app=none";
  auto none = client->ListAll(ConfigMaps(), kNs, selected);
  REQUIRE(none.ok());
  CHECK(none.value["items"].empty());
}

// ---------------------------------------------------------------- faults and RBAC

TEST_CASE("a 429 on a read is retried after Retry-After; on a write it is returned", "[operator][kube]") {
  Server s;
  std::mutex mu;
  std::vector<int> codes;
  RestClientOptions o;
  o.on_request = [&](const std::string&, int code) {
    std::lock_guard<std::mutex> lock(mu);
    codes.push_back(code);
  };
  auto client = ClientFor(s.api, o);
  REQUIRE(s.api.Create("v1", "configmaps", kNs, ConfigMap("r")).ok());

  s.api.FailNext(429, 2, "GET", "/configmaps/r");
  const auto start = std::chrono::steady_clock::now();
  auto got = client->Get(ConfigMaps(), kNs, "r");
  CHECK(got.ok());
  CHECK(std::chrono::steady_clock::now() - start >= 1900ms);  // Retry-After: 1, twice
  {
    std::lock_guard<std::mutex> lock(mu);
    CHECK(codes == std::vector<int>{429, 429, 200});
  }

  s.api.FailNext(429, 4, "GET", "/configmaps/r");
  auto exhausted = client->Get(ConfigMaps(), kNs, "r");
  CHECK(exhausted.error.code == 429);  // one try and three retries, then the error
  CHECK(exhausted.status().code() == StatusCode::kUnavailable);

  s.api.FailNext(429, 1, "POST");
  const int64_t posts = s.api.Requests("POST");
  auto created = client->Create(ConfigMaps(), kNs, ConfigMap("w"));
  CHECK(created.error.code == 429);
  CHECK(s.api.Requests("POST") == posts + 1);  // a write is never retried
  CHECK_FALSE(s.api.Get("v1", "configmaps", kNs, "w").ok());
}

TEST_CASE("a 500 is surfaced as unavailable and not retried", "[operator][kube]") {
  Server s;
  auto client = ClientFor(s.api);
  s.api.FailNext(500, 1, "GET");
  s.api.ResetCounters();
  auto got = client->Get(ConfigMaps(), kNs, "x");
  CHECK(got.error.code == 500);
  CHECK(got.status().code() == StatusCode::kUnavailable);
  CHECK(s.api.Requests("GET") == 1);
  CHECK(client->Get(ConfigMaps(), kNs, "x").error.code == 404);  // the fault was one request
}

TEST_CASE("RBAC refusals surface as permission denied with the server's reason", "[operator][kube]") {
  Server s;
  auto client = ClientFor(s.api);
  // The operator's role may get secrets by name but never list them.
  auto listed = client->List(Secrets(), kNs);
  CHECK(listed.error.code == 403);
  CHECK(listed.error.reason == "Forbidden");
  CHECK(listed.status().code() == StatusCode::kPermissionDenied);
  CHECK_THAT(listed.status().message(), ContainsSubstring("Forbidden"));
  CHECK_THAT(listed.error.message, ContainsSubstring("secrets"));
  CHECK(client->Get(Secrets(), kNs, "s").error.code == 404);  // allowed, just absent
}

TEST_CASE("a rotated token file is picked up by the next request", "[operator][kube]") {
  Server s;
  TempDir dir;
  const std::string path = dir.Sub("token");
  std::ofstream(path) << "someone-else\n";
  KubeConfig c = ConfigFor(s.api, "");
  c.token.clear();
  c.token_file = path;
  RestClientOptions unlimited;
  unlimited.qps = 0;
  auto client = RestClient::Create(c, unlimited);
  REQUIRE(client.ok());
  (void)(*client)->Get(ConfigMaps(), kNs, "x");
  CHECK(s.api.Requests("GET", true) == 0);
  CHECK(s.api.Requests("GET", false) == 1);

  // Rotated as kubelet does: a new file swapped in.
  std::ofstream(dir.Sub("token.new")) << kOperatorToken << "\n";
  REQUIRE(std::rename(dir.Sub("token.new").c_str(), path.c_str()) == 0);
  (void)(*client)->Get(ConfigMaps(), kNs, "x");
  CHECK(s.api.Requests("GET", true) == 1);
}

// ---------------------------------------------------------------- watches

TEST_CASE("a watch delivers ADDED then MODIFIED then DELETED from a resourceVersion", "[operator][kube]") {
  Server s;
  auto client = ClientFor(s.api);
  auto listed = client->List(ConfigMaps(), kNs);
  REQUIRE(listed.ok());
  ListOptions o;
  o.resource_version = listed.value["metadata"]["resourceVersion"];
  o.timeout_seconds = 30;

  std::vector<std::string> types;
  std::thread watcher([&] {
    auto r = client->Watch(ConfigMaps(), kNs, o, [&](const WatchEvent& e) {
      types.push_back(e.type + ":" + e.object["metadata"].value("name", ""));
      return e.type != "DELETED";
    });
    CHECK(r.ok());
    CHECK(r.value);  // ended by the callback
  });
  REQUIRE(s.api.Create("v1", "configmaps", kNs, ConfigMap("w1")).ok());
  auto obj = s.api.Get("v1", "configmaps", kNs, "w1");
  REQUIRE(obj.ok());
  (*obj)["data"]["v"] = "2";
  REQUIRE(s.api.Update("v1", "configmaps", kNs, *obj).ok());
  REQUIRE(s.api.Delete("v1", "configmaps", kNs, "w1").ok());
  watcher.join();
  CHECK(types == std::vector<std::string>{"ADDED:w1", "MODIFIED:w1", "DELETED:w1"});
}

TEST_CASE("a watch from a compacted resourceVersion ends with 410", "[operator][kube]") {
  Server s;
  auto client = ClientFor(s.api);
  auto listed = client->List(ConfigMaps(), kNs);
  REQUIRE(listed.ok());
  REQUIRE(s.api.Create("v1", "configmaps", kNs, ConfigMap("x")).ok());
  s.api.ExpireHistory();
  ListOptions o;
  o.resource_version = listed.value["metadata"]["resourceVersion"];
  o.timeout_seconds = 5;
  bool called = false;
  auto r = client->Watch(ConfigMaps(), kNs, o, [&](const WatchEvent&) {
    called = true;
    return true;
  });
  CHECK(r.error.code == 410);
  CHECK(r.status().code() == StatusCode::kFailedPrecondition);
  CHECK_THAT(r.status().message(), ContainsSubstring("gone"));
  CHECK_FALSE(called);
}

TEST_CASE("a quiet watch outlives the request timeout until the server ends it", "[operator][kube]") {
  Server s;
  RestClientOptions o;
  o.request_timeout_seconds = 1;
  auto client = ClientFor(s.api, o);
  ListOptions w;
  w.timeout_seconds = 3;  // no bookmarks asked for: nothing at all comes for 3 s
  const auto start = std::chrono::steady_clock::now();
  auto r = client->Watch(ConfigMaps(), kNs, w, [](const WatchEvent&) { return true; });
  CHECK(r.ok());
  CHECK_FALSE(r.value);  // the server ended it
  CHECK(std::chrono::steady_clock::now() - start >= 2500ms);
}

TEST_CASE("cancelling ends open watches promptly: one at a time or all", "[operator][kube]") {
  Server s;
  auto client = ClientFor(s.api);
  ListOptions o;
  o.timeout_seconds = 300;
  WatchCanceller mine;
  std::atomic<bool> mine_done{false}, other_done{false};
  std::thread a([&] {
    CHECK(client->Watch(ConfigMaps(), kNs, o, [](const WatchEvent&) { return true; }, &mine).ok());
    mine_done = true;
  });
  std::thread b([&] {
    CHECK(client->Watch(ConfigMaps(), kNs, o, [](const WatchEvent&) { return true; }).ok());
    other_done = true;
  });
  REQUIRE(Eventually([&] { return s.api.Requests("WATCH") == 2; }));
  std::this_thread::sleep_for(100ms);
  mine.Cancel();
  CHECK(Eventually([&] { return mine_done.load(); }, 2000ms));
  std::this_thread::sleep_for(200ms);
  CHECK_FALSE(other_done.load());  // a canceller ends only its own watch
  client->CancelWatches();
  CHECK(Eventually([&] { return other_done.load(); }, 2000ms));
  a.join();
  b.join();
  // A cancelled canceller ends a later watch at once: a stop racing a reconnect.
  auto later = client->Watch(ConfigMaps(), kNs, o, [](const WatchEvent&) { return true; }, &mine);
  CHECK(later.ok());
}

// ---------------------------------------------------------------- informers

TEST_CASE("an informer fills its cache and follows changes", "[operator][kube]") {
  Server s;
  for (int i = 0; i < 3; ++i) REQUIRE(s.api.Create("v1", "configmaps", kNs, ConfigMap("c" + std::to_string(i))).ok());
  nlohmann::json elsewhere = ConfigMap("elsewhere");
  elsewhere["metadata"]["namespace"] = "other";
  REQUIRE(s.api.Create("v1", "configmaps", "other", elsewhere).ok());
  auto client = ClientFor(s.api);
  Recorder rec;
  InformerOptions o;
  o.ns = kNs;
  o.on_change = rec.Callback();
  Informer informer(client.get(), ConfigMaps(), o);
  informer.Start();
  REQUIRE(informer.WaitForSync(5000ms));
  CHECK(informer.Size() == 3);
  CHECK(informer.Lists() == 1);
  CHECK(rec.Count("ADDED") == 3);
  REQUIRE(informer.Get("agents/c1").has_value());
  CHECK_FALSE(informer.Get("other/elsewhere").has_value());

  REQUIRE(s.api.Create("v1", "configmaps", kNs, ConfigMap("c3")).ok());
  auto c1 = *s.api.Get("v1", "configmaps", kNs, "c1");
  c1["data"]["v"] = "changed";
  REQUIRE(s.api.Update("v1", "configmaps", kNs, c1).ok());
  REQUIRE(s.api.Delete("v1", "configmaps", kNs, "c0").ok());
  CHECK(Eventually([&] { return rec.Saw("DELETED", "agents/c0"); }));
  CHECK(rec.Saw("ADDED", "agents/c3"));
  CHECK(rec.Saw("MODIFIED", "agents/c1", "changed"));
  CHECK(informer.Size() == 3);
  CHECK((*informer.Get("agents/c1"))["data"]["v"] == "changed");
  CHECK_FALSE(informer.Get("agents/c0").has_value());
}

TEST_CASE("informers sharing a client stop one at a time and promptly", "[operator][kube]") {
  Server s;
  auto client = ClientFor(s.api);
  InformerOptions o;
  o.ns = kNs;
  Informer a(client.get(), ConfigMaps(), o);
  Informer b(client.get(), ConfigMaps(), o);
  a.Start();
  b.Start();
  REQUIRE(a.WaitForSync(5000ms));
  REQUIRE(b.WaitForSync(5000ms));
  REQUIRE(Eventually([&] { return s.api.Requests("WATCH") == 2; }));
  const auto start = std::chrono::steady_clock::now();
  a.Stop();
  // Its watch would run 5 to 10 minutes: Stop cancels it rather than waiting it out.
  CHECK(std::chrono::steady_clock::now() - start < 60s);
  REQUIRE(s.api.Create("v1", "configmaps", kNs, ConfigMap("after")).ok());
  CHECK(Eventually([&] { return b.Get("agents/after").has_value(); }));
  CHECK_FALSE(a.Get("agents/after").has_value());
}

TEST_CASE("an informer resumes a dropped watch without missing a change made meanwhile", "[operator][kube]") {
  Server s;
  REQUIRE(s.api.Create("v1", "configmaps", kNs, ConfigMap("d")).ok());
  auto client = ClientFor(s.api);
  Recorder rec;
  InformerOptions o;
  o.ns = kNs;
  o.on_change = rec.Callback();
  Informer informer(client.get(), ConfigMaps(), o);
  informer.Start();
  REQUIRE(informer.WaitForSync(5000ms));
  REQUIRE(Eventually([&] { return s.api.Requests("WATCH") == 1; }));

  // The next two reconnects fail, so the change lands while no watch is open.
  s.api.FailNext(500, 2, "GET", "/configmaps");
  s.api.DropWatches();
  auto d = *s.api.Get("v1", "configmaps", kNs, "d");
  d["data"]["v"] = "while-away";
  REQUIRE(s.api.Update("v1", "configmaps", kNs, d).ok());

  CHECK(Eventually([&] { return rec.Saw("MODIFIED", "agents/d", "while-away"); }));
  CHECK(informer.Lists() == 1);  // resumed from its resourceVersion, no relist
  CHECK(s.api.Requests("WATCH") >= 2);
}

TEST_CASE("after 410 Gone an informer relists and reports what changed and what was deleted", "[operator][kube]") {
  Server s;
  for (const char* name : {"keep", "change", "remove"}) REQUIRE(s.api.Create("v1", "configmaps", kNs, ConfigMap(name)).ok());
  auto client = ClientFor(s.api);
  Recorder rec;
  InformerOptions o;
  o.ns = kNs;
  o.on_change = rec.Callback();
  Informer informer(client.get(), ConfigMaps(), o);
  informer.Start();
  REQUIRE(informer.WaitForSync(5000ms));
  REQUIRE(Eventually([&] { return s.api.Requests("WATCH") == 1; }));

  s.api.FailNext(500, 2, "GET", "/configmaps");
  s.api.DropWatches();
  REQUIRE(s.api.Delete("v1", "configmaps", kNs, "remove").ok());
  auto c = *s.api.Get("v1", "configmaps", kNs, "change");
  c["data"]["v"] = "2";
  REQUIRE(s.api.Update("v1", "configmaps", kNs, c).ok());
  REQUIRE(s.api.Create("v1", "configmaps", kNs, ConfigMap("new")).ok());
  s.api.ExpireHistory();

  REQUIRE(Eventually([&] { return informer.Lists() == 2; }));
  CHECK(Eventually([&] { return rec.Saw("DELETED", "agents/remove"); }));
  CHECK(rec.Saw("MODIFIED", "agents/change", "2"));
  CHECK(rec.Saw("ADDED", "agents/new"));
  CHECK(rec.Count("MODIFIED") == 1);  // "keep" did not change: not reported
  CHECK(informer.Size() == 3);
  CHECK_FALSE(informer.Get("agents/remove").has_value());

  // And it watches again from the relist.
  REQUIRE(s.api.Create("v1", "configmaps", kNs, ConfigMap("later")).ok());
  CHECK(Eventually([&] { return informer.Get("agents/later").has_value(); }));
}

TEST_CASE("a deletion the process recorded itself still reaches the handlers", "[operator][kube]") {
  Server s;
  REQUIRE(s.api.Create("v1", "configmaps", kNs, ConfigMap("mine")).ok());
  auto client = ClientFor(s.api);
  Recorder rec;
  InformerOptions o;
  o.ns = kNs;
  o.on_change = rec.Callback();
  Informer informer(client.get(), ConfigMaps(), o);
  informer.Start();
  REQUIRE(informer.WaitForSync(5000ms));
  auto cached = informer.Get("agents/mine");
  REQUIRE(cached.has_value());
  // The reconciler deletes it and tells the cache at once, before the watch does.
  REQUIRE(client->Delete(ConfigMaps(), kNs, "mine").ok());
  informer.Observe(*cached, /*deleted=*/true);
  CHECK_FALSE(informer.Get("agents/mine").has_value());
  CHECK(Eventually([&] { return rec.Saw("DELETED", "agents/mine"); }));
}

TEST_CASE("a write's reply older than what the watch reported never brings back a deleted object", "[operator][kube]") {
  Server s;
  REQUIRE(s.api.Create("v1", "configmaps", kNs, ConfigMap("gone")).ok());
  auto client = ClientFor(s.api);
  Recorder rec;
  InformerOptions o;
  o.ns = kNs;
  o.on_change = rec.Callback();
  Informer informer(client.get(), ConfigMaps(), o);
  informer.Start();
  REQUIRE(informer.WaitForSync(5000ms));
  auto cm = client->Get(ConfigMaps(), kNs, "gone");
  REQUIRE(cm.ok());
  cm.value["data"] = {{"k", "changed"}};
  auto reply = client->Update(ConfigMaps(), kNs, cm.value);
  REQUIRE(reply.ok());
  // Someone deletes it, and the watch reports that before the writer files its reply.
  REQUIRE(client->Delete(ConfigMaps(), kNs, "gone").ok());
  REQUIRE(Eventually([&] { return rec.Saw("DELETED", "agents/gone"); }));
  informer.Observe(reply.value);
  CHECK_FALSE(informer.Get("agents/gone").has_value());
}

// ---------------------------------------------------------------- leader election

namespace {

constexpr const char* kLeaseNs = "carapace-system";

LeaderElectionOptions Fast(const std::string& identity, std::atomic<int>* started, std::atomic<int>* stopped) {
  LeaderElectionOptions o;
  o.ns = kLeaseNs;
  o.name = "carapace-operator";
  o.identity = identity;
  o.lease_duration = 1500ms;
  o.renew_deadline = 1000ms;
  o.retry_period = 200ms;
  o.on_started_leading = [started] { ++*started; };
  o.on_stopped_leading = [stopped] { ++*stopped; };
  return o;
}

}  // namespace

TEST_CASE("two electors on one Lease: exactly one leads", "[operator][kube][leader]") {
  Server s;
  auto client_a = ClientFor(s.api);
  auto client_b = ClientFor(s.api);
  std::atomic<int> started_a{0}, stopped_a{0}, started_b{0}, stopped_b{0};
  LeaderElector a(client_a.get(), Fast("replica-a", &started_a, &stopped_a));
  LeaderElector b(client_b.get(), Fast("replica-b", &started_b, &stopped_b));
  a.Start();
  b.Start();
  REQUIRE(Eventually([&] { return a.IsLeader() || b.IsLeader(); }));
  // Over several lease periods, never both and never a change of leader.
  const bool a_leads = a.IsLeader();
  for (int i = 0; i < 30; ++i) {
    CHECK(a.IsLeader() != b.IsLeader());
    std::this_thread::sleep_for(100ms);
  }
  CHECK(a.IsLeader() == a_leads);
  CHECK(started_a + started_b == 1);
  auto lease = s.api.Get("coordination.k8s.io/v1", "leases", kLeaseNs, "carapace-operator");
  REQUIRE(lease.ok());
  CHECK((*lease)["spec"]["holderIdentity"] == (a_leads ? "replica-a" : "replica-b"));
  CHECK((*lease)["spec"]["leaseDurationSeconds"] == 2);
  const std::string renew = (*lease)["spec"]["renewTime"];
  CHECK(renew.size() == std::string("2006-01-02T15:04:05.000000Z").size());
  CHECK(renew.back() == 'Z');
  a.Stop();
  b.Stop();
}

TEST_CASE("a leader that stops releases the Lease and the other takes over at once", "[operator][kube][leader]") {
  Server s;
  auto client_a = ClientFor(s.api);
  auto client_b = ClientFor(s.api);
  std::atomic<int> started_a{0}, stopped_a{0}, started_b{0}, stopped_b{0};
  auto oa = Fast("replica-a", &started_a, &stopped_a);
  auto ob = Fast("replica-b", &started_b, &stopped_b);
  // Long leases: a takeover within a second can only come from the release.
  oa.lease_duration = ob.lease_duration = 15000ms;
  oa.renew_deadline = ob.renew_deadline = 10000ms;
  LeaderElector a(client_a.get(), oa);
  a.Start();
  REQUIRE(Eventually([&] { return a.IsLeader(); }));
  LeaderElector b(client_b.get(), ob);
  b.Start();
  std::this_thread::sleep_for(500ms);
  CHECK_FALSE(b.IsLeader());

  const auto start = std::chrono::steady_clock::now();
  a.Stop();
  CHECK_FALSE(a.IsLeader());
  CHECK(stopped_a == 0);  // a stop is not a lost lease
  REQUIRE(Eventually([&] { return b.IsLeader(); }, 3000ms));
  // Well inside the 15 s lease: only the release explains it (generous for loaded machines).
  CHECK(std::chrono::steady_clock::now() - start < 10000ms);
  auto lease = s.api.Get("coordination.k8s.io/v1", "leases", kLeaseNs, "carapace-operator");
  REQUIRE(lease.ok());
  CHECK((*lease)["spec"]["holderIdentity"] == "replica-b");
  CHECK((*lease)["spec"]["leaseTransitions"].get<int>() >= 1);
  b.Stop();
}

TEST_CASE("when a leader dies without releasing the other takes over after the lease expires",
          "[operator][kube][leader]") {
  Server s;
  auto client_a = ClientFor(s.api);
  auto client_b = ClientFor(s.api);
  std::atomic<int> started_a{0}, stopped_a{0}, started_b{0}, stopped_b{0};
  LeaderElector a(client_a.get(), Fast("replica-a", &started_a, &stopped_a));
  a.Start();
  REQUIRE(Eventually([&] { return a.IsLeader(); }));
  LeaderElector b(client_b.get(), Fast("replica-b", &started_b, &stopped_b));
  b.Start();
  std::this_thread::sleep_for(600ms);
  CHECK_FALSE(b.IsLeader());

  const auto start = std::chrono::steady_clock::now();
  a.Abandon();
  CHECK(stopped_a == 0);  // a crash calls nothing
  auto lease = s.api.Get("coordination.k8s.io/v1", "leases", kLeaseNs, "carapace-operator");
  REQUIRE(lease.ok());
  CHECK((*lease)["spec"]["holderIdentity"] == "replica-a");  // not released
  REQUIRE(Eventually([&] { return b.IsLeader(); }, 6000ms));
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(took >= 1000ms);  // not before the lease ran out
  CHECK(took < 4000ms);
  b.Stop();
}

TEST_CASE("a leader that cannot renew before the deadline stops leading", "[operator][kube][leader]") {
  Server s;
  auto client = ClientFor(s.api);
  std::atomic<int> started{0}, stopped{0};
  LeaderElector a(client.get(), Fast("replica-a", &started, &stopped));
  a.Start();
  REQUIRE(Eventually([&] { return a.IsLeader(); }));
  s.api.FailNext(500, 1000, "", "/leases/");
  CHECK(Eventually([&] { return stopped.load() == 1; }, 3000ms));
  CHECK_FALSE(a.IsLeader());
  a.Stop();
  CHECK(stopped == 1);
  CHECK(started == 1);  // it does not try again: the operator exits
}

namespace {

// An "API server" on loopback that answers every request with `head` and then streams
// `filler` bytes without end (until the client hangs up): a peer that sends too much.
class FloodingServer {
 public:
  FloodingServer(std::string head, char filler) : head_(std::move(head)), filler_(filler) {
    fd_ = carapace::testing::ListenOnLoopbackPort(&port_, 4);
    REQUIRE(fd_ >= 0);
    thread_ = std::thread([this] {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      (void)!recv(c, buf, sizeof buf, 0);
      (void)!send(c, head_.data(), head_.size(), MSG_NOSIGNAL);
      const std::string chunk(1 << 16, filler_);
      while (!stop_ && send(c, chunk.data(), chunk.size(), MSG_NOSIGNAL) > 0) sent_ += chunk.size();
      close(c);
    });
  }
  ~FloodingServer() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  int port() const { return port_; }
  size_t sent() const { return sent_; }

 private:
  std::string head_;
  char filler_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> sent_{0};
  std::thread thread_;
};

std::unique_ptr<RestClient> ClientAt(int port) {
  KubeConfig c;
  c.server = "http://127.0.0.1:" + std::to_string(port);
  c.token = "t";
  c.ns = kNs;
  c.source = "test";
  RestClientOptions o;
  o.qps = 0;
  o.max_read_retries = 0;
  auto client = RestClient::Create(c, o);
  REQUIRE(client.ok());
  return std::move(client).value();
}

}  // namespace

TEST_CASE("a watch event over the limit ends the watch with an error, holding no more than the limit", "[kube][limits]") {
  FloodingServer server("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"type\":\"ADDED\",\"object\":\"",
                        'a');
  auto client = ClientAt(server.port());
  int events = 0;
  auto r = client->Watch(ConfigMaps(), kNs, {}, [&](const WatchEvent&) {
    ++events;
    return true;
  });
  CHECK_FALSE(r.ok());
  CHECK_THAT(r.error.message, ContainsSubstring("an event over the limit"));
  CHECK(events == 0);
}

TEST_CASE("an API reply over the limit is refused, not read to its end", "[kube][limits]") {
  FloodingServer server("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n[", '1');
  auto client = ClientAt(server.port());
  auto r = client->Get(ConfigMaps(), kNs, "x");
  CHECK_FALSE(r.ok());
  CHECK_THAT(r.error.message, ContainsSubstring("over the limit"));
}
