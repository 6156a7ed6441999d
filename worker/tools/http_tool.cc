// HTTP requests with host allow-listing, a time limit and a response size limit.
#include "worker/tools/http_tool.h"

#include <algorithm>

#include <cpprest/containerstream.h>
#include <cpprest/http_client.h>
#include <cpprest/uri.h>

namespace carapace {

namespace http = web::http;

HttpTool::HttpTool(std::string name, HttpToolOptions options)
    : name_(std::move(name)), options_(std::move(options)) {}

ToolSchema HttpTool::Schema() const {
  std::string hosts;
  for (const auto& h : options_.allowed_hosts) hosts += (hosts.empty() ? "" : ", ") + h;
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
  std::string lower = host;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  for (const auto& allowed : options_.allowed_hosts) {
    std::string a = allowed;
    std::transform(a.begin(), a.end(), a.begin(), ::tolower);
    if (a == lower || a == lower + ":" + std::to_string(port)) return true;
  }
  return false;
}

ToolResult HttpTool::Call(const nlohmann::json& args, const ToolContext& context) {
  if (!args.is_object()) return ToolResult::Fail("arguments must be an object");
  if (args.contains("method") && !args["method"].is_string()) return ToolResult::Fail("\"method\" must be a string");
  std::string method = args.contains("method") ? args["method"].get<std::string>() : "GET";
  std::transform(method.begin(), method.end(), method.begin(), ::toupper);
  if (method != "GET" && method != "POST" && method != "PUT" && method != "DELETE") {
    return ToolResult::Fail("\"method\" must be GET, POST, PUT or DELETE; got \"" + method + "\"");
  }
  if (!args.contains("url") || !args["url"].is_string()) return ToolResult::Fail("\"url\" (a string) is required");
  std::string url = args["url"].get<std::string>();
  if (!web::uri::validate(url)) return ToolResult::Fail("\"url\" is not a valid URL: " + url);
  web::uri uri(url);
  if (uri.scheme() != "http" && uri.scheme() != "https") {
    return ToolResult::Fail("only http and https URLs are allowed, got \"" + uri.scheme() + "\"");
  }
  int port = uri.port() > 0 ? uri.port() : (uri.scheme() == "https" ? 443 : 80);
  if (!HostAllowed(uri.host(), port)) {
    return ToolResult::Fail("host " + uri.host() + ":" + std::to_string(port) +
                            " is not in this tool's allowedHosts");
  }

  http::client::http_client_config config;
  config.set_timeout(std::chrono::seconds(options_.timeout_seconds));
  http::http_request request(method);
  request.set_request_uri(uri.resource());
  request.headers().add("Idempotency-Key", context.idempotency_key);
  if (args.contains("headers")) {
    if (!args["headers"].is_object()) return ToolResult::Fail("\"headers\" must be an object of strings");
    for (const auto& [k, v] : args["headers"].items()) {
      if (!v.is_string()) return ToolResult::Fail("header \"" + k + "\" must be a string");
      std::string value = v.get<std::string>();
      if (k.empty() || k.find_first_of("\r\n:") != std::string::npos || value.find_first_of("\r\n") != std::string::npos) {
        return ToolResult::Fail("header \"" + k + "\" has a name or value that is not allowed");
      }
      std::string lower = k;
      std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
      // Host would reach other virtual hosts behind an allowed address; framing headers are
      // the client's; the runtime's Idempotency-Key is what makes retries safe.
      if (lower == "host" || lower == "idempotency-key" || lower == "content-length" ||
          lower == "transfer-encoding" || lower == "connection") {
        return ToolResult::Fail("header \"" + k + "\" is set by the tool and cannot be given");
      }
      request.headers().add(k, value);
    }
  }
  if (args.contains("body") && !args["body"].is_null()) {
    std::string body = args["body"].is_string() ? args["body"].get<std::string>() : args["body"].dump();
    // Bodies go through byte vectors: cpprest's std::string stream buffers trip UBSan and
    // leak under ASan (DESIGN.md, build facts).
    request.set_body(std::vector<unsigned char>(body.begin(), body.end()));
    request.headers().set_content_type("application/json");
  }

  try {
    http::client::http_client client(uri.scheme() + "://" + uri.host() + ":" + std::to_string(port), config);
    pplx::cancellation_token_source cancel;
    http::http_response response = client.request(request, cancel.get_token()).get();
    const size_t limit = static_cast<size_t>(options_.max_response_bytes);
    // Stops the download and waits for cpprest to finish with it, so no transfer outlives
    // the call (it would keep writing into a body nobody reads).
    auto abandon = [&](const std::string& why) {
      cancel.cancel();
      try {
        response.content_ready().wait();
      } catch (...) {
        // cancelled, as asked
      }
      return ToolResult::Fail(why);
    };
    if (response.headers().content_length() > limit) {
      return abandon("response of " + std::to_string(response.headers().content_length()) +
                     " bytes is over the limit of " + std::to_string(limit));
    }
    // Read in chunks so a body without Content-Length cannot grow past the limit.
    concurrency::streams::container_buffer<std::vector<uint8_t>> buf;
    auto body = response.body();
    for (;;) {
      size_t n = body.read(buf, 64 * 1024).get();
      if (n == 0) break;
      if (buf.collection().size() > limit) {
        return abandon("response is over the limit of " + std::to_string(limit) + " bytes");
      }
    }
    const auto& bytes = buf.collection();
    std::string text(bytes.begin(), bytes.end());
    std::string type = response.headers().content_type();
    nlohmann::json out = {{"status", response.status_code()}, {"contentType", type}};
    if (type.find("json") != std::string::npos) {
      auto parsed = nlohmann::json::parse(text, nullptr, false);
      out["body"] = parsed.is_discarded() ? nlohmann::json(text) : parsed;
    } else if (type.empty() || type.rfind("text/", 0) == 0 || type.find("xml") != std::string::npos) {
      out["body"] = text;
    } else {
      out["body"] = "(" + std::to_string(bytes.size()) + " bytes of " + type + ")";
    }
    ToolResult result = ToolResult::Ok(out);
    if (response.status_code() >= 400) {
      result.ok = false;
      result.error = "HTTP " + std::to_string(response.status_code());
    }
    return result;
  } catch (const std::exception& e) {
    return ToolResult::Fail(method + " " + url + " failed: " + e.what());
  }
}

}  // namespace carapace
