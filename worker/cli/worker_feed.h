// A live, bounded copy of one worker's recent events and status, for `carapace ui`: one
// WatchEvents(follow) stream kept open (reopened from the last seq + 1 when it breaks) and
// GetStatus polled every second. Memory is bounded by Limits whatever the agent's age.
#pragma once

#include <grpcpp/client_context.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "worker/cli/remote.h"

namespace carapace::cli {

class WorkerFeed {
 public:
  struct Limits {
    size_t max_events = 20000;         // the newest events held; older ones are let go
    size_t max_bytes = 64 << 20;       // their JSON text, at most
    size_t max_reply_events = 2000;    // events in one EventsJson answer
    size_t max_reply_bytes = 4 << 20;  // and their bytes (at least one event is always given)
  };

  WorkerFeed(WorkerTarget target, Limits limits);
  ~WorkerFeed();  // Stop()
  WorkerFeed(const WorkerFeed&) = delete;
  WorkerFeed& operator=(const WorkerFeed&) = delete;

  // Starts the watch and the status poll, each on its own thread.
  void Start();
  // Cancels the stream and joins the threads. Safe to call twice.
  void Stop();

  // The held events with seq > `after`, oldest first, as a JSON document:
  //   {"runId", "first" (the oldest seq held, 0 when none), "last" (the newest), "more"
  //    (true when the answer stopped short of "last"), "events": [{"seq","tsMs","type",
  //    "step","data"}, ...]}
  // A new run in the worker (a restart) empties the buffer; "runId" tells a reader so.
  // Thread-safe.
  std::string EventsJson(uint64_t after) const;

  // {"worker", "connected" (the event stream is open), "error" (why it is not, or why the
  //  last status poll failed; "" when none), "statusAtMs", "status" (the RunStatus in
  //  proto3 JSON form, null before the first answer)}. Thread-safe.
  std::string StatusJson() const;

 private:
  void WatchLoop();
  void StatusLoop();
  // Where a new stream starts (see WatchLoop); empties the buffer when the run changed.
  uint64_t StartFrom(const worker::v1::RunStatus& status);
  // Streams events from `from` into the buffer until the stream breaks or Stop(). True
  // when it delivered any.
  bool Stream(uint64_t from);
  // Polls GetStatus once; records the answer or the error. False on error.
  bool PollStatus(worker::v1::RunStatus* out);
  void Add(const worker::v1::EventEntry& entry);
  // Waits `ms` or until Stop(). False when stopping.
  bool Pause(int ms);

  const WorkerTarget target_;
  const Limits limits_;

  mutable std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  grpc::ClientContext* stream_ctx_ = nullptr;            // the open stream's, to cancel it on Stop()
  std::deque<std::pair<uint64_t, std::string>> events_;  // (seq, JSON text), seq ascending
  size_t bytes_ = 0;
  std::string run_id_;
  bool connected_ = false;
  std::string stream_error_;
  std::string status_error_;
  std::string status_json_ = "null";
  int64_t status_at_ms_ = 0;

  std::thread watch_thread_;
  std::thread status_thread_;
};

}  // namespace carapace::cli
