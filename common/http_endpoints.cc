// GET endpoints over a bounded HTTP/1.1 server (see http_endpoints.h).
#include "common/http_endpoints.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <list>
#include <thread>
#include <vector>

#include "common/text.h"

namespace carapace {

namespace {

using Clock = std::chrono::steady_clock;

const char* Reason(int code) {
  switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Status";
  }
}

std::string Response(int code, const std::string& content_type, const std::string& body, bool head_only,
                     const std::string& extra_headers = "") {
  std::string out = "HTTP/1.1 " + std::to_string(code) + " " + Reason(code) + "\r\nContent-Type: " + content_type +
                    "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra_headers +
                    "Connection: close\r\n\r\n";
  if (!head_only) out += body;
  return out;
}

std::string Refusal(int code, const std::string& why, const std::string& extra_headers = "") {
  return Response(code, "text/plain", why + "\n", false, extra_headers);
}

}  // namespace

HttpRequestHead ParseRequestHead(std::string_view head, const HttpLimits& limits) {
  HttpRequestHead out;
  auto refuse = [&](int code, std::string why) {
    out.refusal = code;
    out.reason = std::move(why);
    return out;
  };
  if (head.size() > limits.max_header_bytes) {
    return refuse(431, "the request head is over " + std::to_string(limits.max_header_bytes) + " bytes");
  }
  const size_t line_end = head.find("\r\n");
  if (line_end == std::string_view::npos) return refuse(400, "malformed request line");
  if (line_end > limits.max_request_line) {
    return refuse(414, "the request line is over " + std::to_string(limits.max_request_line) + " bytes");
  }
  const std::string_view request_line = head.substr(0, line_end);
  const size_t sp1 = request_line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? std::string_view::npos : request_line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos ||
      request_line.find(' ', sp2 + 1) != std::string_view::npos) {
    return refuse(400, "malformed request line");
  }
  const std::string method(request_line.substr(0, sp1));
  const std::string_view target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = request_line.substr(sp2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return refuse(505, "only HTTP/1.0 and HTTP/1.1 are served");
  size_t headers = 0;
  for (size_t at = line_end + 2; at < head.size();) {
    const size_t end = head.find("\r\n", at);
    if (end == std::string_view::npos) return refuse(400, "malformed header line");
    if (end == at) break;  // the blank line
    const std::string_view line = head.substr(at, end - at);
    at = end + 2;
    if (++headers > limits.max_headers) {
      return refuse(431, "more than " + std::to_string(limits.max_headers) + " header lines");
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0 || line[0] == ' ' || line[0] == '\t') {
      return refuse(400, "malformed header line");
    }
    const std::string name = AsciiLower(line.substr(0, colon));
    const std::string_view value = TrimHttpSpace(line.substr(colon + 1));
    if (name == "transfer-encoding" || (name == "content-length" && value != "0")) {
      return refuse(413, "these endpoints take no request body");
    }
    auto [it, fresh] = out.headers.try_emplace(name, value);
    if (!fresh) it->second += ", " + std::string(value);
  }
  if (method != "GET" && method != "HEAD") return refuse(405, "only GET and HEAD are served");
  out.method = method;
  const size_t question = target.find('?');
  out.path = std::string(target.substr(0, question));
  if (question != std::string_view::npos) out.query = std::string(target.substr(question + 1));
  return out;
}

std::string HttpRequestHead::Header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

struct HttpEndpoints::Server {
  struct Connection {
    int fd = -1;
    std::string in;          // the request head so far (never more than the limits)
    std::string out;         // the reply being written
    size_t written = 0;
    bool replying = false;   // the head is read (or refused): writing `out`
    bool draining = false;   // reply written: reading what the client still sends, then close
    Clock::time_point deadline;
  };

  const HttpLimits limits;
  const std::map<std::string, Handler>& handlers;
  int listen_fd = -1;
  int wake[2] = {-1, -1};
  int bound_port = 0;
  std::atomic<bool> stopping{false};
  std::list<Connection> connections;
  std::thread thread;

  Server(const HttpLimits& l, const std::map<std::string, Handler>& h) : limits(l), handlers(h) {}

  ~Server() {
    for (auto& c : connections) close(c.fd);
    if (listen_fd >= 0) close(listen_fd);
    if (wake[0] >= 0) close(wake[0]);
    if (wake[1] >= 0) close(wake[1]);
  }

  void Reply(Connection& c, std::string response) {
    c.in.clear();
    c.in.shrink_to_fit();
    c.out = std::move(response);
    c.written = 0;
    c.replying = true;
    c.deadline = Clock::now() + limits.write_timeout;
  }

  // The whole head is in `c.in` (up to and including the blank line): answer it.
  std::string Answer(const std::string& head) {
    const HttpRequestHead request = ParseRequestHead(head, limits);
    if (request.refusal != 0) {
      return Refusal(request.refusal, request.reason, request.refusal == 405 ? "Allow: GET, HEAD\r\n" : "");
    }
    const bool head_only = request.method == "HEAD";
    auto it = handlers.find(request.path);
    if (it == handlers.end()) return Response(404, "text/plain", "not found: " + request.path + "\n", head_only);
    HttpReply reply;
    try {
      reply = it->second(request);
    } catch (const std::exception& e) {
      reply = {500, std::string("the handler failed: ") + e.what() + "\n"};
    }
    std::string extra;
    for (const auto& [name, value] : reply.headers) {
      if ((name + value).find_first_of("\r\n") != std::string::npos) {
        return Response(500, "text/plain", "the handler's reply has a header with a line break\n", head_only);
      }
      extra += name + ": " + value + "\r\n";
    }
    return Response(reply.code, reply.content_type, reply.body, head_only, extra);
  }

  // Reads what is there; answers once the head is complete, or refuses it once it is over
  // a limit. Returns false when the connection is done with.
  bool OnReadable(Connection& c) {
    char buf[4096];
    for (;;) {
      ssize_t n = recv(c.fd, buf, sizeof buf, 0);
      if (n == 0) return false;  // the peer closed its side: nothing more to answer
      if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
      if (c.draining || c.replying) continue;  // what follows a refused or answered request is discarded
      const size_t before = c.in.size();
      c.in.append(buf, static_cast<size_t>(n));
      // Only the bytes just read can hold the end of the head (or of the request line).
      const size_t from = before >= 3 ? before - 3 : 0;
      const size_t head_end = c.in.find("\r\n\r\n", from);
      const size_t line_end = c.in.find("\r\n");
      if (line_end == std::string::npos ? c.in.size() > limits.max_request_line : line_end > limits.max_request_line) {
        Reply(c, Refusal(414, "the request line is over " + std::to_string(limits.max_request_line) + " bytes"));
        return true;
      }
      if (head_end == std::string::npos) {
        if (c.in.size() > limits.max_header_bytes) {
          Reply(c, Refusal(431, "the request head is over " + std::to_string(limits.max_header_bytes) + " bytes"));
          return true;
        }
        continue;
      }
      Reply(c, Answer(c.in.substr(0, head_end + 4)));  // ParseRequestHead holds it to the limits
      return true;
    }
  }

  // Writes what it can of the reply. Returns false when the connection is done with.
  bool OnWritable(Connection& c) {
    while (c.written < c.out.size()) {
      ssize_t n = send(c.fd, c.out.data() + c.written, c.out.size() - c.written, MSG_NOSIGNAL);
      if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
      c.written += static_cast<size_t>(n);
    }
    // All written: stop sending, and read (and drop) what the client still sends for a
    // moment, so closing does not reset the connection before it has read the reply.
    shutdown(c.fd, SHUT_WR);
    c.out.clear();
    c.out.shrink_to_fit();
    c.replying = false;
    c.draining = true;
    c.deadline = Clock::now() + std::chrono::seconds(2);
    return true;
  }

  void Accept() {
    for (;;) {
      int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      if (static_cast<int>(connections.size()) >= limits.max_connections) {
        const std::string busy = Refusal(503, "too many connections");
        (void)!send(fd, busy.data(), busy.size(), MSG_NOSIGNAL);
        close(fd);
        continue;
      }
      Connection c;
      c.fd = fd;
      c.deadline = Clock::now() + limits.read_timeout;
      connections.push_back(std::move(c));
    }
  }

  void Loop() {
    std::vector<pollfd> fds;
    while (!stopping) {
      fds.clear();
      fds.push_back({wake[0], POLLIN, 0});
      fds.push_back({listen_fd, POLLIN, 0});
      auto next_deadline = Clock::now() + std::chrono::seconds(1);
      for (const auto& c : connections) {
        fds.push_back({c.fd, static_cast<short>(c.replying ? POLLOUT : POLLIN), 0});
        next_deadline = std::min(next_deadline, c.deadline);
      }
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_deadline - Clock::now()).count();
      if (poll(fds.data(), fds.size(), static_cast<int>(std::clamp<int64_t>(wait, 0, 1000))) < 0 && errno != EINTR) break;
      if (fds[0].revents & POLLIN) break;  // Stop()
      // Connections first (their pollfds follow the two fixed ones, in list order), then
      // new ones: a connection accepted now has no pollfd yet.
      const auto now = Clock::now();
      size_t i = 2;
      for (auto it = connections.begin(); it != connections.end(); ++i) {
        Connection& c = *it;
        bool keep = true;
        const short ev = fds[i].revents;
        if (ev & (POLLERR | POLLNVAL)) {
          keep = false;
        } else if (c.replying && (ev & (POLLOUT | POLLHUP))) {
          keep = OnWritable(c);
        } else if (!c.replying && (ev & (POLLIN | POLLHUP))) {
          keep = OnReadable(c);
          if (keep && c.replying) keep = OnWritable(c);  // most replies fit the socket buffer at once
        }
        if (keep && now >= c.deadline) {
          if (!c.replying && !c.draining) {
            Reply(c, Refusal(408, "the request head did not arrive within " +
                                      std::to_string(limits.read_timeout.count()) + " ms"));
            keep = OnWritable(c);
          } else {
            keep = false;  // a reader too slow for the reply, or the drain is over
          }
        }
        if (!keep) {
          close(c.fd);
          it = connections.erase(it);
        } else {
          ++it;
        }
      }
      if (fds[1].revents & POLLIN) Accept();
    }
  }
};

HttpEndpoints::HttpEndpoints(HttpLimits limits) : limits_(limits) {}
HttpEndpoints::~HttpEndpoints() { Stop(); }

void HttpEndpoints::Handle(const std::string& path, Handler handler) { handlers_[path] = std::move(handler); }

void HttpEndpoints::Handle(const std::string& path, std::function<HttpReply()> handler) {
  handlers_[path] = [handler = std::move(handler)](const HttpRequest&) { return handler(); };
}

int HttpEndpoints::port() const { return server_ ? server_->bound_port : 0; }

Status HttpEndpoints::Start(const std::string& address) {
  if (server_) return FailedPrecondition("already listening");
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) {
    return InvalidArgument("listen address \"" + address + "\" is not host:port");
  }
  std::string host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return InvalidArgument("listen address \"" + address + "\": " + gai_strerror(rc));
  }
  auto server = std::make_unique<Server>(limits_, handlers_);
  std::string error = "no address";
  for (addrinfo* a = found; a && server->listen_fd < 0; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 128) == 0) {
      server->listen_fd = fd;
    } else {
      error = std::strerror(errno);
      close(fd);
    }
  }
  freeaddrinfo(found);
  if (server->listen_fd < 0) return Unavailable("cannot listen on http://" + address + ": " + error);
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  getsockname(server->listen_fd, reinterpret_cast<sockaddr*>(&bound), &len);
  server->bound_port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                         : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  if (pipe2(server->wake, O_CLOEXEC) != 0) return Unavailable(std::string("cannot make a pipe: ") + std::strerror(errno));
  Server* s = server.get();
  server->thread = std::thread([s] { s->Loop(); });
  server_ = std::move(server);
  return Status::Ok();
}

void HttpEndpoints::Stop() {
  if (!server_) return;
  server_->stopping = true;
  (void)!write(server_->wake[1], "x", 1);
  if (server_->thread.joinable()) server_->thread.join();
  server_.reset();
}

}  // namespace carapace
