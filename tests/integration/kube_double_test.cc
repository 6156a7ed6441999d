// The Kubernetes API double proven against the real kubectl, and its REST semantics
// (concurrency, generations, status, patches, paging, selectors, watches, GC, RBAC, faults).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "common/manifest.h"
#include "tests/support/child_process.h"
#include "tests/support/kube_api_double.h"
#include "tests/support/repo_files.h"

namespace {

using carapace::testing::ChildProcess;
using carapace::testing::CommandResult;
using carapace::testing::KubeApiDouble;
using carapace::testing::KubeApiDoubleOptions;
using carapace::testing::LoadYamlAsJson;
using carapace::testing::ReadText;
using carapace::testing::TempDir;
using nlohmann::json;

const std::string kSource = CARAPACE_SOURCE_DIR;
const std::string kOperatorToken = "carapace-operator-token";
const std::string kAgentRuns = "/apis/carapace.dev/v1alpha1/namespaces/default/agentruns";
const std::string kConfigMaps = "/api/v1/namespaces/default/configmaps";
const std::string kStatefulSets = "/apis/apps/v1/namespaces/default/statefulsets";

// ---- A raw HTTP/1.1 client, so the tests see exactly what goes over the wire ----

int Connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  return fd;
}

void SendText(int fd, const std::string& text) {
  REQUIRE(::send(fd, text.data(), text.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(text.size()));
}

std::string RequestText(const std::string& method, const std::string& path, const std::string& body,
                        const std::string& content_type, const std::string& token) {
  std::string text = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n";
  if (!token.empty()) text += "Authorization: Bearer " + token + "\r\n";
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    text += "Content-Type: " + content_type + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  return text + "Connection: close\r\n\r\n" + body;
}

// Reads and decodes a chunked or sized HTTP body as it arrives.
class ReplyReader {
 public:
  explicit ReplyReader(int fd) : fd_(fd) {}

  // Reads the status line and headers. False on a closed connection or timeout.
  bool ReadHead(int* code, std::map<std::string, std::string>* headers) {
    size_t end;
    while ((end = raw_.find("\r\n\r\n")) == std::string::npos) {
      if (!Receive(10000)) return false;
    }
    std::istringstream head(raw_.substr(0, end));
    raw_.erase(0, end + 4);
    std::string line;
    std::getline(head, line);
    *code = std::atoi(line.substr(9, 3).c_str());
    while (std::getline(head, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      (*headers)[name] = line.substr(line.find_first_not_of(' ', colon + 1));
    }
    chunked_ = (*headers)["transfer-encoding"] == "chunked";
    if (headers->count("content-length")) remaining_ = std::stoul((*headers)["content-length"]);
    return true;
  }

  // The whole body (waits for its end).
  std::string ReadBody() {
    std::string body;
    while (!ended_) {
      DecodeAvailable(&body);
      if (!ended_ && !Receive(10000)) break;
    }
    DecodeAvailable(&body);
    return body;
  }

  // The next newline-terminated line of the body, waiting up to `timeout_ms`.
  std::optional<std::string> NextLine(int timeout_ms) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (true) {
      DecodeAvailable(&decoded_);
      size_t newline = decoded_.find('\n');
      if (newline != std::string::npos) {
        std::string line = decoded_.substr(0, newline);
        decoded_.erase(0, newline + 1);
        return line;
      }
      if (ended_ || closed_) return std::nullopt;
      int left = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
      if (left <= 0 || !Receive(left)) return std::nullopt;
    }
  }

  bool ended() const { return ended_; }    // the body ended as HTTP says it should
  bool closed() const { return closed_; }  // the connection closed (mid-body when !ended)

 private:
  bool Receive(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[16384];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      closed_ = true;
      return false;
    }
    raw_.append(buf, static_cast<size_t>(n));
    return true;
  }

  void DecodeAvailable(std::string* out) {
    if (!chunked_) {
      size_t take = std::min(remaining_, raw_.size());
      out->append(raw_, 0, take);
      raw_.erase(0, take);
      remaining_ -= take;
      if (remaining_ == 0) ended_ = true;
      return;
    }
    while (!ended_) {
      size_t line_end = raw_.find("\r\n");
      if (line_end == std::string::npos) return;
      size_t size = std::stoul(raw_.substr(0, line_end), nullptr, 16);
      if (size == 0) {
        ended_ = raw_.size() >= line_end + 4;
        return;
      }
      if (raw_.size() < line_end + 2 + size + 2) return;
      out->append(raw_, line_end + 2, size);
      raw_.erase(0, line_end + 2 + size + 2);
    }
  }

  int fd_;
  std::string raw_, decoded_;
  bool chunked_ = false, ended_ = false, closed_ = false;
  size_t remaining_ = 0;
};

struct HttpReply {
  int code = 0;
  std::map<std::string, std::string> headers;
  std::string body;
  json Json() const { return json::parse(body, nullptr, false); }
};

HttpReply Http(int port, const std::string& method, const std::string& path, const std::string& body = "",
               const std::string& content_type = "application/json", const std::string& token = "") {
  int fd = Connect(port);
  SendText(fd, RequestText(method, path, body, content_type, token));
  HttpReply reply;
  ReplyReader reader(fd);
  if (reader.ReadHead(&reply.code, &reply.headers)) reply.body = reader.ReadBody();
  ::close(fd);
  return reply;
}

// A watch request left open: events are read one line at a time.
class WatchStream {
 public:
  WatchStream(int port, const std::string& path, const std::string& token = "") : fd_(Connect(port)), reader_(fd_) {
    SendText(fd_, RequestText("GET", path, "", "", token));
    REQUIRE(reader_.ReadHead(&code_, &headers_));
  }
  ~WatchStream() { ::close(fd_); }
  int code() const { return code_; }
  std::optional<json> Next(int timeout_ms = 5000) {
    auto line = reader_.NextLine(timeout_ms);
    if (!line) return std::nullopt;
    return json::parse(*line, nullptr, false);
  }
  // The next event that is not a BOOKMARK.
  std::optional<json> NextChange(int timeout_ms = 5000) {
    while (auto event = Next(timeout_ms)) {
      if ((*event)["type"] != "BOOKMARK") return event;
    }
    return std::nullopt;
  }
  bool ended() const { return reader_.ended(); }
  bool closed() const { return reader_.closed(); }

 private:
  int fd_;
  ReplyReader reader_;
  int code_ = 0;
  std::map<std::string, std::string> headers_;
};

// ---- Fixture ----

KubeApiDoubleOptions TestOptions() {
  KubeApiDoubleOptions options;
  for (const char* file : {"cluster_role.yaml", "leader_election_role.yaml", "bindings.yaml", "service_account.yaml"}) {
    options.rbac_files.push_back(kSource + "/deploy/rbac/" + file);
  }
  options.bookmark_interval_ms = 100;
  return options;
}

struct ApiServer {
  explicit ApiServer(KubeApiDoubleOptions options = TestOptions()) : api(std::move(options)) {
    REQUIRE(api.Start().ok());
  }
  void InstallCrd() {
    auto crd = api.Create("apiextensions.k8s.io/v1", "customresourcedefinitions", "",
                          LoadYamlAsJson(kSource + "/crds/carapace.dev_agentruns.yaml"));
    REQUIRE(crd.ok());
  }
  int port() const { return api.port(); }
  KubeApiDouble api;
};

json AgentRun(const std::string& name, const std::string& goal = "do the thing") {
  return {{"apiVersion", "carapace.dev/v1alpha1"},
          {"kind", "AgentRun"},
          {"metadata", {{"name", name}, {"namespace", "default"}}},
          {"spec", {{"goal", goal}, {"model", {{"name", "m1"}}}}}};
}

json ConfigMap(const std::string& name, const json& labels = json::object()) {
  return {{"apiVersion", "v1"},
          {"kind", "ConfigMap"},
          {"metadata", {{"name", name}, {"labels", labels}}},
          {"data", {{"k", "v"}}}};
}

json StatefulSet(const std::string& name, const std::string& when_deleted, int replicas = 1) {
  json container = {{"name", "worker"}, {"image", "carapace-worker:1"}};
  json claim_template = {
      {"metadata", {{"name", "state"}}},
      {"spec", {{"accessModes", {"ReadWriteOnce"}}, {"resources", {{"requests", {{"storage", "1Gi"}}}}}}}};
  json spec = {{"replicas", replicas},
               {"serviceName", name},
               {"selector", {{"matchLabels", {{"app", name}}}}},
               {"persistentVolumeClaimRetentionPolicy", {{"whenDeleted", when_deleted}, {"whenScaled", "Retain"}}}};
  spec["template"]["metadata"]["labels"]["app"] = name;
  spec["template"]["spec"]["containers"] = json::array({container});
  spec["volumeClaimTemplates"] = json::array({claim_template});
  return {{"apiVersion", "apps/v1"}, {"kind", "StatefulSet"}, {"metadata", {{"name", name}}}, {"spec", spec}};
}

// Polls `done` until it holds or `timeout_ms` pass: for what the double's controllers do
// a little after the request that wakes them, as the real ones do.
bool Eventually(const std::function<bool()>& done, int timeout_ms = 5000) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// ---- kubectl ----

struct Kubectl {
  explicit Kubectl(const KubeApiDouble& api, const std::string& token = "") {
    REQUIRE(api.WriteKubeconfig(dir.Sub("kubeconfig"), token).ok());
  }
  std::vector<std::string> Argv(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {KUBECTL_BIN, "--kubeconfig", dir.Sub("kubeconfig"), "--cache-dir",
                                     dir.Sub("cache")};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  CommandResult Run(const std::vector<std::string>& args) const {
    CommandResult result = carapace::testing::RunCommand(Argv(args), 60000);
    UNSCOPED_INFO("kubectl stdout: " << result.out << "\nkubectl stderr: " << result.err);
    return result;
  }
  TempDir dir;
};

}  // namespace

TEST_CASE("kubectl installs the AgentRun CRD and applies, gets, lists, updates and deletes an AgentRun", "[kubectl]") {
  ApiServer server;
  Kubectl kubectl(server.api);

  auto crd = kubectl.Run({"apply", "-f", kSource + "/crds/carapace.dev_agentruns.yaml"});
  REQUIRE(crd.exit_code == 0);
  CHECK(crd.out.find("customresourcedefinition.apiextensions.k8s.io/agentruns.carapace.dev created") !=
        std::string::npos);

  auto applied = kubectl.Run({"apply", "-f", kSource + "/examples/hello.yaml"});
  REQUIRE(applied.exit_code == 0);
  CHECK(applied.out.find("agentrun.carapace.dev/hello created") != std::string::npos);

  auto got = kubectl.Run({"get", "ar", "hello", "-o", "json"});
  REQUIRE(got.exit_code == 0);
  json object = json::parse(got.out);
  CHECK(object["metadata"]["name"] == "hello");
  CHECK(object["metadata"]["generation"] == 1);
  CHECK(object["spec"]["model"]["backend"] == "scripted");

  auto listed = kubectl.Run({"get", "ar"});
  REQUIRE(listed.exit_code == 0);
  CHECK(listed.out.find("PHASE") != std::string::npos);  // the CRD's printer columns
  CHECK(listed.out.find("hello") != std::string::npos);
  CHECK(kubectl.Run({"get", "carapace"}).out.find("hello") != std::string::npos);  // the category

  std::string manifest = ReadText(kSource + "/examples/hello.yaml");
  const std::string before = "Order two boxes of paper";
  REQUIRE(manifest.find(before) != std::string::npos);
  manifest.replace(manifest.find(before), before.size(), "Order three boxes of paper");
  std::ofstream(kubectl.dir.Sub("hello.yaml")) << manifest;
  auto reapplied = kubectl.Run({"apply", "-f", kubectl.dir.Sub("hello.yaml")});
  REQUIRE(reapplied.exit_code == 0);
  CHECK(reapplied.out.find("agentrun.carapace.dev/hello configured") != std::string::npos);
  auto updated = server.api.Get("carapace.dev/v1alpha1", "agentruns", "default", "hello");
  REQUIRE(updated.ok());
  CHECK((*updated)["metadata"]["generation"] == 2);
  CHECK((*updated)["spec"]["goal"].get<std::string>().find("three boxes") != std::string::npos);

  auto deleted = kubectl.Run({"delete", "ar", "hello"});
  REQUIRE(deleted.exit_code == 0);
  CHECK(deleted.out.find("agentrun.carapace.dev \"hello\" deleted") != std::string::npos);
  CHECK(server.api.Get("carapace.dev/v1alpha1", "agentruns", "default", "hello").status().code() ==
        carapace::StatusCode::kNotFound);
  auto missing = kubectl.Run({"get", "ar", "hello"});
  CHECK(missing.exit_code != 0);
  CHECK(missing.err.find("agentruns.carapace.dev \"hello\" not found") != std::string::npos);
}

// The CRD is the user's reference: `kubectl explain` reads its schema from the OpenAPI v3
// document the server publishes for the group-version (the double publishes it as the real
// server does). Every field of spec.budget is listed with its type and its description.
TEST_CASE("kubectl explain reads the AgentRun CRD's field descriptions", "[kubectl][crd]") {
  ApiServer server;
  Kubectl kubectl(server.api);
  REQUIRE(kubectl.Run({"apply", "-f", kSource + "/crds/carapace.dev_agentruns.yaml"}).exit_code == 0);

  const json crd = LoadYamlAsJson(kSource + "/crds/carapace.dev_agentruns.yaml");
  const json budget =
      crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["budget"];
  REQUIRE(budget["properties"].size() >= 4);
  auto explained = kubectl.Run({"explain", "agentrun.spec.budget"});
  INFO(explained.out << explained.err);
  REQUIRE(explained.exit_code == 0);
  // kubectl re-wraps descriptions, so compare word sequences.
  auto words = [](const std::string& text) {
    std::istringstream in(text);
    std::string all, w;
    while (in >> w) all += w + " ";
    return all;
  };
  const std::string out = words(explained.out);
  CHECK_THAT(out, Catch::Matchers::ContainsSubstring(words(budget["description"].get<std::string>())));
  for (const auto& [field, schema] : budget["properties"].items()) {
    // kubectl names an object field's type "Object" and the scalar types as the schema does.
    const std::string type = schema["type"] == "object" ? "Object" : schema["type"].get<std::string>();
    CHECK_THAT(out, Catch::Matchers::ContainsSubstring(field + " <" + type + ">"));
    CHECK_THAT(out, Catch::Matchers::ContainsSubstring(words(schema["description"].get<std::string>())));
  }

  // --recursive lists every field of the spec, nested ones included.
  auto tree = kubectl.Run({"explain", "agentrun.spec", "--recursive"});
  REQUIRE(tree.exit_code == 0);
  for (const char* field : {"instructions", "maxSteps", "fallbacks", "circuitBreaker", "secretKeyRef", "allowedHosts",
                            "requireApprovalFor", "heartbeatSeconds", "storageClassName", "whenDeleted"}) {
    CHECK_THAT(tree.out, Catch::Matchers::ContainsSubstring(field));
  }
}

TEST_CASE("kubectl wait returns once a Ready condition is set through the status subresource", "[kubectl]") {
  ApiServer server;
  server.InstallCrd();
  Kubectl kubectl(server.api);
  REQUIRE(kubectl.Run({"apply", "-f", kSource + "/examples/hello.yaml"}).exit_code == 0);

  ChildProcess wait(kubectl.Argv({"wait", "--for=condition=Ready", "ar/hello", "--timeout=20s"}));
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  CHECK(wait.Running());  // not ready yet
  auto current = server.api.Get("carapace.dev/v1alpha1", "agentruns", "default", "hello");
  REQUIRE(current.ok());
  json with_status = *current;
  with_status["status"] = {{"phase", "Running"},
                           {"conditions",
                            {{{"type", "Ready"},
                              {"status", "True"},
                              {"reason", "WorkerReady"},
                              {"message", "ready"},
                              {"lastTransitionTime", "2025-01-01T00:00:00Z"}}}}};
  REQUIRE(server.api.UpdateStatus("carapace.dev/v1alpha1", "agentruns", "default", with_status).ok());
  CommandResult result = wait.Wait(30000);
  INFO(result.out << result.err);
  CHECK(result.exit_code == 0);
  CHECK(result.out.find("condition met") != std::string::npos);
}

TEST_CASE("kubectl applies the operator's RBAC manifests", "[kubectl]") {
  ApiServer server;
  Kubectl kubectl(server.api);
  auto applied = kubectl.Run({"apply", "-k", kSource + "/deploy/rbac/"});
  INFO(applied.out << applied.err);
  REQUIRE(applied.exit_code == 0);
  CHECK(server.api.Get("rbac.authorization.k8s.io/v1", "clusterroles", "", "carapace-operator").ok());
  CHECK(server.api.Get("rbac.authorization.k8s.io/v1", "roles", "carapace-system", "carapace-operator-leader-election")
            .ok());
  CHECK(server.api.Get("v1", "serviceaccounts", "carapace-system", "carapace-operator").ok());
  // Applying again changes nothing and still succeeds (a strategic merge patch per object).
  auto again = kubectl.Run({"apply", "-k", kSource + "/deploy/rbac/"});
  CHECK(again.exit_code == 0);
  CHECK(again.out.find("unchanged") != std::string::npos);
}

TEST_CASE("the server process prints its port and serves kubectl until SIGTERM", "[kubectl]") {
  TempDir dir;
  ChildProcess process({KUBE_APISERVER_BIN, "--port", "0", "--kubeconfig-out", dir.Sub("kubeconfig"), "--token", "t"});
  std::string out;
  for (int i = 0; i < 100 && out.find('\n') == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    out = ReadText(process.out_path());
  }
  REQUIRE(out.rfind("listening on ", 0) == 0);
  auto namespaces = carapace::testing::RunCommand(
      {KUBECTL_BIN, "--kubeconfig", dir.Sub("kubeconfig"), "--cache-dir", dir.Sub("cache"), "get", "namespaces"});
  CHECK(namespaces.exit_code == 0);
  CHECK(namespaces.out.find("default") != std::string::npos);
  process.Kill(SIGTERM);
  CHECK(process.Wait(10000).exit_code == 0);
}

TEST_CASE("an update with a stale resourceVersion is refused with 409 Conflict", "[rest]") {
  ApiServer server;
  server.InstallCrd();
  auto created = Http(server.port(), "POST", kAgentRuns, AgentRun("a").dump());
  REQUIRE(created.code == 201);
  json first = created.Json();
  json second = first;
  first["spec"]["goal"] = "one";
  REQUIRE(Http(server.port(), "PUT", kAgentRuns + "/a", first.dump()).code == 200);
  second["spec"]["goal"] = "two";
  auto stale = Http(server.port(), "PUT", kAgentRuns + "/a", second.dump());
  CHECK(stale.code == 409);
  CHECK(stale.Json()["reason"] == "Conflict");
  CHECK(stale.Json()["message"] ==
        "Operation cannot be fulfilled on agentruns.carapace.dev \"a\": the object has been modified; please apply "
        "your changes to the latest version and try again");
  CHECK(Http(server.port(), "PUT", kAgentRuns + "/missing", AgentRun("missing").dump()).code == 404);
  auto duplicate = Http(server.port(), "POST", kAgentRuns, AgentRun("a").dump());
  CHECK(duplicate.code == 409);
  CHECK(duplicate.Json()["reason"] == "AlreadyExists");
  CHECK(duplicate.Json()["message"] == "agentruns.carapace.dev \"a\" already exists");
}

TEST_CASE("create fills the server's fields and validates name and namespace", "[rest]") {
  ApiServer server;
  server.InstallCrd();
  json generated = AgentRun("");
  generated["metadata"].erase("name");
  generated["metadata"]["generateName"] = "run-";
  auto created = Http(server.port(), "POST", kAgentRuns, generated.dump());
  REQUIRE(created.code == 201);
  json meta = created.Json()["metadata"];
  CHECK(meta["name"].get<std::string>().rfind("run-", 0) == 0);
  CHECK(meta["name"].get<std::string>().size() == 9);
  CHECK(meta["uid"].get<std::string>().size() == 36);
  CHECK(meta["generation"] == 1);
  CHECK(meta["namespace"] == "default");
  CHECK(std::stoll(meta["resourceVersion"].get<std::string>()) > 0);
  CHECK(meta["creationTimestamp"].get<std::string>().back() == 'Z');

  CHECK(Http(server.port(), "POST", kAgentRuns, AgentRun("Not_A_Name").dump()).code == 422);
  json elsewhere = AgentRun("b");
  elsewhere["metadata"]["namespace"] = "other";
  CHECK(Http(server.port(), "POST", kAgentRuns, elsewhere.dump()).code == 400);
  CHECK(Http(server.port(), "PUT", kAgentRuns + "/c", AgentRun("b").dump()).code == 400);
}

TEST_CASE("metadata.generation changes with the spec, not with metadata or status", "[rest]") {
  ApiServer server;
  server.InstallCrd();
  json object = Http(server.port(), "POST", kAgentRuns, AgentRun("a").dump()).Json();
  object["metadata"]["labels"] = {{"team", "x"}};
  object = Http(server.port(), "PUT", kAgentRuns + "/a", object.dump()).Json();
  CHECK(object["metadata"]["generation"] == 1);
  object["status"] = {{"phase", "Running"}};
  object = Http(server.port(), "PUT", kAgentRuns + "/a/status", object.dump()).Json();
  CHECK(object["metadata"]["generation"] == 1);
  object["spec"]["goal"] = "new goal";
  object = Http(server.port(), "PUT", kAgentRuns + "/a", object.dump()).Json();
  CHECK(object["metadata"]["generation"] == 2);

  // Only kinds whose registry strategy keeps a generation have one (a ConfigMap's strategy does not).
  json config = Http(server.port(), "POST", kConfigMaps, ConfigMap("c").dump()).Json();
  CHECK_FALSE(config["metadata"].contains("generation"));
  config["data"]["k"] = "changed";
  CHECK_FALSE(Http(server.port(), "PUT", kConfigMaps + "/c", config.dump()).Json()["metadata"].contains("generation"));
}

TEST_CASE("the status subresource and the main resource each change only their part", "[rest]") {
  ApiServer server;
  server.InstallCrd();
  json object = Http(server.port(), "POST", kAgentRuns, AgentRun("a").dump()).Json();
  object["spec"]["goal"] = "sneaky";
  object["status"] = {{"phase", "Running"}, {"step", 3}};
  json after_status = Http(server.port(), "PUT", kAgentRuns + "/a/status", object.dump()).Json();
  CHECK(after_status["status"]["phase"] == "Running");
  CHECK(after_status["spec"]["goal"] == "do the thing");  // spec changes through /status are ignored

  after_status["status"]["phase"] = "Failed";
  after_status["spec"]["goal"] = "real change";
  json after_main = Http(server.port(), "PUT", kAgentRuns + "/a", after_status.dump()).Json();
  CHECK(after_main["status"]["phase"] == "Running");  // status changes through the main resource are ignored
  CHECK(after_main["spec"]["goal"] == "real change");

  auto patched = Http(server.port(), "PATCH", kAgentRuns + "/a/status", R"({"status":{"step":4}})",
                      "application/merge-patch+json");
  REQUIRE(patched.code == 200);
  CHECK(patched.Json()["status"]["step"] == 4);
  CHECK(patched.Json()["status"]["phase"] == "Running");
}

TEST_CASE("merge, JSON and strategic merge patches change objects", "[rest]") {
  ApiServer server;
  server.InstallCrd();
  REQUIRE(Http(server.port(), "POST", kAgentRuns, AgentRun("a").dump()).code == 201);
  auto merged =
      Http(server.port(), "PATCH", kAgentRuns + "/a",
           R"({"metadata":{"labels":{"x":"1"}},"spec":{"goal":null,"extra":true}})", "application/merge-patch+json");
  REQUIRE(merged.code == 200);
  CHECK(merged.Json()["metadata"]["labels"]["x"] == "1");
  CHECK_FALSE(merged.Json()["spec"].contains("goal"));
  CHECK(merged.Json()["metadata"]["generation"] == 2);

  auto json_patch = Http(
      server.port(), "PATCH", kAgentRuns + "/a",
      R"([{"op":"test","path":"/spec/extra","value":true},{"op":"replace","path":"/spec/extra","value":false},)"
      R"({"op":"add","path":"/metadata/finalizers","value":["carapace.dev/cleanup"]},{"op":"remove","path":"/metadata/labels/x"}])",
      "application/json-patch+json");
  REQUIRE(json_patch.code == 200);
  CHECK(json_patch.Json()["spec"]["extra"] == false);
  CHECK(json_patch.Json()["metadata"]["finalizers"][0] == "carapace.dev/cleanup");
  auto failed_test = Http(server.port(), "PATCH", kAgentRuns + "/a",
                          R"([{"op":"test","path":"/spec/extra","value":true}])", "application/json-patch+json");
  CHECK(failed_test.code == 422);
  CHECK(Http(server.port(), "PATCH", kAgentRuns + "/a", "{}", "application/apply-patch+yaml").code == 415);
  CHECK(Http(server.port(), "PATCH", kAgentRuns + "/a", "{not json", "application/merge-patch+json").code == 400);

  json sts = StatefulSet("s", "Retain");
  sts["spec"]["template"]["spec"]["containers"].push_back({{"name", "sidecar"}, {"image", "side:1"}});
  REQUIRE(Http(server.port(), "POST", kStatefulSets, sts.dump()).code == 201);
  auto strategic =
      Http(server.port(), "PATCH", kStatefulSets + "/s",
           R"({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"worker"},{"name":"sidecar"}],)"
           R"("containers":[{"name":"worker","image":"carapace-worker:2"}]}}}})",
           "application/strategic-merge-patch+json");
  REQUIRE(strategic.code == 200);
  json containers = strategic.Json()["spec"]["template"]["spec"]["containers"];
  REQUIRE(containers.size() == 2);
  CHECK(containers[0]["image"] == "carapace-worker:2");
  CHECK(containers[1]["name"] == "sidecar");
}

TEST_CASE("lists page with limit and continue and carry a resourceVersion", "[rest]") {
  ApiServer server;
  for (int i = 0; i < 5; ++i)
    REQUIRE(server.api.Create("v1", "configmaps", "default", ConfigMap("c" + std::to_string(i))).ok());
  REQUIRE(server.api.Create("v1", "configmaps", "other", ConfigMap("elsewhere")).ok());
  std::vector<std::string> names;
  std::string token;
  int pages = 0;
  do {
    std::string path = kConfigMaps + "?limit=2" + (token.empty() ? "" : "&continue=" + token);
    json page = Http(server.port(), "GET", path).Json();
    REQUIRE(page["kind"] == "ConfigMapList");
    CHECK(!page["metadata"]["resourceVersion"].get<std::string>().empty());
    for (const auto& item : page["items"]) names.push_back(item["metadata"]["name"]);
    token = page["metadata"].value("continue", "");
    ++pages;
  } while (!token.empty() && pages < 10);
  CHECK(pages == 3);
  CHECK(names == std::vector<std::string>{"c0", "c1", "c2", "c3", "c4"});
  CHECK(Http(server.port(), "GET", "/api/v1/configmaps").Json()["items"].size() == 6);  // every namespace
  CHECK(Http(server.port(), "GET", kConfigMaps + "?continue=zz").code == 400);
}

TEST_CASE("label and field selectors filter lists", "[rest]") {
  ApiServer server;
  REQUIRE(server.api.Create("v1", "configmaps", "default", ConfigMap("a", {{"tier", "web"}, {"team", "x"}})).ok());
  REQUIRE(server.api.Create("v1", "configmaps", "default", ConfigMap("b", {{"tier", "db"}})).ok());
  REQUIRE(server.api.Create("v1", "configmaps", "default", ConfigMap("c")).ok());
  auto names = [&](const std::string& query) {
    std::vector<std::string> out;
    json list = Http(server.port(), "GET", kConfigMaps + "?" + query).Json();
    for (const auto& item : list["items"]) {
      out.push_back(item["metadata"]["name"]);
    }
    return out;
  };
  using Names = std::vector<std::string>;
  CHECK(names("labelSelector=tier%3Dweb") == Names{"a"});
  CHECK(names("labelSelector=tier%3D%3Ddb") == Names{"b"});
  CHECK(names("labelSelector=tier!%3Dweb") == Names{"b", "c"});
  CHECK(names("labelSelector=tier+in+(web,db)") == Names{"a", "b"});
  CHECK(names("labelSelector=tier+notin+(web)") == Names{"b", "c"});
  CHECK(names("labelSelector=team") == Names{"a"});
  CHECK(names("labelSelector=!tier") == Names{"c"});
  CHECK(names("labelSelector=tier,team%3Dx") == Names{"a"});
  CHECK(names("fieldSelector=metadata.name%3Db") == Names{"b"});
  CHECK(names("fieldSelector=metadata.namespace!%3Ddefault").empty());
  CHECK(server.api.List("v1", "configmaps", "default", "tier in (db)").size() == 1);
  CHECK(Http(server.port(), "GET", kConfigMaps + "?labelSelector=tier+in+(web").code == 400);
}

TEST_CASE("a watch replays from a resourceVersion, streams changes live and sends bookmarks", "[watch]") {
  ApiServer server;
  server.InstallCrd();
  json a = Http(server.port(), "POST", kAgentRuns, AgentRun("a").dump()).Json();
  const std::string from = a["metadata"]["resourceVersion"];
  REQUIRE(Http(server.port(), "POST", kAgentRuns, AgentRun("b").dump()).code == 201);

  WatchStream watch(server.port(), kAgentRuns + "?watch=true&allowWatchBookmarks=true&resourceVersion=" + from);
  REQUIRE(watch.code() == 200);
  auto replayed = watch.NextChange();
  REQUIRE(replayed);
  CHECK((*replayed)["type"] == "ADDED");
  CHECK((*replayed)["object"]["metadata"]["name"] == "b");

  REQUIRE(
      Http(server.port(), "PATCH", kAgentRuns + "/a", R"({"spec":{"goal":"changed"}})", "application/merge-patch+json")
          .code == 200);
  auto modified = watch.NextChange();
  REQUIRE(modified);
  CHECK((*modified)["type"] == "MODIFIED");
  CHECK((*modified)["object"]["spec"]["goal"] == "changed");
  REQUIRE(Http(server.port(), "DELETE", kAgentRuns + "/b").code == 200);
  auto deleted = watch.NextChange();
  REQUIRE(deleted);
  CHECK((*deleted)["type"] == "DELETED");

  std::optional<json> bookmark;
  for (int i = 0; i < 20 && !bookmark; ++i) {
    auto event = watch.Next(1000);
    if (event && (*event)["type"] == "BOOKMARK") bookmark = event;
  }
  REQUIRE(bookmark);
  CHECK((*bookmark)["object"]["kind"] == "AgentRun");
  CHECK((*bookmark)["object"]["metadata"]["resourceVersion"] == (*deleted)["object"]["metadata"]["resourceVersion"]);

  WatchStream initial(server.port(), kAgentRuns + "?watch=1&fieldSelector=metadata.name%3Da&timeoutSeconds=1");
  auto added = initial.NextChange();
  REQUIRE(added);
  CHECK((*added)["type"] == "ADDED");
  CHECK((*added)["object"]["metadata"]["name"] == "a");
  CHECK_FALSE(initial.NextChange(3000));
  CHECK(initial.ended());  // timeoutSeconds ends the stream cleanly
}

TEST_CASE("a watch from a resourceVersion older than the kept history gets a 410 Expired ERROR event", "[watch]") {
  ApiServer server;
  auto created = server.api.Create("v1", "configmaps", "default", ConfigMap("a"));
  REQUIRE(created.ok());
  const std::string old_rv = (*created)["metadata"]["resourceVersion"];
  REQUIRE(server.api.Create("v1", "configmaps", "default", ConfigMap("b")).ok());
  server.api.ExpireHistory();
  WatchStream watch(server.port(), kConfigMaps + "?watch=true&resourceVersion=" + old_rv);
  CHECK(watch.code() == 200);
  auto error = watch.Next();
  REQUIRE(error);
  CHECK((*error)["type"] == "ERROR");
  CHECK((*error)["object"]["code"] == 410);
  CHECK((*error)["object"]["reason"] == "Expired");
  CHECK((*error)["object"]["message"].get<std::string>().rfind("too old resource version: " + old_rv, 0) == 0);
  CHECK_FALSE(watch.Next(2000));
  CHECK(watch.ended());

  KubeApiDoubleOptions small = TestOptions();
  small.watch_history = 2;
  ApiServer windowed(small);
  auto first = windowed.api.Create("v1", "configmaps", "default", ConfigMap("x0"));
  REQUIRE(first.ok());
  for (int i = 1; i < 5; ++i)
    REQUIRE(windowed.api.Create("v1", "configmaps", "default", ConfigMap("x" + std::to_string(i))).ok());
  WatchStream past_window(windowed.port(), kConfigMaps + "?watch=true&resourceVersion=" +
                                               (*first)["metadata"]["resourceVersion"].get<std::string>());
  auto expired = past_window.Next();
  REQUIRE(expired);
  CHECK((*expired)["type"] == "ERROR");
}

TEST_CASE("DropWatches cuts open watch streams mid-stream", "[watch]") {
  ApiServer server;
  WatchStream watch(server.port(), kConfigMaps + "?watch=true");
  REQUIRE(watch.code() == 200);
  REQUIRE(server.api.Create("v1", "configmaps", "default", ConfigMap("a")).ok());
  REQUIRE(watch.NextChange());
  server.api.DropWatches();
  CHECK_FALSE(watch.Next(3000));
  CHECK(watch.closed());
  CHECK_FALSE(watch.ended());  // no terminating chunk: the stream was cut
}

TEST_CASE("deleting an object with finalizers marks it and removes it with the last finalizer", "[gc]") {
  ApiServer server;
  server.InstallCrd();
  json run = AgentRun("a");
  run["metadata"]["finalizers"] = {"carapace.dev/cleanup"};
  REQUIRE(Http(server.port(), "POST", kAgentRuns, run.dump()).code == 201);
  WatchStream watch(server.port(), kAgentRuns + "?watch=true&fieldSelector=metadata.name%3Da");
  REQUIRE(watch.NextChange());  // the initial ADDED

  auto deleting = Http(server.port(), "DELETE", kAgentRuns + "/a");
  REQUIRE(deleting.code == 200);
  CHECK(deleting.Json()["metadata"].contains("deletionTimestamp"));
  auto marked = watch.NextChange();
  REQUIRE(marked);
  CHECK((*marked)["type"] == "MODIFIED");
  CHECK((*marked)["object"]["metadata"]["deletionGracePeriodSeconds"] == 0);

  auto adding =
      Http(server.port(), "PATCH", kAgentRuns + "/a",
           R"({"metadata":{"finalizers":["carapace.dev/cleanup","another"]}})", "application/merge-patch+json");
  CHECK(adding.code == 422);
  CHECK(adding.Json()["message"].get<std::string>().find(
            "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted") !=
        std::string::npos);

  REQUIRE(Http(server.port(), "PATCH", kAgentRuns + "/a", R"({"metadata":{"finalizers":null}})",
               "application/merge-patch+json")
              .code == 200);
  auto removed = watch.NextChange();
  REQUIRE(removed);
  CHECK((*removed)["type"] == "DELETED");
  CHECK(Http(server.port(), "GET", kAgentRuns + "/a").code == 404);
}

TEST_CASE("deleting an owner deletes its dependents, and Orphan propagation keeps them", "[gc]") {
  ApiServer server;
  server.InstallCrd();
  auto owner_ref = [](const json& owner) {
    return json::array({{{"apiVersion", "carapace.dev/v1alpha1"},
                         {"kind", "AgentRun"},
                         {"name", owner["metadata"]["name"]},
                         {"uid", owner["metadata"]["uid"]},
                         {"controller", true},
                         {"blockOwnerDeletion", true}}});
  };
  for (const std::string& propagation : {std::string("Background"), std::string("Orphan")}) {
    DYNAMIC_SECTION("propagation " << propagation) {
      auto owner = server.api.Create("carapace.dev/v1alpha1", "agentruns", "default", AgentRun("owner"));
      REQUIRE(owner.ok());
      json config = ConfigMap("dependent");
      config["metadata"]["ownerReferences"] = owner_ref(*owner);
      REQUIRE(server.api.Create("v1", "configmaps", "default", config).ok());
      json sts = StatefulSet("dependent-sts", "Retain");
      sts["metadata"]["ownerReferences"] = owner_ref(*owner);
      REQUIRE(server.api.Create("apps/v1", "statefulsets", "default", sts).ok());

      auto deleted =
          Http(server.port(), "DELETE", kAgentRuns + "/owner",
               json({{"kind", "DeleteOptions"}, {"apiVersion", "v1"}, {"propagationPolicy", propagation}}).dump());
      REQUIRE(deleted.code == 200);
      if (propagation == "Background") {  // the garbage collector comes a little later
        CHECK(server.api.Get("v1", "configmaps", "default", "dependent").ok());
        CHECK(Eventually([&] { return !server.api.Get("v1", "configmaps", "default", "dependent").ok(); }));
        CHECK(Eventually([&] { return !server.api.Get("apps/v1", "statefulsets", "default", "dependent-sts").ok(); }));
      }
      auto config_after = server.api.Get("v1", "configmaps", "default", "dependent");
      auto sts_after = server.api.Get("apps/v1", "statefulsets", "default", "dependent-sts");
      if (propagation == "Orphan") {
        REQUIRE(config_after.ok());
        REQUIRE(sts_after.ok());
        CHECK_FALSE((*config_after)["metadata"].contains("ownerReferences"));
        CHECK_FALSE((*sts_after)["metadata"].contains("ownerReferences"));
      } else {
        CHECK(config_after.status().code() == carapace::StatusCode::kNotFound);
        CHECK(sts_after.status().code() == carapace::StatusCode::kNotFound);
      }
    }
  }
}

TEST_CASE("a StatefulSet gets claims from its templates, deleted with it only when its policy says Delete", "[gc]") {
  ApiServer server;
  REQUIRE(server.api.Create("apps/v1", "statefulsets", "default", StatefulSet("keep", "Retain", 2)).ok());
  REQUIRE(server.api.Create("apps/v1", "statefulsets", "default", StatefulSet("drop", "Delete")).ok());
  auto claim = server.api.Get("v1", "persistentvolumeclaims", "default", "state-drop-0");
  REQUIRE(claim.ok());
  CHECK((*claim)["spec"]["resources"]["requests"]["storage"] == "1Gi");
  CHECK((*claim)["metadata"]["labels"]["app"] == "drop");
  CHECK((*claim)["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet");
  CHECK(server.api.Get("v1", "persistentvolumeclaims", "default", "state-keep-0").ok());
  CHECK(server.api.Get("v1", "persistentvolumeclaims", "default", "state-keep-1").ok());
  auto sts = server.api.Get("apps/v1", "statefulsets", "default", "keep");
  REQUIRE(sts.ok());
  CHECK((*sts)["status"]["replicas"] == 0);

  REQUIRE(server.api.Delete("apps/v1", "statefulsets", "default", "keep").ok());
  REQUIRE(Http(server.port(), "DELETE", kStatefulSets + "/drop").code == 200);
  CHECK(Eventually(
      [&] { return !server.api.Get("v1", "persistentvolumeclaims", "default", "state-drop-0").ok(); }));
  CHECK(server.api.Get("v1", "persistentvolumeclaims", "default", "state-keep-0").ok());
  CHECK(server.api.Get("v1", "persistentvolumeclaims", "default", "state-keep-1").ok());
}

TEST_CASE("the operator's token is held to its RBAC rules with the real server's messages", "[rbac]") {
  ApiServer server;
  server.InstallCrd();
  CHECK(Http(server.port(), "GET", "/apis/carapace.dev/v1alpha1/agentruns", "", "", kOperatorToken).code == 200);
  CHECK(Http(server.port(), "GET", kAgentRuns + "?watch=true&timeoutSeconds=1", "", "", kOperatorToken).code == 200);
  auto secrets = Http(server.port(), "GET", "/api/v1/namespaces/default/secrets", "", "", kOperatorToken);
  CHECK(secrets.code == 403);
  CHECK(secrets.Json()["reason"] == "Forbidden");
  CHECK(secrets.Json()["message"] ==
        "secrets is forbidden: User \"system:serviceaccount:carapace-system:carapace-operator\" cannot list resource "
        "\"secrets\" in API group \"\" in the namespace \"default\"");
  // Claims may only be read by name and patched (to grow them), never listed.
  auto claims = Http(server.port(), "GET", "/api/v1/persistentvolumeclaims", "", "", kOperatorToken);
  CHECK(claims.code == 403);
  CHECK(claims.Json()["message"] ==
        "persistentvolumeclaims is forbidden: User \"system:serviceaccount:carapace-system:carapace-operator\" cannot "
        "list resource \"persistentvolumeclaims\" in API group \"\" at the cluster scope");
  auto run_status = Http(server.port(), "DELETE", kAgentRuns + "/x", "", "", kOperatorToken);
  CHECK(run_status.code == 403);
  CHECK(run_status.Json()["message"] ==
        "agentruns.carapace.dev \"x\" is forbidden: User \"system:serviceaccount:carapace-system:carapace-operator\" "
        "cannot delete resource \"agentruns\" in API group \"carapace.dev\" in the namespace \"default\"");
  auto create_run = Http(server.port(), "POST", kAgentRuns, AgentRun("x").dump(), "application/json", kOperatorToken);
  CHECK(create_run.code == 403);
  // The leader-election Role applies in the operator's namespace only.
  const std::string lease = R"({"metadata":{"name":"carapace-operator"},"spec":{"holderIdentity":"a"}})";
  CHECK(Http(server.port(), "POST", "/apis/coordination.k8s.io/v1/namespaces/carapace-system/leases", lease,
             "application/json", kOperatorToken)
            .code == 201);
  CHECK(Http(server.port(), "POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases", lease, "application/json",
             kOperatorToken)
            .code == 403);
  CHECK(Http(server.port(), "GET", "/api/v1/namespaces/default/secrets").code == 200);  // no token: admin
  CHECK(server.api.Requests("GET", true) == 3);
  CHECK(server.api.Requests("WATCH", true) == 1);
  CHECK(server.api.Requests("DELETE", true) == 1);
  CHECK(server.api.Requests("", false) == 9);
}

TEST_CASE("FailNext answers 429 with Retry-After, then requests succeed again", "[faults]") {
  ApiServer server;
  server.api.FailNext(429, 2, "GET", "/configmaps");
  CHECK(Http(server.port(), "GET", "/api/v1/namespaces/default/secrets").code == 200);  // another path
  auto first = Http(server.port(), "GET", kConfigMaps);
  CHECK(first.code == 429);
  CHECK(first.headers["retry-after"] == "1");
  CHECK(first.Json()["reason"] == "TooManyRequests");
  CHECK(Http(server.port(), "GET", kConfigMaps).code == 429);
  CHECK(Http(server.port(), "GET", kConfigMaps).code == 200);

  server.api.SetLatency(150);
  auto start = std::chrono::steady_clock::now();
  CHECK(Http(server.port(), "GET", kConfigMaps).code == 200);
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(150));
}

TEST_CASE("discovery lists built-in resources and a CRD's resources once it is created", "[discovery]") {
  ApiServer server;
  CHECK(Http(server.port(), "GET", "/apis/carapace.dev/v1alpha1").code == 404);
  server.InstallCrd();
  json groups = Http(server.port(), "GET", "/apis").Json();
  bool found = false;
  for (const auto& g : groups["groups"]) found = found || g["name"] == "carapace.dev";
  CHECK(found);
  json resources = Http(server.port(), "GET", "/apis/carapace.dev/v1alpha1").Json()["resources"];
  REQUIRE(resources.size() == 2);
  CHECK(resources[0]["name"] == "agentruns");
  CHECK(resources[0]["kind"] == "AgentRun");
  CHECK(resources[0]["singularName"] == "agentrun");
  CHECK(resources[0]["shortNames"] == json::array({"ar"}));
  CHECK(resources[0]["categories"] == json::array({"carapace"}));
  CHECK(resources[0]["namespaced"] == true);
  CHECK(resources[1]["name"] == "agentruns/status");
  json apps = Http(server.port(), "GET", "/apis/apps/v1").Json()["resources"];
  std::set<std::string> app_names;
  for (const auto& r : apps) app_names.insert(r["name"].get<std::string>());
  CHECK(app_names.count("statefulsets"));
  CHECK(app_names.count("statefulsets/status"));
  CHECK(app_names.count("deployments"));
  CHECK(Http(server.port(), "GET", "/api").Json()["versions"] == json::array({"v1"}));
  CHECK(Http(server.port(), "GET", "/version").Json()["minor"] == "32");

  REQUIRE(server.api.Create("carapace.dev/v1alpha1", "agentruns", "default", AgentRun("a")).ok());
  REQUIRE(server.api.Delete("apiextensions.k8s.io/v1", "customresourcedefinitions", "", "agentruns.carapace.dev").ok());
  CHECK(Http(server.port(), "GET", "/apis/carapace.dev/v1alpha1").code == 404);
  CHECK(Http(server.port(), "GET", kAgentRuns).code == 404);
}

TEST_CASE("subscribers see every change, from REST and in-process calls alike", "[inprocess]") {
  ApiServer server;
  std::mutex mu;
  std::vector<std::string> seen;
  int id = server.api.Subscribe(
      [&](const std::string& type, const std::string& api_version, const std::string& plural, const json& object) {
        std::lock_guard<std::mutex> lock(mu);
        seen.push_back(type + " " + api_version + " " + plural + " " + object["metadata"]["name"].get<std::string>());
      });
  REQUIRE(server.api.Create("apps/v1", "statefulsets", "default", StatefulSet("s", "Retain", 0)).ok());
  auto sts = server.api.Get("apps/v1", "statefulsets", "default", "s");
  REQUIRE(sts.ok());
  json status = *sts;
  status["status"] = {{"replicas", 1}, {"readyReplicas", 1}};
  auto reported = server.api.UpdateStatus("apps/v1", "statefulsets", "default", status);
  REQUIRE(reported.ok());
  CHECK((*reported)["status"]["readyReplicas"] == 1);
  REQUIRE(Http(server.port(), "DELETE", kStatefulSets + "/s").code == 200);
  std::vector<std::string> expected = {"ADDED apps/v1 statefulsets s", "MODIFIED apps/v1 statefulsets s",
                                       "DELETED apps/v1 statefulsets s"};
  for (int i = 0; i < 100; ++i) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (seen.size() >= expected.size()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  server.api.Unsubscribe(id);
  std::lock_guard<std::mutex> lock(mu);
  CHECK(seen == expected);
}

TEST_CASE("malformed requests get 400 and the server keeps serving", "[robustness]") {
  ApiServer server;
  for (const std::string& garbage :
       {std::string("NONSENSE\r\n\r\n"), std::string("GET /api HTTP/1.1\r\nbad header\r\n\r\n"),
        std::string("POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nContent-Length: x\r\n\r\n")}) {
    int fd = Connect(server.port());
    SendText(fd, garbage);
    ReplyReader reader(fd);
    int code = 0;
    std::map<std::string, std::string> headers;
    REQUIRE(reader.ReadHead(&code, &headers));
    CHECK(code == 400);
    ::close(fd);
  }
  CHECK(Http(server.port(), "POST", kConfigMaps, "[1,2]").code == 400);
  CHECK(Http(server.port(), "POST", kConfigMaps, "{").code == 400);
  CHECK(Http(server.port(), "GET", "/apis/nothing/v1/things").code == 404);
  CHECK(Http(server.port(), "GET", kConfigMaps + "?limit=abc").code == 400);
  CHECK(Http(server.port(), "GET", "/api").code == 200);
}

// How fast is the operator benchmark's business (tests/bench/operator_bench.cc); here only
// that nothing is lost at this scale, with waits generous enough for a sanitizer build.
TEST_CASE("a thousand AgentRuns are created, listed, and seen by each of twenty watches", "[scale]") {
  ApiServer server;
  server.InstallCrd();
  std::vector<std::unique_ptr<WatchStream>> watches;
  for (int i = 0; i < 20; ++i)
    watches.push_back(std::make_unique<WatchStream>(server.port(), kAgentRuns + "?watch=true"));
  for (int i = 0; i < 1000; ++i) {
    REQUIRE(
        server.api.Create("carapace.dev/v1alpha1", "agentruns", "default", AgentRun("run-" + std::to_string(i))).ok());
  }
  json list = Http(server.port(), "GET", kAgentRuns).Json();
  CHECK(list["items"].size() == 1000);
  // Each watch read by its own thread, as each informer reads its own: a stream left unread
  // while others are drained stalls its sender on a full socket, which is not what this is about.
  std::vector<int> added(watches.size(), 0);
  std::vector<std::thread> readers;
  for (size_t i = 0; i < watches.size(); ++i) {
    readers.emplace_back([&, i] {
      while (added[i] < 1000 && watches[i]->NextChange(60000)) ++added[i];
    });
  }
  for (auto& r : readers) r.join();
  for (int n : added) CHECK(n == 1000);
}

// ---- What the real server adds to a write: defaults, canonical forms, admission, validation ----

namespace {

const char kStatefulSetYaml[] = R"(apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: worker
          image: carapace-worker
          ports: [{containerPort: 8080}]
          readinessProbe:
            httpGet: {port: 8080}
          env:
            - name: POD
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
          resources:
            requests: {cpu: "0.5", memory: 1024Mi}
            limits: {}
        - name: side
          image: busybox:1.36
          resources: {}
      volumes:
        - name: config
          configMap: {name: web}
        - name: scratch
          emptyDir: {sizeLimit: 1024Mi}
  volumeClaimTemplates:
    - metadata: {name: state}
      spec:
        accessModes: [ReadWriteOnce]
        resources:
          requests: {storage: 1024Mi}
)";

void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string Replaced(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}

json KubectlJson(const Kubectl& kubectl, const std::vector<std::string>& args) {
  std::vector<std::string> all = {"get"};
  all.insert(all.end(), args.begin(), args.end());
  all.insert(all.end(), {"-o", "json"});
  auto got = kubectl.Run(all);
  REQUIRE(got.exit_code == 0);
  return json::parse(got.out);
}

const std::string kClaims = "/api/v1/namespaces/default/persistentvolumeclaims";
const std::string kServices = "/api/v1/namespaces/default/services";

}  // namespace

TEST_CASE("kubectl apply stores a StatefulSet with the real server's defaults and canonical quantities",
          "[kubectl][semantics]") {
  ApiServer server;
  Kubectl kubectl(server.api);
  WriteFile(kubectl.dir.Sub("sts.yaml"), kStatefulSetYaml);
  REQUIRE(kubectl.Run({"apply", "-f", kubectl.dir.Sub("sts.yaml")}).exit_code == 0);

  json sts = KubectlJson(kubectl, {"statefulset", "web"});
  const json& spec = sts["spec"];
  CHECK(spec["replicas"] == 1);
  CHECK(spec["podManagementPolicy"] == "OrderedReady");
  CHECK(spec["updateStrategy"] == json({{"type", "RollingUpdate"}, {"rollingUpdate", {{"partition", 0}}}}));
  CHECK(spec["revisionHistoryLimit"] == 10);
  CHECK(spec["persistentVolumeClaimRetentionPolicy"] == json({{"whenDeleted", "Retain"}, {"whenScaled", "Retain"}}));
  const json& claim = spec["volumeClaimTemplates"][0];
  CHECK(claim["spec"]["volumeMode"] == "Filesystem");
  CHECK(claim["spec"]["resources"]["requests"]["storage"] == "1Gi");
  CHECK(claim["status"] == json({{"phase", "Pending"}}));

  const json& pod = spec["template"]["spec"];
  CHECK(pod["restartPolicy"] == "Always");
  CHECK(pod["terminationGracePeriodSeconds"] == 30);
  CHECK(pod["dnsPolicy"] == "ClusterFirst");
  CHECK(pod["schedulerName"] == "default-scheduler");
  CHECK(pod["securityContext"] == json::object());
  const json& worker = pod["containers"][0];
  CHECK(worker["imagePullPolicy"] == "Always");  // no tag: latest
  CHECK(pod["containers"][1]["imagePullPolicy"] == "IfNotPresent");
  CHECK(worker["terminationMessagePath"] == "/dev/termination-log");
  CHECK(worker["terminationMessagePolicy"] == "File");
  CHECK(worker["ports"][0]["protocol"] == "TCP");
  CHECK(worker["readinessProbe"] == json({{"httpGet", {{"port", 8080}, {"path", "/"}, {"scheme", "HTTP"}}},
                                          {"timeoutSeconds", 1},
                                          {"periodSeconds", 10},
                                          {"successThreshold", 1},
                                          {"failureThreshold", 3}}));
  CHECK(worker["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1");
  // Quantities as resource.Quantity writes them; an empty map is dropped, an empty struct kept.
  CHECK(worker["resources"] == json({{"requests", {{"cpu", "500m"}, {"memory", "1Gi"}}}}));
  CHECK(pod["containers"][1]["resources"] == json::object());
  CHECK(pod["volumes"][0]["configMap"]["defaultMode"] == 420);
  CHECK(pod["volumes"][1]["emptyDir"] == json({{"sizeLimit", "1Gi"}}));
  CHECK(sts["metadata"]["generation"] == 1);

  // Applying the same file again changes nothing: what is stored is what a real server stores.
  // (kubectl still says "configured": its patch re-sends "0.5", which the server stores as 500m.)
  REQUIRE(kubectl.Run({"apply", "-f", kubectl.dir.Sub("sts.yaml")}).exit_code == 0);
  CHECK(KubectlJson(kubectl, {"statefulset", "web"})["metadata"]["generation"] == 1);
  // The same claim size in another spelling is the same claim.
  WriteFile(kubectl.dir.Sub("sts.yaml"), Replaced(kStatefulSetYaml, "storage: 1024Mi", "storage: 1Gi"));
  CHECK(kubectl.Run({"apply", "-f", kubectl.dir.Sub("sts.yaml")}).exit_code == 0);
}

TEST_CASE("a StatefulSet update may change replicas, template and policies only, and quantities must parse",
          "[kubectl][semantics]") {
  ApiServer server;
  Kubectl kubectl(server.api);
  WriteFile(kubectl.dir.Sub("sts.yaml"), kStatefulSetYaml);
  REQUIRE(kubectl.Run({"apply", "-f", kubectl.dir.Sub("sts.yaml")}).exit_code == 0);

  WriteFile(kubectl.dir.Sub("bigger.yaml"), Replaced(kStatefulSetYaml, "storage: 1024Mi", "storage: 2Gi"));
  auto bigger = kubectl.Run({"apply", "-f", kubectl.dir.Sub("bigger.yaml")});
  CHECK(bigger.exit_code != 0);
  CHECK_THAT(bigger.err, Catch::Matchers::ContainsSubstring(
                             "The StatefulSet \"web\" is invalid: spec: Forbidden: updates to statefulset spec for "
                             "fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', "
                             "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"));

  auto scaled = kubectl.Run({"patch", "statefulset", "web", "-p", R"({"spec":{"replicas":3}})"});
  CHECK(scaled.exit_code == 0);
  auto patched = kubectl.Run({"patch", "statefulset", "web", "--type=merge", "-p",
                              R"({"spec":{"template":{"spec":{"containers":[{"name":"worker","image":"w:2"}]}}}})"});
  CHECK(patched.exit_code == 0);
  json sts = KubectlJson(kubectl, {"statefulset", "web"});
  CHECK(sts["spec"]["replicas"] == 3);
  CHECK(sts["metadata"]["generation"] == 3);
  // The replaced container list got its defaults too.
  CHECK(sts["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent");

  // A malformed quantity fails decoding, as resource.Quantity's UnmarshalJSON does: 400.
  WriteFile(kubectl.dir.Sub("bad.yaml"), Replaced(Replaced(kStatefulSetYaml, "name: web", "name: bad"),
                                                  "cpu: \"0.5\"", "cpu: lots"));
  auto bad = kubectl.Run({"apply", "-f", kubectl.dir.Sub("bad.yaml")});
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Catch::Matchers::ContainsSubstring(
                          "StatefulSet in version \"v1\" cannot be handled as a StatefulSet: quantities must match "
                          "the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"));
  CHECK_FALSE(server.api.Get("apps/v1", "statefulsets", "default", "bad").ok());
}

TEST_CASE("a Service gets its defaults and a cluster IP that never changes, and a DNS-1035 name",
          "[kubectl][semantics]") {
  ApiServer server;
  Kubectl kubectl(server.api);
  WriteFile(kubectl.dir.Sub("svc.yaml"), R"(apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: headless}
spec:
  clusterIP: None
  selector: {app: api}
  ports: [{port: 8080, targetPort: http}]
)");
  REQUIRE(kubectl.Run({"apply", "-f", kubectl.dir.Sub("svc.yaml")}).exit_code == 0);
  json svc = KubectlJson(kubectl, {"service", "api"});
  const json& spec = svc["spec"];
  CHECK(spec["type"] == "ClusterIP");
  CHECK(spec["sessionAffinity"] == "None");
  CHECK(spec["ports"][0]["protocol"] == "TCP");
  CHECK(spec["ports"][0]["targetPort"] == 80);
  REQUIRE(spec["clusterIP"].is_string());
  CHECK(spec["clusterIP"].get<std::string>().rfind("10.96.", 0) == 0);
  CHECK(spec["clusterIPs"] == json::array({spec["clusterIP"]}));
  CHECK(spec["ipFamilies"] == json::array({"IPv4"}));
  CHECK(spec["ipFamilyPolicy"] == "SingleStack");
  CHECK(spec["internalTrafficPolicy"] == "Cluster");
  CHECK_FALSE(svc["metadata"].contains("generation"));
  json headless = KubectlJson(kubectl, {"service", "headless"});
  CHECK(headless["spec"]["clusterIP"] == "None");
  CHECK(headless["spec"]["clusterIPs"] == json::array({"None"}));
  CHECK(headless["spec"]["ports"][0]["targetPort"] == "http");

  // Re-applying (the file has no clusterIP) keeps the allocated one.
  auto again = kubectl.Run({"apply", "-f", kubectl.dir.Sub("svc.yaml")});
  CHECK(again.exit_code == 0);
  CHECK(KubectlJson(kubectl, {"service", "api"})["spec"]["clusterIP"] == spec["clusterIP"]);
  auto moved = kubectl.Run({"patch", "service", "headless", "--type=merge", "-p",
                            R"({"spec":{"clusterIP":"10.96.9.9","clusterIPs":["10.96.9.9"]}})"});
  CHECK(moved.exit_code != 0);
  CHECK_THAT(moved.err, Catch::Matchers::ContainsSubstring(
                            "The Service \"headless\" is invalid: spec.clusterIPs[0]: Invalid value: "
                            "[]string{\"10.96.9.9\"}: may not change once set"));

  json first = {{"apiVersion", "v1"}, {"kind", "Service"}, {"metadata", {{"name", "1st"}}}, {"spec", json::object()}};
  auto refused = Http(server.port(), "POST", kServices, first.dump());
  CHECK(refused.code == 422);
  CHECK(refused.Json()["message"] ==
        "Service \"1st\" is invalid: metadata.name: Invalid value: \"1st\": a DNS-1035 label must consist of lower "
        "case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric "
        "character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')");
  json long_label = ConfigMap("labelled", {{"app", std::string(64, 'a')}});
  auto label = Http(server.port(), "POST", kConfigMaps, long_label.dump());
  CHECK(label.code == 422);
  CHECK(label.Json()["message"] == "ConfigMap \"labelled\" is invalid: metadata.labels: Invalid value: \"" +
                                      std::string(64, 'a') + "\": must be no more than 63 characters");
}

TEST_CASE("claims get the default storage class, grow only where their class allows it, and never shrink",
          "[kubectl][semantics]") {
  ApiServer server;
  Kubectl kubectl(server.api);
  WriteFile(kubectl.dir.Sub("classes.yaml"), R"(apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: example.com/disk
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: expandable}
provisioner: example.com/disk
allowVolumeExpansion: true
)");
  REQUIRE(kubectl.Run({"apply", "-f", kubectl.dir.Sub("classes.yaml")}).exit_code == 0);
  CHECK(KubectlJson(kubectl, {"sc", "standard"})["reclaimPolicy"] == "Delete");

  json claim = {{"apiVersion", "v1"},
                {"kind", "PersistentVolumeClaim"},
                {"metadata", {{"name", "plain"}}},
                {"spec", {{"accessModes", {"ReadWriteOnce"}}, {"resources", {{"requests", {{"storage", "0.5Gi"}}}}}}}};
  auto created = Http(server.port(), "POST", kClaims, claim.dump());
  REQUIRE(created.code == 201);
  CHECK(created.Json()["spec"]["storageClassName"] == "standard");
  CHECK(created.Json()["spec"]["volumeMode"] == "Filesystem");
  CHECK(created.Json()["spec"]["resources"]["requests"]["storage"] == "512Mi");
  CHECK(created.Json()["status"] == json({{"phase", "Pending"}}));
  CHECK_FALSE(created.Json()["metadata"].contains("generation"));
  claim["metadata"]["name"] = "classless";
  claim["spec"]["storageClassName"] = "";
  CHECK(Http(server.port(), "POST", kClaims, claim.dump()).Json()["spec"]["storageClassName"] == "");

  // The StatefulSet's claims (bound, as a provisioner would leave them) take the same path.
  json sts = StatefulSet("db", "Retain");
  REQUIRE(server.api.Create("apps/v1", "statefulsets", "default", sts).ok());
  sts = StatefulSet("fast", "Retain");
  sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] = "expandable";
  REQUIRE(server.api.Create("apps/v1", "statefulsets", "default", sts).ok());
  json bound = KubectlJson(kubectl, {"pvc", "state-db-0"});
  CHECK(bound["spec"]["storageClassName"] == "standard");
  CHECK(bound["spec"]["volumeMode"] == "Filesystem");

  auto grow = [&](const std::string& name, const std::string& size) {
    return kubectl.Run({"patch", "pvc", name, "-p",
                        R"({"spec":{"resources":{"requests":{"storage":")" + size + R"("}}}})"});
  };
  auto refused = grow("state-db-0", "2Gi");
  CHECK(refused.exit_code != 0);
  CHECK_THAT(refused.err, Catch::Matchers::ContainsSubstring(
                              "persistentvolumeclaims \"state-db-0\" is forbidden: only dynamically provisioned pvc "
                              "can be resized and the storageclass that provisions the pvc must support resize"));
  CHECK(grow("state-fast-0", "2Gi").exit_code == 0);
  CHECK(Eventually([&] {
    auto c = server.api.Get("v1", "persistentvolumeclaims", "default", "state-fast-0");
    return c.ok() && (*c)["status"]["capacity"]["storage"] == "2Gi";
  }));
  auto shrink = grow("state-fast-0", "1Gi");
  CHECK(shrink.exit_code != 0);
  CHECK_THAT(shrink.err, Catch::Matchers::ContainsSubstring(
                             "spec.resources.requests.storage: Forbidden: field can not be less than previous value"));
  auto modes = kubectl.Run({"patch", "pvc", "state-fast-0", "-p", R"({"spec":{"accessModes":["ReadWriteMany"]}})"});
  CHECK(modes.exit_code != 0);
  CHECK_THAT(modes.err, Catch::Matchers::ContainsSubstring(
                            "spec: Forbidden: spec is immutable after creation except resources.requests"));
}

TEST_CASE("whenScaled: Delete removes the claims of the ordinals a scale-down drops", "[gc][semantics]") {
  ApiServer server;
  json sts = StatefulSet("scaled", "Retain", 3);
  sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] = "Delete";
  REQUIRE(server.api.Create("apps/v1", "statefulsets", "default", sts).ok());
  auto claim = [&](int i) {
    return server.api.Get("v1", "persistentvolumeclaims", "default", "state-scaled-" + std::to_string(i)).ok();
  };
  REQUIRE((claim(0) && claim(1) && claim(2)));
  auto scaled = Http(server.port(), "PATCH", kStatefulSets + "/scaled", R"({"spec":{"replicas":1}})",
                     "application/merge-patch+json");
  REQUIRE(scaled.code == 200);
  CHECK(Eventually([&] { return !claim(1) && !claim(2); }));
  CHECK(claim(0));
}

TEST_CASE("garbage collection is asynchronous, and Foreground deletes the dependents before the owner", "[gc]") {
  ApiServer server;
  auto owner = server.api.Create("v1", "configmaps", "default", ConfigMap("owner"));
  REQUIRE(owner.ok());
  auto other = server.api.Create("v1", "configmaps", "default", ConfigMap("other-owner"));
  REQUIRE(other.ok());
  auto ref = [](const json& o) {
    return json({{"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"name", o["metadata"]["name"]},
                 {"uid", o["metadata"]["uid"]}, {"blockOwnerDeletion", true}});
  };
  json dependent = ConfigMap("dependent");
  dependent["metadata"]["ownerReferences"] = json::array({ref(*owner)});
  REQUIRE(server.api.Create("v1", "configmaps", "default", dependent).ok());
  json shared = ConfigMap("shared");
  shared["metadata"]["ownerReferences"] = json::array({ref(*owner), ref(*other)});
  REQUIRE(server.api.Create("v1", "configmaps", "default", shared).ok());

  auto deleted = Http(server.port(), "DELETE", kConfigMaps + "/owner",
                      json({{"kind", "DeleteOptions"}, {"apiVersion", "v1"}, {"propagationPolicy", "Foreground"}}).dump());
  REQUIRE(deleted.code == 200);
  // The owner waits, marked, while the collector deletes what depends on it alone.
  CHECK(deleted.Json()["metadata"]["finalizers"] == json::array({"foregroundDeletion"}));
  CHECK(deleted.Json()["metadata"].contains("deletionTimestamp"));
  CHECK(server.api.Get("v1", "configmaps", "default", "dependent").ok());
  CHECK(Eventually([&] { return !server.api.Get("v1", "configmaps", "default", "owner").ok(); }));
  CHECK_FALSE(server.api.Get("v1", "configmaps", "default", "dependent").ok());
  // A dependent with another owner that lives only loses the dangling reference.
  auto kept = server.api.Get("v1", "configmaps", "default", "shared");
  REQUIRE(kept.ok());
  CHECK((*kept)["metadata"]["ownerReferences"] == json::array({ref(*other)}));
}

TEST_CASE("AgentRuns are pruned, defaulted and validated against the CRD's schema and CEL rules",
          "[kubectl][crd][semantics]") {
  KubeApiDoubleOptions options = TestOptions();
  options.crd_validator = carapace::testing::DefaultCrdValidator();
  ApiServer server(options);
  server.InstallCrd();
  Kubectl kubectl(server.api);

  // kubectl asks for strict field validation: an undeclared field is refused.
  std::string manifest = ReadText(kSource + "/examples/hello.yaml");
  WriteFile(kubectl.dir.Sub("unknown.yaml"), Replaced(manifest, "  durability: sync", "  durability: sync\n  foo: 1"));
  auto strict = kubectl.Run({"apply", "-f", kubectl.dir.Sub("unknown.yaml")});
  CHECK(strict.exit_code != 0);
  CHECK_THAT(strict.err, Catch::Matchers::ContainsSubstring(
                             "AgentRun in version \"v1alpha1\" cannot be handled as a AgentRun: strict decoding "
                             "error: unknown field \"spec.foo\""));
  // Without it (the server's default, Warn) the field is dropped with a warning.
  json run = LoadYamlAsJson(kSource + "/examples/hello.yaml");
  run["spec"]["foo"] = 1;
  auto warned = Http(server.port(), "POST", kAgentRuns, run.dump());
  REQUIRE(warned.code == 201);
  CHECK(warned.headers["warning"] == "299 - \"unknown field \\\"spec.foo\\\"\"");
  CHECK_FALSE(warned.Json()["spec"].contains("foo"));
  CHECK(warned.Json()["spec"]["storage"]["size"] == "1Gi");  // the schema's default

  // The schema and the CEL rules, with the server's wording.
  json bad = run;
  bad["metadata"]["name"] = "bad";
  bad["spec"]["model"]["name"] = "m1";  // the scripted backend takes no model name
  auto refused = Http(server.port(), "POST", kAgentRuns, bad.dump());
  CHECK(refused.code == 422);
  CHECK(refused.Json()["message"] ==
        "AgentRun.carapace.dev \"bad\" is invalid: spec.model.name: Invalid value: \"object\": name is only valid "
        "with backend openai or triton");
  CHECK(refused.Json()["details"]["causes"][0]["field"] == "spec.model.name");
  bad["metadata"]["name"] = "1bad";
  auto named = Http(server.port(), "POST", kAgentRuns, bad.dump());
  CHECK(named.code == 422);
  CHECK_THAT(named.Json()["message"].get<std::string>(),
             Catch::Matchers::ContainsSubstring("metadata.name: Invalid value: \"1bad\": metadata.name in body should "
                                                "match '^[a-z]([-a-z0-9]*[a-z0-9])?$'"));

  // Transition rules compare with the stored object.
  REQUIRE(kubectl.Run({"apply", "-f", kSource + "/examples/hello.yaml"}).exit_code == 0);
  auto moved = kubectl.Run({"patch", "ar", "hello", "--type=merge", "-p",
                            R"({"spec":{"storage":{"storageClassName":"fast"}}})"});
  CHECK(moved.exit_code != 0);
  CHECK_THAT(moved.err, Catch::Matchers::ContainsSubstring(
                            "The AgentRun \"hello\" is invalid: spec.storage.storageClassName: Invalid "
                            "value: \"object\": storageClassName is immutable: the volume was made with its class"));
  auto shrunk = kubectl.Run({"patch", "ar", "hello", "--type=merge", "-p", R"({"spec":{"storage":{"size":"512Mi"}}})"});
  CHECK(shrunk.exit_code != 0);
  CHECK_THAT(shrunk.err, Catch::Matchers::ContainsSubstring("may only grow: a volume claim cannot shrink"));
  CHECK(kubectl.Run({"patch", "ar", "hello", "--type=merge", "-p", R"({"spec":{"storage":{"size":"2Gi"}}})"})
            .exit_code == 0);
  // Status and finalizer writes are not validated again (nothing the rules see changed).
  auto current = server.api.Get("carapace.dev/v1alpha1", "agentruns", "default", "hello");
  REQUIRE(current.ok());
  json with_status = *current;
  with_status["status"] = {{"phase", "Running"}};
  CHECK(server.api.UpdateStatus("carapace.dev/v1alpha1", "agentruns", "default", with_status).ok());
}
