// The process kubelet (see process_kubelet.h): a level-triggered loop over the API double's
// StatefulSets, like the StatefulSet controller and a kubelet together, much simplified.
#include "tests/support/process_kubelet.h"

#include <catch2/catch_test_macros.hpp>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>

#include "common/file.h"
#include "common/hash.h"
#include "operator/kube/config.h"
#include "tests/support/worker_process.h"

namespace carapace::testing {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct ProcessKubelet::PodRun {
  std::string ns, name, sts, ip, revision;
  int ordinal = 0;
  std::unique_ptr<ChildProcess> child;
  Clock::time_point exited_at{};
  int restarts = 0;
  int http_port = 0;
  std::string readiness_path = "/readyz";
  std::string waiting_reason;  // why no process runs, when none does
  std::string last_log;        // how the previous process ended, and its stderr
  json reported;               // the last status written (null until one is)
  // Init containers (spec.initContainers, in order). The kubelet runs the next one only when
  // the one before exited 0, and the worker only when all did; a failed one is run again
  // after the back-off, and the pod stays Pending meanwhile. A worker that exits later does
  // not run them again: only a new pod does (kuberuntime_manager.go computePodActions:
  // init containers run again only when the sandbox is made again).
  struct Init {
    std::string name;
    bool done = false;
    int restarts = 0;
    json last_terminated;  // the last failed run's terminated state; null when none failed
  };
  std::vector<Init> inits;
  size_t inits_done = 0;
  int running_init = -1;  // the init container the child is; -1: the child is the worker
  // Whether the last status written said Ready.
  bool ReportedReady() const {
    if (!reported.is_object()) return false;
    for (const auto& c : reported.value("conditions", json::array())) {
      if (c.value("type", "") == "Ready") return c.value("status", "") == "True";
    }
    return false;
  }
};

namespace {

std::string Decoded(const std::string& base64) {
  auto d = kube::DecodeBase64(base64);
  return d.ok() ? *d : "";
}

std::string Key(const std::string& ns, const std::string& name) { return ns + "/" + name; }

void WriteFiles(const std::string& dir, const std::map<std::string, std::string>& files) {
  fs::create_directories(dir);
  for (const auto& [name, content] : files) std::ofstream(dir + "/" + name, std::ios::trunc) << content;
}

// The port a probe names (a number or a container port's name).
int ProbePort(const json& container, const json& port) {
  if (port.is_number()) return port.get<int>();
  for (const auto& p : container.value("ports", json::array())) {
    if (p.value("name", "") == port.get<std::string>()) return p.value("containerPort", 0);
  }
  return 0;
}

// The last `lines` lines of `log`, then at most its last `bytes` bytes.
std::string LogTail(const std::string& log, int lines, size_t bytes) {
  size_t from = log.size();
  if (from > 0 && log[from - 1] == '\n') --from;  // a final newline ends the last line
  for (int n = 0; n < lines && from > 0; ++n) {
    const size_t newline = log.rfind('\n', from - 1);
    from = newline == std::string::npos ? 0 : newline;
  }
  std::string tail = log.substr(from < log.size() && log[from] == '\n' ? from + 1 : from);
  return tail.size() > bytes ? tail.substr(tail.size() - bytes) : tail;
}

}  // namespace

LoopbackBlock::LoopbackBlock(int size) {
  // Blocks of one size for every caller, so that two claims can never overlap.
  constexpr int kBlock = 8;
  REQUIRE(size <= kBlock);
  for (int first = 2; first + kBlock <= 255; first += kBlock) {
    const std::string path = "/tmp/carapace-test-loopback-" + std::to_string(first);
    int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0666);
    if (fd < 0) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
      first_ = first;
      fd_ = fd;
      return;
    }
    ::close(fd);
  }
  FAIL("no free block of " << size << " loopback addresses (127.0.0.N)");
}

LoopbackBlock::~LoopbackBlock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

ProcessKubelet::ProcessKubelet(KubeApiDouble* api, ProcessKubeletOptions options)
    : api_(api), options_(std::move(options)) {}

ProcessKubelet::~ProcessKubelet() { Stop(); }

// $(NAME) in an env value, as the kubelet expands it (Kubernetes'
// third_party/forked/golang/expansion/expand.go): from variables listed earlier; `$$` is a
// literal `$`; a reference to an unknown name is left as it is.
static std::string ExpandEnvReferences(const std::string& in, const std::map<std::string, std::string>& defined) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '$' || i + 1 >= in.size()) {
      out.push_back(in[i]);
      continue;
    }
    if (in[i + 1] == '$') {
      out.push_back('$');
      ++i;
      continue;
    }
    const size_t close = in[i + 1] == '(' ? in.find(')', i + 2) : std::string::npos;
    if (close == std::string::npos) {
      out.push_back(in[i]);
      continue;
    }
    const std::string name = in.substr(i + 2, close - i - 2);
    auto it = defined.find(name);
    out += it != defined.end() ? it->second : in.substr(i, close - i + 1);
    i = close;
  }
  return out;
}

void ProcessKubelet::Start() {
  subscription_ = api_->Subscribe([this](const std::string&, const std::string&, const std::string& plural, const json&) {
    if (plural != "statefulsets" && plural != "pods" && plural != "secrets" && plural != "configmaps") return;
    std::lock_guard<std::mutex> lock(mu_);
    dirty_ = true;
    wake_.notify_all();
  });
  thread_ = std::thread([this] { Loop(); });
}

void ProcessKubelet::Stop() {
  if (subscription_ >= 0) api_->Unsubscribe(subscription_);
  subscription_ = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    wake_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  std::vector<std::string> keys;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, run] : pods_) keys.push_back(key);
  }
  for (const auto& key : keys) StopPod(key, /*delete_object=*/false);
}

void ProcessKubelet::Loop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait_for(lock, std::chrono::milliseconds(200), [this] { return stop_ || dirty_; });
      if (stop_) return;
      dirty_ = false;
    }
    std::set<std::string> wanted;
    for (const json& sts : api_->List("apps/v1", "statefulsets")) {
      if (sts.contains("metadata") && sts["metadata"].contains("deletionTimestamp")) continue;
      const int replicas = sts.value("/spec/replicas"_json_pointer, 1);
      const std::string ns = sts["metadata"].value("namespace", "");
      const std::string name = sts["metadata"].value("name", "");
      for (int i = 0; i < replicas; ++i) wanted.insert(Key(ns, name + "-" + std::to_string(i)));
      SyncStatefulSet(sts);
    }
    // Pods nobody wants any more (scaled away, or their StatefulSet deleted): stop them.
    std::vector<std::string> unwanted;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [key, run] : pods_) {
        if (!wanted.count(key)) unwanted.push_back(key);
      }
    }
    for (const auto& key : unwanted) StopPod(key, /*delete_object=*/true);
    RemoveUnclaimedDirs();
  }
}

void ProcessKubelet::SyncStatefulSet(const json& sts) {
  const std::string ns = sts["metadata"].value("namespace", "");
  const std::string name = sts["metadata"].value("name", "");
  const int replicas = sts.value("/spec/replicas"_json_pointer, 1);
  const std::string revision = name + "-" + Sha256Hex(sts["spec"].value("template", json::object()).dump()).substr(0, 10);
  for (int i = 0; i < replicas; ++i) SyncPod(sts, i, revision);

  int ready = 0, updated = 0, existing = 0;
  std::string current_revision = revision;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int i = 0; i < replicas; ++i) {
      auto it = pods_.find(Key(ns, name + "-" + std::to_string(i)));
      if (it == pods_.end()) continue;
      ++existing;
      if (it->second->revision == revision) ++updated;
      else current_revision = it->second->revision;
      if (it->second->ReportedReady()) ++ready;
    }
  }
  json status = {{"observedGeneration", sts.value("/metadata/generation"_json_pointer, 1)},
                 {"replicas", existing},
                 {"readyReplicas", ready},
                 {"availableReplicas", ready},
                 {"currentReplicas", existing - updated},
                 {"updatedReplicas", updated},
                 {"currentRevision", current_revision},
                 {"updateRevision", revision}};
  if (sts.value("status", json::object()) == status) return;
  json with_status = sts;
  with_status["status"] = status;
  (void)api_->UpdateStatus("apps/v1", "statefulsets", ns, with_status);  // a conflict: the next pass
}

void ProcessKubelet::SyncPod(const json& sts, int ordinal, const std::string& revision) {
  const std::string ns = sts["metadata"].value("namespace", "");
  const std::string sts_name = sts["metadata"].value("name", "");
  const std::string name = sts_name + "-" + std::to_string(ordinal);
  const std::string key = Key(ns, name);
  auto pod = api_->Get("v1", "pods", ns, name);
  PodRun* run = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pods_.find(key);
    if (it != pods_.end()) run = it->second.get();
  }
  if (pod.ok() && pod->value("/metadata/labels/controller-revision-hash"_json_pointer, std::string()) != revision &&
      run && run->ReportedReady()) {
    // A rolling update replaces a Ready pod (replaced on the next pass). Like the real
    // StatefulSet controller, it leaves a pod that is not Ready alone: someone must delete it.
    StopPod(key, /*delete_object=*/true);
    return;
  }
  if (!pod.ok()) {
    if (run) StopPod(key, /*delete_object=*/false);  // deleted by someone: recreate it
    std::string ip;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto [it, added] = ips_.emplace(key, options_.first_ip + static_cast<int>(ips_.size()));
      ip = "127.0.0." + std::to_string(it->second);
      auto fresh = std::make_unique<PodRun>();
      fresh->ns = ns;
      fresh->name = name;
      fresh->sts = sts_name;
      fresh->ordinal = ordinal;
      fresh->ip = ip;
      fresh->revision = revision;
      run = fresh.get();
      pods_[key] = std::move(fresh);
    }
    const json& tmpl = sts["spec"]["template"];
    json labels = tmpl.value("/metadata/labels"_json_pointer, json::object());
    labels["controller-revision-hash"] = revision;
    labels["statefulset.kubernetes.io/pod-name"] = name;
    json object = {
        {"apiVersion", "v1"},
        {"kind", "Pod"},
        {"metadata",
         {{"name", name},
          {"namespace", ns},
          {"labels", labels},
          {"annotations", tmpl.value("/metadata/annotations"_json_pointer, json::object())},
          {"ownerReferences", json::array({{{"apiVersion", "apps/v1"}, {"kind", "StatefulSet"}, {"name", sts_name},
                                            {"uid", sts["metadata"].value("uid", "")}, {"controller", true},
                                            {"blockOwnerDeletion", true}}})}}},
        {"spec", tmpl.value("spec", json::object())},
        {"status", {{"phase", "Pending"}, {"podIP", ip}, {"hostIP", ip}}}};
    object["spec"]["hostname"] = name;
    object["spec"]["subdomain"] = sts["spec"].value("serviceName", "");
    auto created = api_->Create("v1", "pods", ns, object);
    if (!created.ok()) return;
    pod = created;
  } else if (!run) {
    return;  // a pod this kubelet did not start (another test's); leave it
  } else if (pod->value("/metadata/ownerReferences"_json_pointer, json::array()).empty()) {
    // Orphaned (its StatefulSet was deleted with orphan propagation and made again): the
    // StatefulSet controller adopts a pod its selector matches.
    json adopted = *pod;
    adopted["metadata"]["ownerReferences"] =
        json::array({{{"apiVersion", "apps/v1"}, {"kind", "StatefulSet"}, {"name", sts_name},
                      {"uid", sts["metadata"].value("uid", "")}, {"controller", true}, {"blockOwnerDeletion", true}}});
    auto updated = api_->Update("v1", "pods", ns, adopted);
    if (updated.ok()) pod = updated;
  }

  std::unique_ptr<ChildProcess> exited;
  int exited_init = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (run->child && !run->child->Running()) {
      exited = std::move(run->child);
      exited_init = run->running_init;
      run->running_init = -1;
    }
  }
  if (exited) {
    CommandResult result = exited->Wait(1000);
    std::lock_guard<std::mutex> lock(mu_);
    if (exited_init >= 0) {
      PodRun::Init& init = run->inits[exited_init];
      const std::string key = Key(run->ns, run->name) + "/" + init.name;
      const int n = ++init_runs_[key];
      init_logs_[key] += result.out + result.err + "--- run " + std::to_string(n) + ": exit " +
                         std::to_string(result.exit_code) + " signal " + std::to_string(result.signal) + " ---\n";
      if (result.exit_code == 0) {
        init.done = true;  // the next one starts at once, without a back-off
        ++run->inits_done;
      } else {
        run->exited_at = Clock::now();
        ++init.restarts;
        init.last_terminated = {{"exitCode", result.exit_code < 0 ? 128 + result.signal : result.exit_code},
                                {"reason", "Error"}};
        // terminationMessagePolicy FallbackToLogsOnError: an empty termination-log file and a
        // failure give the log's tail, at most 80 lines and 2048 bytes (kuberuntime_container.go
        // getTerminationMessage, readLastStringFromContainerLogs;
        // kubecontainer.MaxContainerTerminationMessageLogLines/Length).
        const std::string policy = pod->value(
            json::json_pointer("/spec/initContainers/" + std::to_string(exited_init) + "/terminationMessagePolicy"),
            std::string("File"));
        if (policy == "FallbackToLogsOnError") {
          const std::string tail = LogTail(result.out + result.err, 80, 2048);
          if (!tail.empty()) init.last_terminated["message"] = tail;
        }
      }
    } else {
      run->exited_at = Clock::now();
      ++run->restarts;
      run->last_log = "exit " + std::to_string(result.exit_code) + " signal " + std::to_string(result.signal) + ": " + result.err;
    }
  }
  if (!run->child && Clock::now() - run->exited_at >= std::chrono::milliseconds(options_.restart_delay_ms)) {
    StartContainer(*run, sts, *pod);
  }
  ReportPod(*run);
}

void ProcessKubelet::StartContainer(PodRun& run, const json& sts, const json& pod) {
  const json& spec = pod["spec"];
  const json init_specs = spec.value("initContainers", json::array());
  if (run.inits.empty()) {
    for (const auto& c : init_specs) run.inits.push_back({c.value("name", ""), false, 0, json()});
  }
  const int init = run.inits_done < run.inits.size() ? static_cast<int>(run.inits_done) : -1;
  const json& container = init >= 0 ? init_specs[init] : spec["containers"][0];
  const std::string pod_dir = options_.root + "/pods/" + run.ns + "/" + run.name;
  std::map<std::string, std::string> volume_dirs;
  for (const auto& v : spec.value("volumes", json::array())) {
    const std::string vname = v.value("name", "");
    const std::string dir = pod_dir + "/" + vname;
    if (v.contains("configMap")) {
      auto cm = api_->Get("v1", "configmaps", run.ns, v["configMap"].value("name", ""));
      if (!cm.ok()) {
        run.waiting_reason = "ContainerCreating";
        return;
      }
      std::map<std::string, std::string> files;
      const json data = cm->value("data", json::object());
      for (auto& [k, value] : data.items()) files[k] = value.get<std::string>();
      WriteFiles(dir, files);
    } else if (v.contains("secret")) {
      auto secret = api_->Get("v1", "secrets", run.ns, v["secret"].value("secretName", ""));
      if (!secret.ok()) {
        run.waiting_reason = "ContainerCreating";
        return;
      }
      std::map<std::string, std::string> files;
      const json data = secret->value("data", json::object());
      for (auto& [k, value] : data.items()) {
        files[k] = Decoded(value.get<std::string>());
      }
      WriteFiles(dir, files);
    } else if (v.contains("persistentVolumeClaim")) {
      // The claim's own directory on this "node", shared by every pod that mounts it. A claim
      // that does not exist keeps the pod from starting (the scheduler leaves it Pending:
      // 'persistentvolumeclaim "NAME" not found'); this double has no provisioner, so a claim
      // that exists counts as bound.
      const std::string claim = v["persistentVolumeClaim"].value("claimName", "");
      if (!api_->Get("v1", "persistentvolumeclaims", run.ns, claim).ok()) {
        run.waiting_reason = "ContainerCreating";
        return;
      }
      volume_dirs[vname] = ClaimDir(run.ns, claim);
      fs::create_directories(volume_dirs[vname]);
      continue;
    } else {
      fs::create_directories(dir);  // emptyDir
    }
    volume_dirs[vname] = dir;
  }
  for (const auto& t : sts["spec"].value("volumeClaimTemplates", json::array())) {
    const std::string tname = t["metadata"].value("name", "");
    volume_dirs[tname] = ClaimDir(run.ns, tname + "-" + run.sts + "-" + std::to_string(run.ordinal));
    fs::create_directories(volume_dirs[tname]);
  }
  // Mount paths, longest first, as they appear in the container's arguments.
  std::vector<std::pair<std::string, std::string>> mounts;
  for (const auto& m : container.value("volumeMounts", json::array())) {
    mounts.emplace_back(m.value("mountPath", ""), volume_dirs[m.value("name", "")]);
  }
  std::sort(mounts.begin(), mounts.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  // The image's entrypoint is carapace-worker; a command names one of the image's two binaries.
  std::vector<std::string> argv;
  const json command = container.value("command", json::array());
  if (command.empty() || command[0] == "/usr/local/bin/carapace-worker") {
    argv.push_back(options_.worker_bin);
  } else if (command[0] == "/usr/local/bin/carapace" && !options_.cli_bin.empty()) {
    argv.push_back(options_.cli_bin);
  } else {
    run.waiting_reason = "RunContainerError";  // exec: no such file in the image
    return;
  }
  json words = json::array();
  for (size_t i = 1; i < command.size(); ++i) words.push_back(command[i]);
  for (const auto& a : container.value("args", json::array())) words.push_back(a);
  for (const auto& a : words) {
    std::string arg = a.get<std::string>();
    for (const auto& [path, dir] : mounts) {
      // A path is a whole argument or a flag's value (--state-dir=PATH), never inside another
      // word (--claim-as=ns/tmp/uid).
      size_t at = arg.find(path);
      if (at != std::string::npos && (at == 0 || arg[at - 1] == '=') &&
          (at + path.size() == arg.size() || arg[at + path.size()] == '/')) {
        arg.replace(at, path.size(), dir);
        break;
      }
    }
    if (size_t at = arg.find("0.0.0.0:"); at != std::string::npos) arg.replace(at, 7, run.ip);
    argv.push_back(arg);
  }
  std::map<std::string, std::string> env;
  for (const auto& e : container.value("env", json::array())) {
    if (e.contains("value")) {
      env[e["name"]] = ExpandEnvReferences(e["value"].get<std::string>(), env);
      continue;
    }
    if (const json field = e.value("/valueFrom/fieldRef/fieldPath"_json_pointer, json()); field.is_string()) {
      // The downward API fields a worker's pod uses.
      if (field == "metadata.name") env[e["name"]] = run.name;
      if (field == "metadata.namespace") env[e["name"]] = run.ns;
      continue;
    }
    const json ref = e.value("/valueFrom/secretKeyRef"_json_pointer, json());
    auto secret = api_->Get("v1", "secrets", run.ns, ref.value("name", ""));
    const std::string data = secret.ok() ? secret->value("data", json::object()).value(ref.value("key", ""), "") : "";
    if (data.empty()) {
      run.waiting_reason = "CreateContainerConfigError";
      return;
    }
    env[e["name"]] = Decoded(data);
  }
  if (init < 0 && container.contains("readinessProbe")) {
    run.http_port = ProbePort(container, container["readinessProbe"]["httpGet"]["port"]);
    run.readiness_path = container["readinessProbe"]["httpGet"].value("path", "/readyz");
  }
  run.waiting_reason.clear();
  auto child = std::make_unique<ChildProcess>(argv, env);
  std::lock_guard<std::mutex> lock(mu_);  // tests read and signal the child meanwhile
  run.child = std::move(child);
  run.running_init = init;
  if (init < 0) starts_[Key(run.ns, run.name)] += 1;
}

void ProcessKubelet::ReportPod(PodRun& run) {
  const bool running = run.child && run.child->Running() && run.running_init < 0;
  const bool ready = running && run.http_port > 0 && HttpGet(run.ip, run.http_port, run.readiness_path).first == 200;
  const std::string ready_text = ready ? "True" : "False";
  const bool initialized = run.inits_done == run.inits.size();
  // A container that has not run yet waits as "PodInitializing" in a pod with init
  // containers, else as "ContainerCreating" (kubelet_pods.go convertToAPIContainerStatuses).
  const std::string not_yet = run.inits.empty() ? "ContainerCreating" : "PodInitializing";
  json state = running ? json{{"running", json::object()}}
                       : json{{"waiting", {{"reason", !initialized ? "PodInitializing"
                                                      : !run.waiting_reason.empty() ? run.waiting_reason
                                                      : run.restarts >= 3            ? "CrashLoopBackOff"
                                                                                     : not_yet}}}};
  // An init container: terminated Completed once it exited 0 (and then ready); running; after
  // a failure, waiting in CrashLoopBackOff with the failed run as lastState; else not started.
  json init_statuses = json::array();
  std::vector<std::string> incomplete;
  for (size_t i = 0; i < run.inits.size(); ++i) {
    const PodRun::Init& init = run.inits[i];
    json init_state;
    if (init.done) {
      init_state = {{"terminated", {{"exitCode", 0}, {"reason", "Completed"}}}};
    } else if (run.child && run.child->Running() && run.running_init == static_cast<int>(i)) {
      init_state = {{"running", json::object()}};
    } else if (!init.last_terminated.is_null()) {
      init_state = {{"waiting", {{"reason", "CrashLoopBackOff"}}}};
    } else {
      init_state = {{"waiting", {{"reason", i == run.inits_done && !run.waiting_reason.empty() ? run.waiting_reason
                                                                                             : "PodInitializing"}}}};
    }
    json cs = {{"name", init.name}, {"ready", init.done}, {"started", init_state.contains("running")},
               {"restartCount", init.restarts}, {"state", init_state}};
    if (!init.last_terminated.is_null()) cs["lastState"] = {{"terminated", init.last_terminated}};
    init_statuses.push_back(cs);
    if (!init.done) incomplete.push_back(init.name);
  }
  // The Initialized condition (status/generate.go GeneratePodInitializedCondition).
  json initialized_condition = {{"type", "Initialized"}, {"status", initialized ? "True" : "False"}};
  if (!initialized) {
    std::string names;
    for (const auto& n : incomplete) names += (names.empty() ? "" : " ") + n;
    initialized_condition["reason"] = "ContainersNotInitialized";
    initialized_condition["message"] = "containers with incomplete status: [" + names + "]";
  }
  json status = {{"phase", running ? "Running" : "Pending"},
                 {"podIP", run.ip},
                 {"hostIP", run.ip},
                 {"conditions", json::array({initialized_condition,
                                             {{"type", "Ready"}, {"status", ready_text}},
                                             {{"type", "ContainersReady"}, {"status", ready_text}}})},
                 {"containerStatuses", json::array({{{"name", "worker"}, {"ready", ready}, {"started", running},
                                                     {"restartCount", run.restarts}, {"state", state}}})}};
  if (!init_statuses.empty()) status["initContainerStatuses"] = init_statuses;
  if (status == run.reported) return;
  auto pod = api_->Get("v1", "pods", run.ns, run.name);
  if (!pod.ok()) return;
  json updated = *pod;
  updated["status"] = status;
  if (api_->UpdateStatus("v1", "pods", run.ns, updated).ok()) run.reported = status;
}

void ProcessKubelet::StopPod(const std::string& key, bool delete_object) {
  std::unique_ptr<PodRun> run;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pods_.find(key);
    if (it == pods_.end()) return;
    run = std::move(it->second);
    pods_.erase(it);
  }
  if (run->child) {
    run->child->Kill(SIGTERM);
    run->child->Wait(10000);
  }
  if (delete_object) (void)api_->Delete("v1", "pods", run->ns, run->name);
}

void ProcessKubelet::RemoveUnclaimedDirs() {
  // A claim deleted from the API takes its data with it (the reclaim policy Delete).
  const fs::path volumes = options_.root + "/volumes";
  std::error_code ec;
  if (!fs::exists(volumes, ec)) return;
  for (const auto& ns_dir : fs::directory_iterator(volumes, ec)) {
    for (const auto& claim_dir : fs::directory_iterator(ns_dir.path(), ec)) {
      const std::string ns = ns_dir.path().filename(), claim = claim_dir.path().filename();
      if (api_->Get("v1", "persistentvolumeclaims", ns, claim).ok()) continue;
      bool in_use = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (const auto& [key, run] : pods_) {
          in_use = in_use || (run->ns == ns && claim.size() > run->name.size() &&
                              claim.compare(claim.size() - run->name.size(), run->name.size(), run->name) == 0);
        }
      }
      if (!in_use) fs::remove_all(claim_dir.path(), ec);
    }
  }
}

pid_t ProcessKubelet::WorkerPid(const std::string& ns, const std::string& pod) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pods_.find(Key(ns, pod));
  if (it == pods_.end() || !it->second->child || !it->second->child->Running() || it->second->running_init >= 0) {
    return -1;
  }
  return it->second->child->pid();
}

int ProcessKubelet::Starts(const std::string& ns, const std::string& pod) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = starts_.find(Key(ns, pod));
  return it == starts_.end() ? 0 : it->second;
}

bool ProcessKubelet::Kill(const std::string& ns, const std::string& pod, int signal) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pods_.find(Key(ns, pod));
  if (it == pods_.end() || !it->second->child || !it->second->child->Running() || it->second->running_init >= 0) {
    return false;
  }
  it->second->child->Kill(signal);
  return true;
}

std::string ProcessKubelet::ClaimDir(const std::string& ns, const std::string& claim) const {
  return options_.root + "/volumes/" + ns + "/" + claim;
}

std::string ProcessKubelet::InitLog(const std::string& ns, const std::string& pod, const std::string& container) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = init_logs_.find(Key(ns, pod) + "/" + container);
  return it == init_logs_.end() ? "" : it->second;
}

std::string ProcessKubelet::WorkerLog(const std::string& ns, const std::string& pod) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pods_.find(Key(ns, pod));
  if (it == pods_.end()) return "";
  std::string log = it->second->last_log.empty() ? "" : "previous process: " + it->second->last_log + "\n";
  if (it->second->child) {
    auto text = ReadFile(it->second->child->err_path());
    if (text.ok()) log += *text;
  }
  return log;
}

}  // namespace carapace::testing
