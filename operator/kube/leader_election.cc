// Leader election on a Lease: acquire when free or expired by our own clock's observation,
// renew while leading, give up after the renew deadline, release on clean shutdown.
#include "operator/kube/leader_election.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <random>

#include "common/log.h"

namespace carapace::kube {

namespace {

enum class Outcome { kHeld, kHeldByOther, kFailed };

// A MicroTime as the API server writes it: 2006-01-02T15:04:05.000000Z.
std::string MicroTimeNow() {
  const auto now = std::chrono::system_clock::now();
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
  char micros[16];
  std::snprintf(micros, sizeof micros, ".%06dZ", static_cast<int>(us % 1000000));
  return std::string(date) + micros;
}

std::string StringField(const nlohmann::json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

int64_t IntField(const nlohmann::json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_number_integer() ? j[key].get<int64_t>() : 0;
}

// Whole seconds, rounded up: a lease must never be written shorter than configured.
int64_t CeilSeconds(std::chrono::milliseconds d) { return std::max<int64_t>(1, (d.count() + 999) / 1000); }

}  // namespace

LeaderElector::LeaderElector(RestClient* client, LeaderElectionOptions options)
    : client_(client), options_(std::move(options)) {}

LeaderElector::~LeaderElector() { Stop(); }

void LeaderElector::Start() {
  if (thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = false;
    abandon_ = false;
  }
  thread_ = std::thread([this] { Run(); });
}

void LeaderElector::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LeaderElector::Abandon() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    abandon_ = true;
  }
  Stop();
}

bool LeaderElector::Wait(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  return !cv_.wait_for(lock, d, [this] { return stop_; });
}

bool LeaderElector::Reachable(std::string* error) const {
  std::lock_guard<std::mutex> lock(reach_mu_);
  if (error) *error = last_error_;
  return reached_;
}

void LeaderElector::Note(bool reached, const std::string& error) {
  std::lock_guard<std::mutex> lock(reach_mu_);
  const std::string lease = options_.ns + "/" + options_.name;
  if (reached) {
    if (failures_in_a_row_ > 0) {
      log::Info("the API server answers again", {{"lease", lease}, {"failed_tries", failures_in_a_row_}});
    }
    failures_in_a_row_ = 0;
    reached_ = true;
    last_error_.clear();
    return;
  }
  ++failures_in_a_row_;
  reached_ = false;
  last_error_ = error;
  // 1, 2, 4, 8, ... failures in a row: a line soon, then ever fewer while it lasts.
  if ((failures_in_a_row_ & (failures_in_a_row_ - 1)) == 0) {
    log::Warn("cannot take or renew the lease",
              {{"lease", lease}, {"error", error}, {"failed_tries", failures_in_a_row_}});
  }
}

void LeaderElector::Release() {
  auto got = client_->Get(Leases(), options_.ns, options_.name);
  if (!got.ok()) return;
  nlohmann::json lease = got.value;
  nlohmann::json spec = lease.contains("spec") && lease["spec"].is_object() ? lease["spec"] : nlohmann::json::object();
  if (StringField(spec, "holderIdentity") != options_.identity) return;  // lost already: not ours to free
  // As client-go: no holder and a one-second duration, so the next replica takes it now.
  const std::string now = MicroTimeNow();
  spec["holderIdentity"] = "";
  spec["leaseDurationSeconds"] = 1;
  spec["acquireTime"] = now;
  spec["renewTime"] = now;
  lease["spec"] = spec;
  (void)client_->Update(Leases(), options_.ns, lease);  // a failure leaves it to expire
}

void LeaderElector::Run() {
  std::mt19937_64 rng{std::random_device{}()};
  std::uniform_real_distribution<double> jitter(1.0, 1.2);
  const auto nominal = std::chrono::seconds(CeilSeconds(options_.lease_duration));

  // One try: creates the lease, takes it over when free or expired, or renews our own.
  // Expiry is judged by when *we* last saw the record change, never by the
  // renewTime written with another replica's clock.
  auto attempt = [&]() -> Outcome {
    auto got = client_->Get(Leases(), options_.ns, options_.name);
    const auto now = std::chrono::steady_clock::now();
    const std::string stamp = MicroTimeNow();
    if (!got.ok()) {
      if (got.error.code != 404) {
        Note(false, got.error.message.empty() ? "HTTP " + std::to_string(got.error.code) : got.error.message);
        return Outcome::kFailed;
      }
      nlohmann::json lease = {
          {"apiVersion", "coordination.k8s.io/v1"},
          {"kind", "Lease"},
          {"metadata", {{"name", options_.name}, {"namespace", options_.ns}}},
          {"spec",
           {{"holderIdentity", options_.identity},
            {"leaseDurationSeconds", nominal.count()},
            {"acquireTime", stamp},
            {"renewTime", stamp},
            {"leaseTransitions", 0}}}};
      auto created = client_->Create(Leases(), options_.ns, lease);
      if (!created.ok()) {  // 409: another replica created it first
        Note(created.error.code == 409, created.error.message);
        return Outcome::kFailed;
      }
      Note(true, "");
      observed_spec_ = created.value.value("spec", nlohmann::json::object());
      observed_time_ = now;
      return Outcome::kHeld;
    }
    Note(true, "");
    nlohmann::json lease = got.value;
    nlohmann::json spec = lease.contains("spec") && lease["spec"].is_object() ? lease["spec"] : nlohmann::json::object();
    if (spec != observed_spec_) {
      observed_spec_ = spec;
      observed_time_ = now;
    }
    const std::string holder = StringField(spec, "holderIdentity");
    const int64_t seconds = IntField(spec, "leaseDurationSeconds");
    const auto duration = seconds > 0 ? std::chrono::seconds(seconds) : nominal;
    if (!holder.empty() && holder != options_.identity && now < observed_time_ + duration) return Outcome::kHeldByOther;

    spec["holderIdentity"] = options_.identity;
    spec["leaseDurationSeconds"] = nominal.count();
    spec["renewTime"] = stamp;
    if (holder != options_.identity) {
      spec["acquireTime"] = stamp;
      spec["leaseTransitions"] = IntField(spec, "leaseTransitions") + 1;
    }
    lease["spec"] = spec;
    // The resourceVersion we read makes this conditional: a 409 means another replica
    // wrote the lease since, and it won.
    auto updated = client_->Update(Leases(), options_.ns, lease);
    if (!updated.ok()) return Outcome::kFailed;
    observed_spec_ = updated.value.value("spec", nlohmann::json::object());
    observed_time_ = now;
    return Outcome::kHeld;
  };
  auto stopped_leading = [&] {
    leader_ = false;
    if (options_.on_stopped_leading) options_.on_stopped_leading();
  };

  // Acquire.
  for (;;) {
    if (attempt() == Outcome::kHeld) break;
    const auto wait = std::chrono::milliseconds(static_cast<int64_t>(options_.retry_period.count() * jitter(rng)));
    if (!Wait(wait)) return;
  }
  leader_ = true;
  if (options_.on_started_leading) options_.on_started_leading();

  // Renew, every retry period; give up when no renewal succeeded for the renew deadline,
  // or at once when another replica holds the lease (it judged ours expired).
  auto last_renew = std::chrono::steady_clock::now();
  for (;;) {
    if (!Wait(options_.retry_period)) break;
    const Outcome o = attempt();
    if (o == Outcome::kHeld) {
      last_renew = std::chrono::steady_clock::now();
      continue;
    }
    if (o == Outcome::kHeldByOther || std::chrono::steady_clock::now() - last_renew >= options_.renew_deadline) {
      stopped_leading();
      return;
    }
  }
  bool abandon;
  {
    std::lock_guard<std::mutex> lock(mu_);
    abandon = abandon_;
  }
  // Abandoned, as a crash: the lease stays ours until it expires.
  if (!abandon) Release();
  leader_ = false;
}

}  // namespace carapace::kube
