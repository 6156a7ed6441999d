// The `carapace ui` command: the timeline page's routes and the process around them.
#include "worker/cli/timeline_ui.h"

#include <arpa/inet.h>
#include <signal.h>

#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/bearer_token.h"
#include "worker/cli/commands.h"

namespace carapace::cli {

namespace {

struct Asset {
  const char* path;
  const char* content_type;
  const char* text;
};

// worker/cli/ui/*: the page's files, compiled in by CMake (worker/CMakeLists.txt).
constexpr Asset kAssets[] = {
#include "timeline_assets.inc"
};

// The page is a static shell; every agent fact it shows comes from the API and is set as
// text, never as markup. The policy holds the page to its own files and origin anyway, so
// that a mistake there cannot run a peer's script or send data elsewhere.
const std::vector<std::pair<std::string, std::string>> kPageHeaders = {
    {"Content-Security-Policy",
     "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
     "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"},
    {"X-Content-Type-Options", "nosniff"},
    {"Referrer-Policy", "no-referrer"},
    {"Cache-Control", "no-cache"},
};

HttpReply Json(int code, std::string body) {
  HttpReply r{code, std::move(body), "application/json"};
  r.headers = {{"Cache-Control", "no-store"}, {"X-Content-Type-Options", "nosniff"}};
  if (code == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"carapace\"");
  return r;
}

HttpReply JsonError(int code, const std::string& message) {
  return Json(code, nlohmann::json{{"error", message}}.dump() + "\n");
}

// The value of `name` in a query string ("after=12&x=1"), "" when absent. Only plain
// values are looked for (digits), so no percent-decoding.
std::string QueryValue(const std::string& query, const std::string& name) {
  size_t at = 0;
  while (at <= query.size()) {
    size_t end = query.find('&', at);
    if (end == std::string::npos) end = query.size();
    const std::string pair = query.substr(at, end - at);
    if (pair.rfind(name + "=", 0) == 0) return pair.substr(name.size() + 1);
    at = end + 1;
  }
  return "";
}

}  // namespace

bool IsLoopbackListen(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  return inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

void AddTimelineRoutes(HttpEndpoints* endpoints, const WorkerFeed* feed, const std::string& token) {
  for (const Asset& a : kAssets) {
    HttpReply reply{200, a.text, a.content_type, kPageHeaders};
    endpoints->Handle(a.path, [reply] { return reply; });
    if (std::string(a.path) == "/timeline.html") endpoints->Handle("/", [reply] { return reply; });
  }
  auto authorized = [token](const HttpRequest& r) { return BearerTokenMatches(r.Header("authorization"), token); };
  endpoints->Handle("/api/events", [feed, authorized](const HttpRequest& r) {
    if (!authorized(r)) return JsonError(401, "a valid bearer token is required");
    const std::string after = QueryValue(r.query, "after");
    char* end = nullptr;
    const unsigned long long n = after.empty() ? 0 : std::strtoull(after.c_str(), &end, 10);
    if (!after.empty() && (*end != '\0' || after.find_first_not_of("0123456789") != std::string::npos)) {
      return JsonError(400, "after must be an event sequence number, got \"" + after + "\"");
    }
    return Json(200, feed->EventsJson(n));
  });
  endpoints->Handle("/api/status", [feed, authorized](const HttpRequest& r) {
    if (!authorized(r)) return JsonError(401, "a valid bearer token is required");
    return Json(200, feed->StatusJson());
  });
}

int RunUi(const WorkerTarget& w, const UiOptions& options) {
  if (w.token.empty()) {
    std::cerr << "carapace ui: the worker's token is required (--token-file, CARAPACE_TOKEN_FILE or CARAPACE_TOKEN): "
                 "the page's data is served only to requests that carry it\n";
    return kExitBadInput;
  }
  if (!options.allow_remote && !IsLoopbackListen(options.listen)) {
    std::cerr << "carapace ui: --listen " << options.listen
              << " is not a loopback address; the page is plain HTTP, so anyone on that network could read the "
                 "token in transit. Use 127.0.0.1:PORT (or add --allow-remote-listen if you mean it)\n";
    return kExitBadInput;
  }
  // Blocked before any thread starts (they inherit the mask), so that SIGINT and SIGTERM
  // reach the sigwait below and not a gRPC thread, whose default would kill the process.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  WorkerFeed feed(w, WorkerFeed::Limits{});
  HttpEndpoints endpoints;
  AddTimelineRoutes(&endpoints, &feed, w.token);
  if (Status s = endpoints.Start(options.listen); !s.ok()) {
    std::cerr << "carapace ui: " << s.message() << "\n";
    return kExitBadInput;
  }
  feed.Start();
  std::string host = options.listen.substr(0, options.listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0" || host == "[::]") host = "127.0.0.1";
  const std::string url = "http://" + host + ":" + std::to_string(endpoints.port()) + "/";
  std::cout << "carapace ui: the timeline of worker " << w.address << " is at " << url << "\n"
            << "  open " << url << "#token=<the worker's token> (the part after # stays in the browser), "
            << "or type the token into the page. Ctrl-C stops.\n"
            << std::flush;
  int sig = 0;
  sigwait(&signals, &sig);
  endpoints.Stop();
  feed.Stop();
  return kExitSucceeded;
}

}  // namespace carapace::cli
