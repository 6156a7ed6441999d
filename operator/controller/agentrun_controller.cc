// The AgentRun controller's plumbing (see agentrun_controller.h).
#include "operator/controller/agentrun_controller.h"

#include "common/log.h"

namespace carapace::controller {

using nlohmann::json;

namespace {

constexpr char kManagedSelector[] = "app.kubernetes.io/managed-by=carapace-operator";

std::unique_ptr<kube::RateLimiter> Limiter(bool overall) {
  if (overall) return std::make_unique<kube::DefaultControllerRateLimiter>();
  return std::make_unique<kube::ItemExponentialRateLimiter>();
}

// Our own status writes change neither generation nor metadata we act on: not a reason to
// reconcile again.
bool WorthReconciling(const std::string& type, const json& object, const json& old) {
  if (type != "MODIFIED" || old.is_null()) return true;
  auto meta = [](const json& o, const char* key) { return o.value("metadata", json::object()).value(key, json()); };
  for (const char* key : {"generation", "finalizers", "deletionTimestamp", "labels", "annotations"}) {
    if (meta(object, key) != meta(old, key)) return true;
  }
  return false;
}

}  // namespace

AgentRunController::AgentRunController(kube::RestClient* client, OperatorMetrics* metrics, kube::EventRecorder* events,
                                       WorkerStatusReader* workers, ControllerOptions options)
    : client_(client), metrics_(metrics), options_(std::move(options)), queue_(Limiter(options_.rate_limit)) {
  if (metrics_) queue_.SetMetrics(metrics_);
  auto make = [&](kube::Resource resource, const std::string& selector, kube::InformerOptions::ChangeFn fn) {
    kube::InformerOptions o;
    o.ns = options_.ns;
    o.label_selector = selector;
    o.on_change = std::move(fn);
    informers_.push_back(std::make_unique<kube::Informer>(client_, resource, o));
    return informers_.back().get();
  };
  Caches caches;
  caches.agentruns = make(kube::AgentRuns(), "", [this](const std::string& type, const json& o, const json& old) {
    if (WorthReconciling(type, o, old)) queue_.Add(kube::Informer::KeyOf(o));
    if (type == "DELETED") {
      RecordPhase(kube::Informer::KeyOf(o), "");
      if (metrics_) {
        metrics_->ForgetWorker(o.value("/metadata/namespace"_json_pointer, std::string()),
                               o.value("/metadata/name"_json_pointer, std::string()));
      }
    }
  });
  auto owned = [this](const std::string&, const json& o, const json&) { EnqueueOwner(o); };
  caches.statefulsets = make(kube::StatefulSets(), kManagedSelector, owned);
  caches.configmaps = make(kube::ConfigMaps(), kManagedSelector, owned);
  caches.services = make(kube::Services(), kManagedSelector, owned);
  if (options_.reconciler.settings.network_policy.enabled) {
    caches.networkpolicies = make(kube::NetworkPolicies(), kManagedSelector, owned);
  }
  if (options_.reconciler.settings.control_tls.enabled()) {
    caches.certificates = make(kube::Certificates(), kManagedSelector, owned);
  }
  caches.pods = make(kube::Pods(), kManagedSelector, [this](const std::string& type, const json& o, const json&) {
    const std::string agentrun = o.value("/metadata/labels"_json_pointer, json::object()).value(kAgentRunLabel, "");
    if (agentrun.empty()) return;
    const std::string ns = o.value("/metadata/namespace"_json_pointer, std::string());
    queue_.Add(ns + "/" + agentrun);
    RecordRestarts(type, ns, agentrun, o);
  });
  reconciler_ = std::make_unique<AgentRunReconciler>(client_, caches, workers, events, options_.reconciler);
}

AgentRunController::~AgentRunController() { Stop(); }

void AgentRunController::EnqueueOwner(const json& object) {
  for (const auto& ref : object.value("/metadata/ownerReferences"_json_pointer, json::array())) {
    if (ref.value("kind", "") == "AgentRun" && ref.value("controller", false)) {
      queue_.Add(object.value("/metadata/namespace"_json_pointer, std::string()) + "/" + ref.value("name", ""));
    }
  }
}

Status AgentRunController::Start(std::chrono::milliseconds sync_timeout) {
  for (auto& informer : informers_) informer->Start();
  const auto deadline = std::chrono::steady_clock::now() + sync_timeout;
  for (auto& informer : informers_) {
    // In slices, so a Stop() meanwhile is noticed.
    while (!informer->WaitForSync(std::chrono::milliseconds(200))) {
      if (stopping_) return Aborted("the controller is stopping");
      if (std::chrono::steady_clock::now() > deadline) {
        return DeadlineExceeded("the informers' caches did not fill within " + std::to_string(sync_timeout.count()) + " ms");
      }
    }
  }
  std::lock_guard<std::mutex> lock(start_mu_);
  if (stopping_) return Aborted("the controller is stopping");
  synced_ = true;
  if (metrics_) metrics_->SetWorkers(0, options_.workers);
  for (int i = 0; i < options_.workers; ++i) threads_.emplace_back([this] { Work(); });
  log::Info("controller started", {{"workers", options_.workers}, {"namespace", options_.ns.empty() ? "*" : options_.ns}});
  return Status::Ok();
}

void AgentRunController::Stop() {
  {
    std::lock_guard<std::mutex> lock(start_mu_);
    stopping_ = true;
  }
  queue_.ShutDown();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  for (auto& informer : informers_) informer->Stop();
}

void AgentRunController::Work() {
  std::string key;
  while (queue_.Get(&key)) {
    if (stopping_) {  // a lost lease or shutdown: never work through the rest of the queue
      queue_.Done(key);
      continue;
    }
    const int active = ++active_;
    if (metrics_) metrics_->SetWorkers(active, options_.workers);
    const auto start = std::chrono::steady_clock::now();
    ReconcileOutcome outcome;
    try {
      outcome = reconciler_->Reconcile(key);
    } catch (const std::exception& e) {
      // An object of an unexpected shape (a status edited by hand, say) fails this key,
      // never the operator.
      outcome.status = Internal(std::string("unexpected object: ") + e.what());
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::string result;
    if (!outcome.status.ok()) {
      result = "error";
      log::Warn("reconcile failed", {{"agentrun", key}, {"error", outcome.status.message()}, {"retries", queue_.Requeues(key)}});
      queue_.AddRateLimited(key);
    } else {
      queue_.Forget(key);
      if (outcome.requeue_after.count() > 0) {
        result = "requeue_after";
        queue_.AddAfter(key, outcome.requeue_after);
      } else {
        result = "success";
      }
      RecordPhase(key, outcome.phase);
    }
    if (metrics_) {
      metrics_->Reconciled(result, seconds);
      metrics_->SetWorkers(--active_, options_.workers);
    } else {
      --active_;
    }
    queue_.Done(key);
  }
}

void AgentRunController::RecordRestarts(const std::string& type, const std::string& ns, const std::string& agentrun,
                                        const json& pod) {
  if (!metrics_) return;
  if (type == "DELETED") {
    metrics_->ForgetWorker(ns, agentrun);
    return;
  }
  for (const auto& c : pod.value("/status/containerStatuses"_json_pointer, json::array())) {
    if (!c.is_object()) continue;  // never throw on this informer's thread
    const auto restarts = c.find("restartCount");
    if (c.value("name", "") == kWorkerContainer && restarts != c.end() && restarts->is_number()) {
      metrics_->SetWorkerRestarts(ns, agentrun, restarts->get<double>());
    }
  }
}

void AgentRunController::RecordPhase(const std::string& key, const std::string& phase) {
  std::lock_guard<std::mutex> lock(phases_mu_);
  if (phase.empty()) phases_.erase(key);
  else phases_[key] = phase;
  if (!metrics_) return;
  std::map<std::string, int> counts;
  for (const auto& [k, p] : phases_) ++counts[p];
  metrics_->SetPhases(counts);
}

}  // namespace carapace::controller
