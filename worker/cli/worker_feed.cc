// The event stream and status poll behind `carapace ui` (see worker_feed.h).
#include "worker/cli/worker_feed.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/time.h"
#include "worker/cli/status_view.h"

namespace carapace::cli {

namespace v1 = worker::v1;

namespace {

// Event data comes from the worker's log: UTF-8 there, but a peer's bytes all the same.
std::string Dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

}  // namespace

WorkerFeed::WorkerFeed(WorkerTarget target, Limits limits) : target_(std::move(target)), limits_(limits) {}

WorkerFeed::~WorkerFeed() { Stop(); }

void WorkerFeed::Start() {
  watch_thread_ = std::thread([this] { WatchLoop(); });
  status_thread_ = std::thread([this] { StatusLoop(); });
}

void WorkerFeed::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (stream_ctx_) stream_ctx_->TryCancel();
  }
  stop_cv_.notify_all();
  if (watch_thread_.joinable()) watch_thread_.join();
  if (status_thread_.joinable()) status_thread_.join();
}

bool WorkerFeed::Pause(int ms) {
  std::unique_lock<std::mutex> lock(mu_);
  stop_cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_; });
  return !stopping_;
}

bool WorkerFeed::PollStatus(v1::RunStatus* out) {
  auto stub = ConnectWorker(target_);
  grpc::ClientContext ctx;
  PrepareCall(target_, &ctx);
  grpc::Status s = stub->GetStatus(&ctx, v1::GetStatusRequest(), out);
  std::lock_guard<std::mutex> lock(mu_);
  if (!s.ok()) {
    status_error_ = "GetStatus: " + s.error_message() + " (gRPC " + std::to_string(s.error_code()) + ")";
    return false;
  }
  status_error_.clear();
  status_json_ = RunStatusJson(*out);
  status_at_ms_ = WallNowMillis();
  return true;
}

void WorkerFeed::StatusLoop() {
  do {
    v1::RunStatus ignored;
    PollStatus(&ignored);
  } while (Pause(1000));
}

void WorkerFeed::WatchLoop() {
  int backoff_ms = 250;
  do {
    v1::RunStatus status;
    if (PollStatus(&status) && Stream(StartFrom(status))) {
      backoff_ms = 250;
    } else {
      backoff_ms = std::min(backoff_ms * 2, 5000);
    }
  } while (Pause(backoff_ms));
}

uint64_t WorkerFeed::StartFrom(const v1::RunStatus& status) {
  std::lock_guard<std::mutex> lock(mu_);
  // A restarted run (`carapace run --restart`, a raised restartGeneration) numbers its
  // events from 1 again: what is held belongs to the old one.
  if (run_id_ != status.run_id() || (!events_.empty() && status.last_event_seq() < events_.back().first)) {
    events_.clear();
    bytes_ = 0;
    run_id_ = status.run_id();
  }
  if (!events_.empty()) return events_.back().first + 1;
  // The newest max_events of the log, not the whole of a long life.
  const uint64_t last = status.last_event_seq();
  return last > limits_.max_events ? last - limits_.max_events + 1 : 1;
}

bool WorkerFeed::Stream(uint64_t from) {
  auto stub = ConnectWorker(target_);
  grpc::ClientContext ctx;
  PrepareCall(target_, &ctx, true);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    stream_ctx_ = &ctx;
    connected_ = true;
    stream_error_.clear();
  }
  v1::WatchEventsRequest req;
  req.set_from_seq(from);
  req.set_follow(true);
  auto reader = stub->WatchEvents(&ctx, req);
  v1::EventEntry entry;
  bool delivered = false;
  while (reader->Read(&entry)) {
    Add(entry);
    delivered = true;
  }
  grpc::Status s = reader->Finish();
  std::lock_guard<std::mutex> lock(mu_);
  stream_ctx_ = nullptr;
  connected_ = false;
  stream_error_ = s.ok() ? "the worker closed the event stream"
                         : "WatchEvents: " + s.error_message() + " (gRPC " + std::to_string(s.error_code()) + ")";
  return delivered;
}

void WorkerFeed::Add(const v1::EventEntry& entry) {
  nlohmann::json data = nlohmann::json::parse(entry.data_json(), nullptr, false);
  if (data.is_discarded()) data = {{"unparsed", entry.data_json()}};
  nlohmann::json e = {{"seq", entry.seq()},
                      {"tsMs", entry.ts_ms()},
                      {"type", entry.type()},
                      {"step", entry.step()},
                      {"data", std::move(data)}};
  std::string text = Dump(e);
  std::lock_guard<std::mutex> lock(mu_);
  if (!events_.empty() && entry.seq() <= events_.back().first) return;  // seen already (a reconnect's overlap)
  bytes_ += text.size();
  events_.emplace_back(entry.seq(), std::move(text));
  while (events_.size() > limits_.max_events || (bytes_ > limits_.max_bytes && events_.size() > 1)) {
    bytes_ -= events_.front().second.size();
    events_.pop_front();
  }
}

std::string WorkerFeed::EventsJson(uint64_t after) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::upper_bound(events_.begin(), events_.end(), after,
                             [](uint64_t seq, const std::pair<uint64_t, std::string>& e) { return seq < e.first; });
  std::string list;
  size_t n = 0;
  for (; it != events_.end(); ++it, ++n) {
    if (n > 0 && (n >= limits_.max_reply_events || list.size() + it->second.size() > limits_.max_reply_bytes)) break;
    if (n > 0) list += ",";
    list += it->second;
  }
  nlohmann::json head = {{"runId", run_id_},
                         {"first", events_.empty() ? 0 : events_.front().first},
                         {"last", events_.empty() ? 0 : events_.back().first},
                         {"more", it != events_.end()}};
  std::string out = Dump(head);
  out.pop_back();  // the closing brace: the events follow
  return out + ",\"events\":[" + list + "]}";
}

std::string WorkerFeed::StatusJson() const {
  std::lock_guard<std::mutex> lock(mu_);
  nlohmann::json head = {{"worker", target_.address},
                         {"connected", connected_},
                         {"error", !stream_error_.empty() ? stream_error_ : status_error_},
                         {"statusAtMs", status_at_ms_}};
  std::string out = Dump(head);
  out.pop_back();
  return out + ",\"status\":" + status_json_ + "}";
}

}  // namespace carapace::cli
