// The probe and metrics server (common/http_endpoints): what it answers, and how it holds a
// peer that sends too much, too slowly or the wrong thing to its limits. Raw sockets, so the
// test sends exactly the bytes it means.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "common/http_endpoints.h"
#include "tests/support/socket_io.h"

using carapace::HttpEndpoints;
using carapace::HttpLimits;
using carapace::HttpReply;
using Catch::Matchers::ContainsSubstring;
using Catch::Matchers::StartsWith;

namespace {

int Connect(int port) {
  const int fd = carapace::testing::ConnectToLoopbackPort(port);
  REQUIRE(fd >= 0);
  return fd;
}

// Sends `request` (as much as the server takes before it closes) and reads the reply.
std::string Exchange(int port, const std::string& request) {
  int fd = Connect(port);
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = send(fd, request.data() + sent, std::min<size_t>(request.size() - sent, 65536), MSG_NOSIGNAL);
    if (n <= 0) break;  // the server answered and closed: read what it said
    sent += static_cast<size_t>(n);
  }
  const std::string reply = carapace::testing::ReadUntilClosed(fd);
  close(fd);
  return reply;
}

struct Server {
  explicit Server(HttpLimits limits = {}) : endpoints(limits) {
    endpoints.Handle("/healthz", [] { return HttpReply{200, "ok\n"}; });
    endpoints.Handle("/metrics", [] { return HttpReply{200, "m 1\n", carapace::kPrometheusContentType}; });
    REQUIRE(endpoints.Start("127.0.0.1:0").ok());
  }
  int port() const { return endpoints.port(); }
  HttpEndpoints endpoints;
};

}  // namespace

TEST_CASE("the probe server answers GET and HEAD on its paths, 404 elsewhere", "[http_endpoints]") {
  Server s;
  std::string r = Exchange(s.port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK_THAT(r, StartsWith("HTTP/1.1 200 OK\r\n"));
  CHECK_THAT(r, ContainsSubstring("Content-Length: 3\r\n"));
  CHECK(r.substr(r.size() - 3) == "ok\n");
  CHECK_THAT(Exchange(s.port(), "GET /metrics?x=1 HTTP/1.0\r\n\r\n"), ContainsSubstring("version=0.0.4"));
  std::string head = Exchange(s.port(), "HEAD /healthz HTTP/1.1\r\n\r\n");
  CHECK_THAT(head, StartsWith("HTTP/1.1 200 OK"));
  CHECK(head.substr(head.size() - 4) == "\r\n\r\n");  // no body
  CHECK_THAT(Exchange(s.port(), "GET /nope HTTP/1.1\r\n\r\n"), StartsWith("HTTP/1.1 404"));
}

TEST_CASE("a handler reads the query and the headers, and adds headers to its reply", "[http_endpoints]") {
  HttpEndpoints endpoints;
  endpoints.Handle("/api", [](const carapace::HttpRequest& r) {
    HttpReply reply{r.Header("authorization") == "Bearer t" ? 200 : 401, r.query + "|" + r.Header("x-twice") + "\n"};
    reply.headers = {{"Cache-Control", "no-store"}};
    return reply;
  });
  endpoints.Handle("/split", [](const carapace::HttpRequest&) {
    return HttpReply{200, "x", "text/plain", {{"X-Bad", "a\r\nSet-Cookie: b"}}};
  });
  REQUIRE(endpoints.Start("127.0.0.1:0").ok());
  const std::string ok = Exchange(endpoints.port(), "GET /api?after=12&x=%20 HTTP/1.1\r\nAUTHORIZATION:  Bearer t \r\n"
                                                    "X-Twice: a\r\nx-twice: b\r\n\r\n");
  CHECK_THAT(ok, StartsWith("HTTP/1.1 200 OK\r\n"));
  CHECK_THAT(ok, ContainsSubstring("\r\nCache-Control: no-store\r\n"));
  CHECK_THAT(ok, ContainsSubstring("\r\n\r\nafter=12&x=%20|a, b\n"));
  CHECK_THAT(Exchange(endpoints.port(), "GET /api HTTP/1.1\r\n\r\n"), StartsWith("HTTP/1.1 401 Unauthorized\r\n"));
  // A handler cannot split the response with a header value.
  const std::string split = Exchange(endpoints.port(), "GET /split HTTP/1.1\r\n\r\n");
  CHECK_THAT(split, StartsWith("HTTP/1.1 500"));
  CHECK_THAT(split, !ContainsSubstring("Set-Cookie"));
}

TEST_CASE("requests over the limits are refused with the status that names the limit", "[http_endpoints]") {
  Server s;
  const std::string big_header = "GET /healthz HTTP/1.1\r\nX-Big: " + std::string(64 << 10, 'a') + "\r\n\r\n";
  CHECK_THAT(Exchange(s.port(), big_header), StartsWith("HTTP/1.1 431"));
  // A header that never ends: refused once it passes the limit, not read to its end.
  CHECK_THAT(Exchange(s.port(), "GET /healthz HTTP/1.1\r\nX-Big: " + std::string(16 << 20, 'a')), StartsWith("HTTP/1.1 431"));
  std::string many = "GET /healthz HTTP/1.1\r\n";
  for (int i = 0; i < 101; ++i) many += "X-" + std::to_string(i) + ": 1\r\n";
  CHECK_THAT(Exchange(s.port(), many + "\r\n"), StartsWith("HTTP/1.1 431"));
  CHECK_THAT(Exchange(s.port(), "GET /" + std::string(5000, 'p') + " HTTP/1.1\r\n\r\n"), StartsWith("HTTP/1.1 414"));
  CHECK_THAT(Exchange(s.port(), "POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), StartsWith("HTTP/1.1 405"));
  CHECK_THAT(Exchange(s.port(), "GET /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"), StartsWith("HTTP/1.1 413"));
  CHECK_THAT(Exchange(s.port(), "GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
             StartsWith("HTTP/1.1 413"));
  CHECK_THAT(Exchange(s.port(), "GET /healthz HTTP/2.0\r\n\r\n"), StartsWith("HTTP/1.1 505"));
  CHECK_THAT(Exchange(s.port(), "GARBAGE\r\n\r\n"), StartsWith("HTTP/1.1 400"));
  CHECK_THAT(Exchange(s.port(), "GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n"), StartsWith("HTTP/1.1 400"));
  // And it still serves.
  CHECK_THAT(Exchange(s.port(), "GET /healthz HTTP/1.1\r\n\r\n"), StartsWith("HTTP/1.1 200"));
}

TEST_CASE("a peer too slow with its request is answered 408 and let go", "[http_endpoints]") {
  HttpLimits limits;
  limits.read_timeout = std::chrono::milliseconds(300);
  Server s(limits);
  int fd = Connect(s.port());
  const std::string part = "GET /healthz HTTP/1.1\r\nX-Slow: ";
  REQUIRE(send(fd, part.data(), part.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(part.size()));
  const std::string reply = carapace::testing::ReadUntilClosed(fd);
  close(fd);
  CHECK_THAT(reply, StartsWith("HTTP/1.1 408"));
}

TEST_CASE("connections past the limit are turned away with 503; the ones held do not block the others for good",
          "[http_endpoints]") {
  HttpLimits limits;
  limits.max_connections = 2;
  limits.read_timeout = std::chrono::milliseconds(500);
  Server s(limits);
  int a = Connect(s.port()), b = Connect(s.port());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK_THAT(Exchange(s.port(), "GET /healthz HTTP/1.1\r\n\r\n"), StartsWith("HTTP/1.1 503"));
  close(a);
  close(b);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK_THAT(Exchange(s.port(), "GET /healthz HTTP/1.1\r\n\r\n"), StartsWith("HTTP/1.1 200"));
}

TEST_CASE("a listen address that cannot be used is refused with a reason", "[http_endpoints]") {
  Server s;
  HttpEndpoints other;
  auto taken = other.Start("127.0.0.1:" + std::to_string(s.port()));
  CHECK_FALSE(taken.ok());
  CHECK_THAT(taken.message(), ContainsSubstring("cannot listen"));
  HttpEndpoints bad;
  CHECK_FALSE(bad.Start("no-port-here").ok());
}
