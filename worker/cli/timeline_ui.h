// `carapace ui`: a read-only web view of one agent (docs/timeline.md). It follows a worker's
// control API (WorkerFeed) and serves, on loopback, the timeline page and the JSON it reads.
#pragma once

#include <string>

#include "common/http_endpoints.h"
#include "worker/cli/remote.h"
#include "worker/cli/worker_feed.h"

namespace carapace::cli {

struct UiOptions {
  std::string listen = "127.0.0.1:7071";
  bool allow_remote = false;  // listen on an address that is not loopback
};

// True when `listen` (host:port) is a loopback address: 127.0.0.0/8, ::1 or localhost.
bool IsLoopbackListen(const std::string& listen);

// Registers the page, its script and style (no agent data: served to anyone), and
// /api/events?after=SEQ and /api/status, which answer only `Authorization: Bearer <token>`
// (401 with a JSON error otherwise; compared in constant time). `feed` must outlive the
// endpoints.
void AddTimelineRoutes(HttpEndpoints* endpoints, const WorkerFeed* feed, const std::string& token);

// Runs until SIGINT or SIGTERM; returns the exit code (2: bad options, no token, or a port
// that cannot be opened).
int RunUi(const WorkerTarget& w, const UiOptions& options);

}  // namespace carapace::cli
