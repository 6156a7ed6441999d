// libcurl, one easy handle per request (see http_fetch.h).
#include "worker/tools/http_fetch.h"

#include <curl/curl.h>

#include <memory>
#include <mutex>

#include "common/text.h"

namespace carapace {

namespace {

struct Transfer {
  const HttpFetchRequest* request;
  HttpFetchResponse response;
  size_t header_bytes = 0;
  bool over_body = false;
  bool over_headers = false;
};

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  if (t->response.body.size() + n > t->request->max_body_bytes) {
    t->over_body = true;
    return 0;  // stops the transfer (CURLE_WRITE_ERROR)
  }
  t->response.body.append(data, n);
  return n;
}

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  t->header_bytes += n;
  if (t->header_bytes > t->request->max_header_bytes) {
    t->over_headers = true;
    return 0;
  }
  const std::string_view line(data, n);
  if (line.substr(0, 5) == "HTTP/") {  // a new reply's status line (after a 100 Continue, say)
    t->response.content_type.clear();
    t->response.location.reset();
    return n;
  }
  const size_t colon = line.find(':');
  if (colon == std::string::npos) return n;
  const std::string name = AsciiLower(line.substr(0, colon));
  const std::string value(TrimHttpSpace(line.substr(colon + 1)));
  if (name == "content-type") t->response.content_type = value;
  if (name == "location") t->response.location = value;
  return n;
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

}  // namespace

Result<HttpFetchResponse> HttpFetch(const HttpFetchRequest& request) {
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) return Internal("libcurl could not make a handle");
  CURL* c = curl.get();
  Transfer t{&request, {}, 0, false, false};

  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> url(curl_url(), curl_url_cleanup);
  if (curl_url_set(url.get(), CURLUPART_URL, request.url.c_str(), 0) != CURLUE_OK) {
    return InvalidArgument("not a URL curl can use: " + request.url);
  }
  std::unique_ptr<curl_slist, SlistDeleter> resolve;
  if (!request.pinned_address.empty()) {
    char* host = nullptr;
    char* port = nullptr;
    curl_url_get(url.get(), CURLUPART_HOST, &host, 0);
    curl_url_get(url.get(), CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    std::string h = host ? host : "", p = port ? port : "";
    curl_free(host);
    curl_free(port);
    if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    const std::string address =
        request.pinned_address.find(':') != std::string::npos ? "[" + request.pinned_address + "]" : request.pinned_address;
    resolve.reset(curl_slist_append(nullptr, (h + ":" + p + ":" + address).c_str()));
    curl_easy_setopt(c, CURLOPT_RESOLVE, resolve.get());
  }

  curl_easy_setopt(c, CURLOPT_CURLU, url.get());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, static_cast<long>(request.timeout_seconds));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, static_cast<long>(std::min(request.timeout_seconds, 10)));
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");  // the address checked is the one connected to, never a proxy's
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  if (request.max_body_bytes < static_cast<size_t>(INT64_MAX)) {
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(request.max_body_bytes));
  }

  std::unique_ptr<curl_slist, SlistDeleter> headers;
  auto add_header = [&](const std::string& line) {
    curl_slist* next = curl_slist_append(headers.get(), line.c_str());
    if (next) {
      (void)headers.release();
      headers.reset(next);
    }
  };
  for (const auto& [k, v] : request.headers) add_header(k + ": " + v);
  add_header("Expect:");  // no 100-continue round trip
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());

  if (request.method == "POST") {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
  } else if (request.method != "GET") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  if (request.body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body->size()));
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body->data());
  } else if (request.method == "POST") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(0));
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
  }

  const CURLcode rc = curl_easy_perform(c);
  if (t.over_body || rc == CURLE_FILESIZE_EXCEEDED) {
    return ResourceExhausted("response is over the limit of " + std::to_string(request.max_body_bytes) + " bytes");
  }
  if (t.over_headers) {
    return ResourceExhausted("response headers are over the limit of " + std::to_string(request.max_header_bytes) +
                             " bytes");
  }
  if (rc != CURLE_OK) return Unavailable(curl_easy_strerror(rc));
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  t.response.status = static_cast<int>(status);
  return std::move(t.response);
}

}  // namespace carapace
