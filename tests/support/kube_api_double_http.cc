// The Kubernetes API double's HTTP/1.1 server: request parsing (tolerant of bad input: a
// malformed request gets a 400 and the connection closes) and reply framing.
#include "tests/support/kube_api_double_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstring>

#include "tests/support/socket_io.h"

namespace carapace::testing::kube_double {

namespace {

constexpr size_t kMaxHeaderBytes = 1 << 20;
constexpr size_t kMaxBodyBytes = 64u << 20;
constexpr int kPollMs = 200;

const char* ReasonPhrase(int code) {
  switch (code) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 413:
      return "Request Entity Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Entity";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Status";
  }
}

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void ParseQuery(const std::string& text, std::map<std::string, std::string>* query) {
  size_t at = 0;
  while (at <= text.size()) {
    size_t amp = text.find('&', at);
    if (amp == std::string::npos) amp = text.size();
    std::string pair = text.substr(at, amp - at);
    if (!pair.empty()) {
      size_t eq = pair.find('=');
      std::string key = PercentDecode(pair.substr(0, eq), true);
      (*query)[key] = eq == std::string::npos ? "" : PercentDecode(pair.substr(eq + 1), true);
    }
    at = amp + 1;
  }
}

// Reads from the socket into `buffer` until it holds at least `want` bytes. False when the
// peer closed, an error occurred, or the server is stopping.
class SocketReader {
 public:
  SocketReader(int fd, const std::atomic<bool>& stopping) : fd_(fd), stopping_(stopping) {}

  bool Fill(std::string* buffer) {
    char chunk[16384];
    while (true) {
      if (stopping_) return false;
      pollfd p{fd_, POLLIN, 0};
      int ready = ::poll(&p, 1, kPollMs);
      if (ready < 0 && errno != EINTR) return false;
      if (ready <= 0) continue;
      ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) return false;
      buffer->append(chunk, static_cast<size_t>(n));
      return true;
    }
  }

  // Makes `buffer` hold `want` bytes.
  bool FillTo(std::string* buffer, size_t want) {
    while (buffer->size() < want) {
      if (!Fill(buffer)) return false;
    }
    return true;
  }

 private:
  int fd_;
  const std::atomic<bool>& stopping_;
};

enum class ParseOutcome { kOk, kClosed, kBadRequest, kTooLarge };

// Decodes a chunked request body from the front of `buffer`.
ParseOutcome ReadChunkedBody(SocketReader& reader, std::string* buffer, std::string* body) {
  while (true) {
    size_t line_end;
    while ((line_end = buffer->find("\r\n")) == std::string::npos) {
      if (buffer->size() > 1024) return ParseOutcome::kBadRequest;
      if (!reader.Fill(buffer)) return ParseOutcome::kClosed;
    }
    std::string size_text = buffer->substr(0, buffer->find_first_of(";\r"));
    char* end = nullptr;
    unsigned long long size = std::strtoull(size_text.c_str(), &end, 16);
    if (size_text.empty() || end == nullptr || *end != '\0') return ParseOutcome::kBadRequest;
    if (body->size() + size > kMaxBodyBytes) return ParseOutcome::kTooLarge;
    buffer->erase(0, line_end + 2);
    if (size == 0) {
      // Trailers end with an empty line; we keep none of them.
      while (true) {
        while ((line_end = buffer->find("\r\n")) == std::string::npos) {
          if (!reader.Fill(buffer)) return ParseOutcome::kClosed;
        }
        bool last = line_end == 0;
        buffer->erase(0, line_end + 2);
        if (last) return ParseOutcome::kOk;
      }
    }
    if (!reader.FillTo(buffer, size + 2)) return ParseOutcome::kClosed;
    body->append(*buffer, 0, size);
    buffer->erase(0, size + 2);
  }
}

// Reads one request from the connection; `buffer` keeps bytes of the next one.
ParseOutcome ReadRequest(int fd, SocketReader& reader, std::string* buffer, HttpRequest* request) {
  size_t header_end;
  while ((header_end = buffer->find("\r\n\r\n")) == std::string::npos) {
    if (buffer->size() > kMaxHeaderBytes) return ParseOutcome::kTooLarge;
    if (!reader.Fill(buffer)) return ParseOutcome::kClosed;
  }
  std::string head = buffer->substr(0, header_end);
  buffer->erase(0, header_end + 4);
  size_t line_end = head.find("\r\n");
  std::string request_line = head.substr(0, line_end);
  size_t sp1 = request_line.find(' ');
  size_t sp2 = sp1 == std::string::npos ? std::string::npos : request_line.find(' ', sp1 + 1);
  if (sp1 == std::string::npos || sp2 == std::string::npos) return ParseOutcome::kBadRequest;
  request->method = request_line.substr(0, sp1);
  std::string target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string version = request_line.substr(sp2 + 1);
  if (request->method.empty() || target.empty() || target[0] != '/' || version.rfind("HTTP/1.", 0) != 0) {
    return ParseOutcome::kBadRequest;
  }
  size_t question = target.find('?');
  request->path = PercentDecode(target.substr(0, question), false);
  if (question != std::string::npos) ParseQuery(target.substr(question + 1), &request->query);
  if (version == "HTTP/1.0") request->headers["connection"] = "close";

  size_t at = line_end;
  while (at != std::string::npos && at < head.size()) {
    size_t next = head.find("\r\n", at + 2);
    std::string line = head.substr(at + 2, next == std::string::npos ? std::string::npos : next - at - 2);
    at = next;
    size_t colon = line.find(':');
    if (colon == std::string::npos || colon == 0) return ParseOutcome::kBadRequest;
    request->headers[Lower(line.substr(0, colon))] = Trim(line.substr(colon + 1));
  }

  if (Lower(request->Header("expect")) == "100-continue") {
    if (!SendAll(fd, "HTTP/1.1 100 Continue\r\n\r\n")) return ParseOutcome::kClosed;
  }
  if (Lower(request->Header("transfer-encoding")).find("chunked") != std::string::npos) {
    return ReadChunkedBody(reader, buffer, &request->body);
  }
  std::string length_text = request->Header("content-length");
  if (length_text.empty()) return ParseOutcome::kOk;
  for (char c : length_text) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return ParseOutcome::kBadRequest;
  }
  if (length_text.size() > 12) return ParseOutcome::kTooLarge;
  size_t length = std::stoull(length_text);
  if (length > kMaxBodyBytes) return ParseOutcome::kTooLarge;
  if (!reader.FillTo(buffer, length)) return ParseOutcome::kClosed;
  request->body = buffer->substr(0, length);
  buffer->erase(0, length);
  return ParseOutcome::kOk;
}

std::string StatusLine(int code) { return "HTTP/1.1 " + std::to_string(code) + " " + ReasonPhrase(code) + "\r\n"; }

}  // namespace

std::string PercentDecode(const std::string& text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%' && i + 2 < text.size()) {
      int hi = HexValue(text[i + 1]), lo = HexValue(text[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && c == '+' ? ' ' : c);
  }
  return out;
}

std::string HttpRequest::Header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? "" : it->second;
}

std::string HttpRequest::Query(const std::string& name) const {
  auto it = query.find(name);
  return it == query.end() ? "" : it->second;
}

bool HttpConnection::Reply(int code, const std::string& content_type, const std::string& body,
                           const HttpHeaders& extra) {
  std::string head = StatusLine(code) + "Content-Type: " + content_type +
                     "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  for (const auto& [name, value] : extra) head += name + ": " + value + "\r\n";
  head += "\r\n";
  return SendAll(fd_, head + body);
}

bool HttpConnection::StartChunked(int code, const std::string& content_type) {
  return SendAll(fd_, StatusLine(code) + "Content-Type: " + content_type +
                          "\r\nTransfer-Encoding: chunked\r\nCache-Control: no-cache, private\r\n\r\n");
}

bool HttpConnection::SendChunk(const std::string& data) {
  if (data.empty()) return true;  // an empty chunk would end the body
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  return SendAll(fd_, size + data + "\r\n");
}

bool HttpConnection::EndChunked() { return SendAll(fd_, "0\r\n\r\n"); }

void HttpConnection::Abort() { ::shutdown(fd_, SHUT_RDWR); }

bool HttpConnection::PeerClosed() const {
  pollfd p{fd_, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
  char byte;
  return ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

Status HttpServer::Start(int port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return Unavailable(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 128) != 0) {
    std::string error = std::strerror(errno);
    ::close(listen_fd_);
    listen_fd_ = -1;
    return Unavailable("listen on 127.0.0.1:" + std::to_string(port) + ": " + error);
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  stopping_ = false;
  acceptor_ = std::thread([this] { AcceptLoop(); });
  return Status::Ok();
}

void HttpServer::AcceptLoop() {
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, kPollMs) <= 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;  // watch events are small writes that must go out at once
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ReapFinished();
    std::lock_guard<std::mutex> lock(mu_);
    auto connection = std::make_unique<Connection>();
    connection->fd = fd;
    Connection* raw = connection.get();
    connections_.push_back(std::move(connection));
    raw->thread = std::thread([this, raw] { Serve(raw); });
  }
}

void HttpServer::ReapFinished() {
  std::list<std::unique_ptr<Connection>> finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      if ((*it)->done) {
        finished.push_back(std::move(*it));
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& c : finished) c->thread.join();
}

void HttpServer::Serve(Connection* connection) {
  int fd = connection->fd;
  SocketReader reader(fd, stopping_);
  HttpConnection conn(fd);
  std::string buffer;
  while (!stopping_) {
    HttpRequest request;
    ParseOutcome outcome = ReadRequest(fd, reader, &buffer, &request);
    if (outcome == ParseOutcome::kBadRequest) {
      conn.Reply(400, "text/plain", "malformed HTTP request\n", {{"Connection", "close"}});
      break;
    }
    if (outcome == ParseOutcome::kTooLarge) {
      conn.Reply(413, "text/plain", "request too large\n", {{"Connection", "close"}});
      break;
    }
    if (outcome != ParseOutcome::kOk) break;
    bool keep = handler_(request, conn);
    if (!keep || Lower(request.Header("connection")) == "close") break;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    ::close(fd);
    connection->fd = -1;
  }
  connection->done = true;
}

void HttpServer::Stop() {
  if (listen_fd_ < 0) return;
  stopping_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  std::list<std::unique_ptr<Connection>> connections;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Wakes threads blocked in a send to a client that stopped reading.
    for (auto& c : connections_) {
      if (c->fd >= 0) ::shutdown(c->fd, SHUT_RDWR);
    }
    connections.swap(connections_);
  }
  for (auto& c : connections) c->thread.join();
  ::close(listen_fd_);
  listen_fd_ = -1;
}

}  // namespace carapace::testing::kube_double
