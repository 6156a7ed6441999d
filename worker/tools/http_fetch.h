// One HTTP request and its reply, over libcurl, for the http tool: no redirects followed
// (the tool checks every hop itself), only http and https, a reply body held to a limit
// as it arrives, and optionally a pinned address: the connection goes to the address the
// tool checked, while the URL's host name stays what is sent as Host, as TLS SNI and what
// the certificate is verified against. A second DNS lookup (which a hostile DNS server
// could answer with an internal address) never happens.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace carapace {

struct HttpFetchRequest {
  std::string method = "GET";  // GET, POST, PUT, DELETE
  std::string url;             // http(s)://host[:port]/path?query
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<std::string> body;
  // When set, the connection for the URL's host and port goes to this address (IPv4 or IPv6
  // text) and nowhere else.
  std::string pinned_address;
  int timeout_seconds = 30;
  size_t max_body_bytes = 1 << 20;
  size_t max_header_bytes = 64 << 10;
};

struct HttpFetchResponse {
  int status = 0;
  std::string content_type;
  std::optional<std::string> location;  // the Location header, for a redirect
  std::string body;
};

// Errors: kResourceExhausted when the reply's body or headers pass their limits (the
// transfer is stopped there: nothing more is read); kUnavailable for a failed transfer
// (message: curl's reason); kInvalidArgument for a request that cannot be made.
Result<HttpFetchResponse> HttpFetch(const HttpFetchRequest& request);

}  // namespace carapace
