// Leader election on a coordination.k8s.io/v1 Lease, with the timings Kubernetes
// controllers use: a 15 s lease, renewed within a 10 s deadline, tried every 2 s. A replica
// that cannot renew before the deadline stops leading (and the operator exits, so it never
// reconciles beside a new leader). On clean shutdown the lease is released so another
// replica takes over at once.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "operator/kube/rest_client.h"

namespace carapace::kube {

struct LeaderElectionOptions {
  std::string ns;           // the Lease's namespace
  std::string name;         // the Lease's name
  std::string identity;     // this replica (pod name + random suffix)
  std::chrono::milliseconds lease_duration{15000};
  std::chrono::milliseconds renew_deadline{10000};
  std::chrono::milliseconds retry_period{2000};
  // Both run on the elector's thread. on_stopped_leading means the lease was lost (not
  // renewed within renew_deadline, or another replica holds it); Stop() does not call it.
  std::function<void()> on_started_leading;
  std::function<void()> on_stopped_leading;
};

class LeaderElector {
 public:
  LeaderElector(RestClient* client, LeaderElectionOptions options);
  ~LeaderElector();  // Stop()

  // Starts trying to acquire the lease on a thread of its own; on_started_leading runs
  // there once it is held. After a lost lease (renewal failed for renew_deadline) it calls
  // on_stopped_leading and tries no more: the operator exits then.
  void Start();
  // Stops trying; releases the lease when held (clean shutdown). Joins the thread; does not
  // call on_stopped_leading (the caller knows it is stopping).
  void Stop();
  // Stops without releasing the lease, as a replica that crashed would (tests): the others
  // take over only once the lease has expired. Does not call on_stopped_leading.
  void Abandon();
  bool IsLeader() const { return leader_.load(); }
  // Whether the last try reached the API server and got an answer it could act on (the
  // lease held, by us or another replica). A standby that cannot reach the API server
  // could not take over, so it is not ready. `error` gets the last failure when not.
  bool Reachable(std::string* error = nullptr) const;

 private:
  void Run();
  void Release();
  // Records a try's result; failures are logged with backoff (the first, then after 2, 4,
  // 8... failures in a row), and once more when the API server answers again.
  void Note(bool reached, const std::string& error);
  // Sleeps for `d` or until Stop; returns false when stopping.
  bool Wait(std::chrono::milliseconds d);

  RestClient* client_;
  LeaderElectionOptions options_;
  std::atomic<bool> leader_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool abandon_ = false;
  std::thread thread_;
  // The lease record as last seen, and when (our steady clock) it last changed: a lease
  // is expired when it has not changed for its duration by our clock, so clock skew
  // between replicas never matters (as in client-go).
  nlohmann::json observed_spec_;
  mutable std::mutex reach_mu_;
  bool reached_ = false;
  std::string last_error_ = "no attempt yet";
  int64_t failures_in_a_row_ = 0;
  std::chrono::steady_clock::time_point observed_time_{};
};

}  // namespace carapace::kube
