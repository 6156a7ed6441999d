// HTTP requests with a host allow-list, internal-address refusal after DNS resolution and on
// every redirect, and limits on time, size and redirects.
#include "worker/tools/http_tool.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include <cpprest/uri.h>

#include "common/text.h"
#include "worker/tools/address_policy.h"
#include "worker/tools/header_values.h"
#include "worker/tools/http_fetch.h"

namespace carapace {

namespace {

// Headers that carry credentials: not sent on to another origin after a redirect.
bool IsCredential(const std::string& lower_name) {
  return lower_name == "authorization" || lower_name == "cookie" || lower_name == "proxy-authorization";
}

bool IsRedirect(int status) { return status == 301 || status == 302 || status == 303 || status == 307 || status == 308; }

// Resolves a Location header against the URL it came from.
Result<std::string> ResolveLocation(const web::uri& from, const std::string& location) {
  auto checked = [&](std::string url) -> Result<std::string> {
    if (!web::uri::validate(url)) return InvalidArgument("redirect to an invalid location \"" + location + "\"");
    return url;
  };
  std::string lower = AsciiLower(location.substr(0, 8));
  if (lower.rfind("http://", 0) == 0 || lower.rfind("https://", 0) == 0) return checked(location);
  if (location.rfind("//", 0) == 0) return checked(from.scheme() + ":" + location);
  if (location.find(':') != std::string::npos && location.find(':') < location.find_first_of("/?#")) {
    return InvalidArgument("redirect to an unsupported location \"" + location + "\"");
  }
  web::uri_builder b(from);
  b.set_query("");
  b.set_fragment("");
  if (!location.empty() && location[0] == '/') {
    auto q = location.find('?');
    b.set_path(location.substr(0, q));
    if (q != std::string::npos) b.set_query(location.substr(q + 1));
  } else {
    std::string path = from.path();
    path = path.substr(0, path.rfind('/') + 1) + location;
    auto q = path.find('?');
    b.set_path(path.substr(0, q));
    if (q != std::string::npos) b.set_query(path.substr(q + 1));
  }
  try {
    return checked(b.to_string());
  } catch (const std::exception&) {
    return InvalidArgument("redirect to an invalid location \"" + location + "\"");
  }
}

}  // namespace

HttpTool::HttpTool(std::string name, HttpToolOptions options)
    : name_(std::move(name)), options_(std::move(options)) {
  for (const auto& h : options_.headers) {
    if (!h.secret()) configured_headers_.emplace_back(h.name, h.value);
  }
}


Result<std::unique_ptr<Tool>> HttpTool::Create(const std::string& name, const HttpToolOptions& options) {
  std::unique_ptr<HttpTool> tool(new HttpTool(name, options));
  CARAPACE_ASSIGN_OR_RETURN(LoadedHeaders headers, LoadHeaders(options.headers, "tool \"" + name + "\": http.headers"));
  tool->configured_headers_ = std::move(headers.values);
  tool->secret_headers_ = std::move(headers.secret_names);
  return std::unique_ptr<Tool>(std::move(tool));
}

ToolSchema HttpTool::Schema() const {
  std::string hosts;
  for (const auto& h : options_.allowed_hosts) hosts += (hosts.empty() ? "" : ", ") + (h == "*" ? "any public host" : h);
  return {name_,
          "Make an HTTP request. Allowed hosts: " + hosts + ".",
          {{"type", "object"},
           {"properties",
            {{"method", {{"type", "string"}, {"enum", {"GET", "POST", "PUT", "DELETE"}}}},
             {"url", {{"type", "string"}}},
             {"headers", {{"type", "object"}, {"additionalProperties", {{"type", "string"}}}}},
             {"body", {{"type", {"string", "object", "array"}}}}}},
           {"required", {"method", "url"}}}};
}

bool HttpTool::HostAllowed(const std::string& host, int port) const {
  std::string lower = AsciiLower(host);
  for (const auto& allowed : options_.allowed_hosts) {
    std::string a = AsciiLower(allowed);
    if (a == lower || a == lower + ":" + std::to_string(port)) return true;
  }
  return false;
}

Result<HttpTool::Destination> HttpTool::CheckDestination(const web::uri& uri) const {
  if (uri.scheme() != "http" && uri.scheme() != "https") {
    return PermissionDenied("only http and https URLs are allowed, got \"" + uri.scheme() + "\"");
  }
  const int port = uri.port() > 0 ? uri.port() : (uri.scheme() == "https" ? 443 : 80);
  const std::string hostport = uri.host() + ":" + std::to_string(port);
  Destination d;
  // Listed explicitly: the spec's author chose this host, internal or not.
  if (HostAllowed(uri.host(), port)) return d;
  const bool any_public = std::find(options_.allowed_hosts.begin(), options_.allowed_hosts.end(), "*") !=
                          options_.allowed_hosts.end();
  if (!any_public) return PermissionDenied("host " + hostport + " is not in this tool's allowedHosts");
  CARAPACE_ASSIGN_OR_RETURN(auto addresses, resolve_ ? resolve_(uri.host()) : ResolveHost(uri.host()));
  if (addresses.empty()) return Unavailable("cannot resolve " + uri.host() + ": no addresses");
  for (const auto& ip : addresses) {
    CARAPACE_ASSIGN_OR_RETURN(AddressClass c, ClassifyAddress(ip));
    if (c != AddressClass::kPublic) {
      return PermissionDenied("host " + hostport + " resolves to " + ip + " (" + AddressClassName(c) +
                              "), which is refused unless allowedHosts lists the host");
    }
  }
  // Connect to the address just checked, not to a second lookup a DNS server could answer
  // differently; for https the name still goes in SNI and is what the certificate must name.
  d.pinned_address = addresses.front();
  return d;
}

ToolResult HttpTool::Call(const nlohmann::json& args, const ToolContext& context) {
  if (!args.is_object()) return ToolResult::Fail("arguments must be an object");
  if (args.contains("method") && !args["method"].is_string()) return ToolResult::Fail("\"method\" must be a string");
  std::string method = args.contains("method") ? args["method"].get<std::string>() : "GET";
  std::transform(method.begin(), method.end(), method.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  if (method != "GET" && method != "POST" && method != "PUT" && method != "DELETE") {
    return ToolResult::Fail("\"method\" must be GET, POST, PUT or DELETE; got \"" + method + "\"");
  }
  if (!args.contains("url") || !args["url"].is_string()) return ToolResult::Fail("\"url\" (a string) is required");
  std::string url = args["url"].get<std::string>();
  if (!web::uri::validate(url)) return ToolResult::Fail("\"url\" is not a valid URL: " + url);

  std::vector<std::pair<std::string, std::string>> headers;
  if (args.contains("headers")) {
    if (!args["headers"].is_object()) return ToolResult::Fail("\"headers\" must be an object of strings");
    for (const auto& [k, v] : args["headers"].items()) {
      if (!v.is_string()) return ToolResult::Fail("header \"" + k + "\" must be a string");
      std::string value = v.get<std::string>();
      if (!IsHttpToken(k) || value.find_first_of("\r\n") != std::string::npos) {
        return ToolResult::Fail("header \"" + k + "\" has a name or value that is not allowed");
      }
      if (IsToolManagedHeader(k)) {
        return ToolResult::Fail("header \"" + k + "\" is set by the tool and cannot be given");
      }
      headers.emplace_back(k, value);
    }
  }
  std::string body;
  bool has_body = args.contains("body") && !args["body"].is_null();
  if (has_body) body = args["body"].is_string() ? args["body"].get<std::string>() : args["body"].dump();

  const size_t limit = static_cast<size_t>(options_.max_response_bytes);
  std::string origin;  // scheme://host:port of the first request
  for (int hop = 0;; ++hop) {
    web::uri uri(url);
    const int port = uri.port() > 0 ? uri.port() : (uri.scheme() == "https" ? 443 : 80);
    const std::string here = uri.scheme() + "://" + uri.host() + ":" + std::to_string(port);
    if (hop == 0) origin = here;
    auto dest = CheckDestination(uri);
    if (!dest.ok()) {
      return ToolResult::Fail(hop == 0 ? dest.status().message()
                                       : "redirect to " + url + " refused: " + dest.status().message());
    }
    HttpFetchRequest request;
    request.method = method;
    request.url = url;
    request.pinned_address = dest->pinned_address;
    request.timeout_seconds = static_cast<int>(options_.timeout_seconds);
    request.max_body_bytes = limit;
    request.headers.emplace_back("Idempotency-Key", context.idempotency_key);
    if (!context.traceparent.empty()) request.headers.emplace_back("traceparent", context.traceparent);
    bool has_content_type = false;
    auto add = [&](const std::string& k, const std::string& v) {
      std::string lower = AsciiLower(k);
      // The trace context is the worker's when it traces: a second traceparent (or a
      // tracestate for another trace) would leave the receiver to guess.
      if (!context.traceparent.empty() && (lower == "traceparent" || lower == "tracestate")) return;
      if (here != origin && (IsCredential(lower) || std::find(secret_headers_.begin(), secret_headers_.end(), lower) !=
                                                        secret_headers_.end())) {
        return;  // credentials and secret headers stay with their origin
      }
      has_content_type = has_content_type || lower == "content-type";
      request.headers.emplace_back(k, v);
    };
    for (const auto& [k, v] : configured_headers_) add(k, v);
    for (const auto& header : headers) {
      // A header the spec configures is the operator's: the model cannot replace it.
      const std::string name = AsciiLower(header.first);
      bool configured = std::any_of(configured_headers_.begin(), configured_headers_.end(),
                                    [&](const auto& c) { return AsciiLower(c.first) == name; });
      if (!configured) add(header.first, header.second);
    }
    if (has_body) {
      request.body = body;
      if (!has_content_type) request.headers.emplace_back("Content-Type", "application/json");
    }
    auto fetched = HttpFetch(request);
    if (!fetched.ok()) {
      if (fetched.status().code() == StatusCode::kResourceExhausted) return ToolResult::Fail(fetched.status().message());
      if (!HostAllowed(uri.host(), port)) {
        // Reached through "*": say no more than that it failed, so that connection errors
        // cannot be used to map what answers on which internal port.
        return ToolResult::Fail(method + " " + url + " failed");
      }
      return ToolResult::Fail(method + " " + url + " failed: " + fetched.status().message());
    }
    HttpFetchResponse& response = *fetched;
    const int status = response.status;
    if (IsRedirect(status) && response.location) {
      if (hop >= options_.max_redirects) {
        return ToolResult::Fail("more than " + std::to_string(options_.max_redirects) + " redirects, last to " +
                                *response.location);
      }
      auto next = ResolveLocation(uri, *response.location);
      if (!next.ok()) return ToolResult::Fail(next.status().message());
      if (uri.scheme() == "https" && AsciiLower(next->substr(0, 7)) == "http://") {
        return ToolResult::Fail("redirect from https to " + *next + " refused: it would send the request in clear text");
      }
      url = *next;
      // 303, and 301/302 after a POST, continue as GET without a body, as browsers do.
      if (status == 303 || ((status == 301 || status == 302) && method == "POST")) {
        method = "GET";
        has_body = false;
      }
      continue;
    }
    const std::string& type = response.content_type;
    nlohmann::json out = {{"status", status}, {"contentType", type}};
    if (hop > 0) {
      out["url"] = url;
      out["redirects"] = hop;
    }
    if (type.find("json") != std::string::npos) {
      auto parsed = nlohmann::json::parse(response.body, nullptr, false);
      out["body"] = parsed.is_discarded() ? nlohmann::json(response.body) : parsed;
    } else if (type.empty() || type.rfind("text/", 0) == 0 || type.find("xml") != std::string::npos) {
      out["body"] = response.body;
    } else {
      out["body"] = "(" + std::to_string(response.body.size()) + " bytes of " + type + ")";
    }
    ToolResult result = ToolResult::Ok(out);
    if (status >= 400) {
      result.ok = false;
      result.error = "HTTP " + std::to_string(status);
    }
    return result;
  }
}

}  // namespace carapace
