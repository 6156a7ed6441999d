// The http tool against a real HTTP server on loopback: allowed hosts only, the
// idempotency key on every request, limits on what comes back.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "tests/support/ledger_server.h"
#include "common/redact.h"
#include "tests/support/child_process.h"
#include "tests/support/loopback_listener.h"
#include "tests/support/socket_io.h"
#include "worker/tools/address_policy.h"
#include "worker/tools/http_tool.h"

using namespace carapace;
using carapace::testing::LedgerServer;
using Catch::Matchers::ContainsSubstring;
using nlohmann::json;

TEST_CASE("requests reach allowed hosts with the call's idempotency key", "[tools][http]") {
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  HttpToolOptions opts;
  opts.allowed_hosts = {"127.0.0.1:" + std::to_string(ledger.port())};
  HttpTool tool("api", opts);
  auto r = tool.Call({{"method", "POST"}, {"url", ledger.url() + "/orders"}, {"body", {{"item", "paper"}}}},
                     ToolContext{"s1c0", "key-123"});
  INFO(r.error);
  REQUIRE(r.ok);
  CHECK(r.output["status"] == 200);
  CHECK(r.output["body"] == LedgerServer::AnswerFor("POST", "/orders", "key-123"));
  auto entries = ledger.entries();
  REQUIRE(entries.size() == 1);
  CHECK(entries[0].method == "POST");
  CHECK(entries[0].path == "/orders");
  CHECK(entries[0].idempotency_key == "key-123");
  CHECK(json::parse(entries[0].body) == json{{"item", "paper"}});
}

TEST_CASE("a host that is not allowed is refused before any request is sent", "[tools][http]") {
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  HttpToolOptions opts;
  opts.allowed_hosts = {"127.0.0.1:1"};  // another port
  HttpTool tool("api", opts);
  auto r = tool.Call({{"method", "GET"}, {"url", ledger.url() + "/x"}}, ToolContext{"c", "k"});
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, ContainsSubstring("is not in this tool's allowedHosts"));
  CHECK(ledger.entries().empty());
  auto other = tool.Call({{"method", "GET"}, {"url", "http://169.254.169.254/latest/meta-data"}}, ToolContext{"c", "k"});
  CHECK_FALSE(other.ok);
  CHECK_THAT(other.error, ContainsSubstring("169.254.169.254:80 is not in this tool's allowedHosts"));
}

TEST_CASE("bad http arguments get a clear error", "[tools][http]") {
  HttpToolOptions opts;
  opts.allowed_hosts = {"127.0.0.1"};
  HttpTool tool("api", opts);
  ToolContext ctx{"c", "k"};
  CHECK_THAT(tool.Call({{"method", "PATCH"}, {"url", "http://127.0.0.1/"}}, ctx).error, ContainsSubstring("must be GET, POST, PUT or DELETE"));
  CHECK_THAT(tool.Call({{"method", "GET"}}, ctx).error, ContainsSubstring("\"url\" (a string) is required"));
  CHECK_THAT(tool.Call({{"method", "GET"}, {"url", "ftp://127.0.0.1/x"}}, ctx).error, ContainsSubstring("only http and https"));
  CHECK_THAT(tool.Call({{"method", "GET"}, {"url", "http://127.0.0.1/"}, {"headers", {{"X", 1}}}}, ctx).error,
             ContainsSubstring("header \"X\" must be a string"));
  CHECK_THAT(tool.Call({{"method", nullptr}, {"url", "http://127.0.0.1/"}}, ctx).error, ContainsSubstring("\"method\" must be a string"));
  for (const char* header : {"Host", "idempotency-key", "Content-Length", "Transfer-Encoding"}) {
    INFO(header);
    CHECK_THAT(tool.Call({{"method", "GET"}, {"url", "http://127.0.0.1/"}, {"headers", {{header, "x"}}}}, ctx).error,
               ContainsSubstring("is set by the tool and cannot be given"));
  }
  CHECK_THAT(tool.Call({{"method", "GET"}, {"url", "http://127.0.0.1/"}, {"headers", {{"X-A", "a\r\nHost: evil"}}}}, ctx).error,
             ContainsSubstring("not allowed"));
}

TEST_CASE("a response over the size limit is refused", "[tools][http]") {
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  HttpToolOptions opts;
  opts.allowed_hosts = {"127.0.0.1:" + std::to_string(ledger.port())};
  opts.max_response_bytes = 10;  // the ledger's answers are longer
  HttpTool tool("api", opts);
  auto r = tool.Call({{"method", "GET"}, {"url", ledger.url() + "/stock"}}, ToolContext{"c", "k"});
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, ContainsSubstring("over the limit of 10"));
}

TEST_CASE("an unreachable server is an error result, not a crash", "[tools][http]") {
  HttpToolOptions opts;
  opts.allowed_hosts = {"127.0.0.1:9"};  // discard port: nothing listens
  opts.timeout_seconds = 2;
  HttpTool tool("api", opts);
  auto r = tool.Call({{"method", "GET"}, {"url", "http://127.0.0.1:9/"}}, ToolContext{"c", "k"});
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, ContainsSubstring("GET http://127.0.0.1:9/ failed"));
}

TEST_CASE("with \"*\", public hosts are allowed and internal addresses refused after DNS resolution", "[tools][http]") {
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  HttpToolOptions opts;
  opts.allowed_hosts = {"*"};
  HttpTool tool("web", opts);
  ToolContext ctx{"c", "k"};
  struct Case {
    std::string url;
    std::string why;
  };
  std::vector<Case> cases = {
      {"http://localhost:" + std::to_string(ledger.port()) + "/x", "resolves to 127.0.0.1 (loopback)"},
      {ledger.url() + "/x", "resolves to 127.0.0.1 (loopback)"},
      {"http://169.254.169.254/latest/meta-data/", "169.254.169.254 (link-local)"},
      {"http://10.1.2.3/", "10.1.2.3 (private)"},
      {"http://192.168.0.1/", "(private)"},
      {"http://[::1]:" + std::to_string(ledger.port()) + "/", "(loopback)"},
      {"http://[fd00::1]/", "(unique-local)"},
      {"http://0.0.0.0/", "(unspecified)"},
  };
  for (const auto& c : cases) {
    INFO(c.url);
    auto r = tool.Call({{"method", "GET"}, {"url", c.url}}, ctx);
    CHECK_FALSE(r.ok);
    CHECK_THAT(r.error, ContainsSubstring(c.why));
    CHECK_THAT(r.error, ContainsSubstring("refused unless allowedHosts lists the host"));
  }
  CHECK(ledger.entries().empty());  // nothing was sent anywhere
}

TEST_CASE("an explicitly listed internal host is allowed alongside \"*\"", "[tools][http]") {
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  HttpToolOptions opts;
  opts.allowed_hosts = {"*", "127.0.0.1:" + std::to_string(ledger.port())};
  HttpTool tool("web", opts);
  auto r = tool.Call({{"method", "GET"}, {"url", ledger.url() + "/stock"}}, ToolContext{"c", "k"});
  INFO(r.error);
  CHECK(r.ok);
  CHECK(ledger.entries().size() == 1);
}

TEST_CASE("redirects are followed within the rules and refused when they leave them", "[tools][http]") {
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  HttpToolOptions opts;
  opts.allowed_hosts = {"127.0.0.1:" + std::to_string(ledger.port())};
  opts.max_redirects = 3;
  HttpTool tool("api", opts);
  ToolContext ctx{"c", "key-7"};

  SECTION("to the same host: followed, with the same idempotency key") {
    auto r = tool.Call({{"method", "GET"}, {"url", ledger.url() + "/redirect?to=%2Fstock%2Fpaper"}}, ctx);
    INFO(r.error);
    REQUIRE(r.ok);
    CHECK(r.output["redirects"] == 1);
    CHECK(r.output["body"]["path"] == "/stock/paper");
    auto entries = ledger.entries();
    REQUIRE(entries.size() == 1);
    CHECK(entries[0].idempotency_key == "key-7");
  }
  SECTION("to the cloud metadata service: refused before it is contacted") {
    auto r = tool.Call({{"method", "GET"},
                        {"url", ledger.url() + "/redirect?to=http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data%2F"}},
                       ctx);
    CHECK_FALSE(r.ok);
    CHECK_THAT(r.error, ContainsSubstring("redirect to http://169.254.169.254/latest/meta-data/ refused"));
    CHECK_THAT(r.error, ContainsSubstring("169.254.169.254:80 is not in this tool's allowedHosts"));
  }
  SECTION("to a name that resolves to loopback, with \"*\": refused") {
    HttpToolOptions any = opts;
    any.allowed_hosts.push_back("*");
    HttpTool wide("web", any);
    std::string to = "http%3A%2F%2Flocalhost%3A" + std::to_string(ledger.port()) + "%2Fadmin";
    auto r = wide.Call({{"method", "GET"}, {"url", ledger.url() + "/redirect?to=" + to}}, ctx);
    CHECK_FALSE(r.ok);
    CHECK_THAT(r.error, ContainsSubstring("resolves to 127.0.0.1 (loopback)"));
    CHECK(ledger.entries().empty());
  }
  SECTION("a redirect loop stops at maxRedirects") {
    auto r = tool.Call({{"method", "GET"}, {"url", ledger.url() + "/loop"}}, ctx);
    CHECK_FALSE(r.ok);
    CHECK_THAT(r.error, ContainsSubstring("more than 3 redirects"));
  }
}

TEST_CASE("addresses are classified, including IPv6 forms that carry an IPv4 address", "[tools][http]") {
  struct Case {
    std::string ip;
    AddressClass expected;
  };
  std::vector<Case> cases = {
      {"8.8.8.8", AddressClass::kPublic},           {"127.0.0.1", AddressClass::kLoopback},
      {"127.255.0.9", AddressClass::kLoopback},     {"169.254.169.254", AddressClass::kLinkLocal},
      {"10.0.0.5", AddressClass::kPrivate},         {"172.15.0.1", AddressClass::kPublic},
      {"172.16.0.1", AddressClass::kPrivate},       {"172.31.255.1", AddressClass::kPrivate},
      {"192.168.1.1", AddressClass::kPrivate},      {"100.64.0.1", AddressClass::kPrivate},
      {"0.0.0.0", AddressClass::kUnspecified},      {"224.0.0.1", AddressClass::kMulticast},
      {"255.255.255.255", AddressClass::kMulticast}, {"240.0.0.1", AddressClass::kReserved},
      {"::1", AddressClass::kLoopback},             {"::", AddressClass::kUnspecified},
      {"fe80::1", AddressClass::kLinkLocal},        {"fd00::1", AddressClass::kUniqueLocal},
      {"ff02::1", AddressClass::kMulticast},        {"2606:4700::1111", AddressClass::kPublic},
      {"::ffff:127.0.0.1", AddressClass::kLoopback}, {"::ffff:169.254.169.254", AddressClass::kLinkLocal},
      {"::127.0.0.1", AddressClass::kLoopback},     {"64:ff9b::a00:5", AddressClass::kPrivate},
      {"64:ff9b::808:808", AddressClass::kPublic},  {"2002:7f00:1::", AddressClass::kLoopback},
      {"2002:a9fe:a9fe::1", AddressClass::kLinkLocal}, {"2001::1", AddressClass::kReserved},
      {"fec0::1", AddressClass::kReserved},         {"64:ff9b:1::1", AddressClass::kReserved},
      {"[::1]", AddressClass::kLoopback},
  };
  for (const auto& c : cases) {
    INFO(c.ip);
    auto r = ClassifyAddress(c.ip);
    REQUIRE(r.ok());
    CHECK(AddressClassName(*r) == std::string(AddressClassName(c.expected)));
  }
  CHECK(ClassifyAddress("example.com").status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("credentials are not sent on to another origin after a redirect", "[tools][http]") {
  LedgerServer a, b;
  REQUIRE(a.Start());
  REQUIRE(b.Start());
  HttpToolOptions opts;
  opts.allowed_hosts = {"127.0.0.1:" + std::to_string(a.port()), "127.0.0.1:" + std::to_string(b.port())};
  HttpTool tool("api", opts);
  ToolContext ctx{"c", "k"};
  auto same = tool.Call({{"method", "GET"}, {"url", a.url() + "/redirect?to=%2Fmine"}, {"headers", {{"Authorization", "Bearer s3cret"}}}}, ctx);
  REQUIRE(same.ok);
  REQUIRE(a.entries().size() == 1);
  CHECK(a.entries()[0].authorization == "Bearer s3cret");  // same origin: kept

  std::string to = "http%3A%2F%2F127.0.0.1%3A" + std::to_string(b.port()) + "%2Ftheirs";
  auto other = tool.Call({{"method", "GET"}, {"url", a.url() + "/redirect?to=" + to}, {"headers", {{"Authorization", "Bearer s3cret"}}}}, ctx);
  REQUIRE(other.ok);
  REQUIRE(b.entries().size() == 1);
  CHECK(b.entries()[0].path == "/theirs");
  CHECK(b.entries()[0].authorization.empty());  // another origin: dropped
}

TEST_CASE("header names must be HTTP tokens", "[tools][http]") {
  HttpToolOptions opts;
  opts.allowed_hosts = {"127.0.0.1"};
  HttpTool tool("api", opts);
  for (const std::string& name : {std::string(" Host"), std::string("Host\t"), std::string("X Y"), std::string(""),
                                 std::string("X:Y"), std::string("X\0Y", 3)}) {
    INFO("[" << name << "]");
    auto r = tool.Call({{"method", "GET"}, {"url", "http://127.0.0.1:9/"}, {"headers", {{name, "v"}}}}, ToolContext{"c", "k"});
    CHECK_FALSE(r.ok);
    CHECK_THAT(r.error, ContainsSubstring("not allowed"));
  }
}

TEST_CASE("configured headers carry secrets from the environment or a file", "[tools][http][secrets]") {
  ClearSecretsForTesting();
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  carapace::testing::TempDir tmp;
  std::ofstream(tmp.Sub("key")) << "file-secret-123\n";
  ::setenv("CARAPACE_TEST_TOKEN", "Bearer env-secret-456", 1);
  HttpToolOptions opts;
  opts.allowed_hosts = {"127.0.0.1:" + std::to_string(ledger.port())};
  opts.headers = {{"Authorization", "", "CARAPACE_TEST_TOKEN", ""}, {"X-Api-Key", "", "", tmp.Sub("key")},
                  {"X-Team", "blue", "", ""}};
  auto tool = HttpTool::Create("api", opts);
  REQUIRE(tool.ok());
  // The model may not replace a configured header.
  auto r = (*tool)->Call({{"method", "GET"}, {"url", ledger.url() + "/stock"}, {"headers", {{"authorization", "Bearer mine"}}}},
                         ToolContext{"c", "k"});
  REQUIRE(r.ok);
  REQUIRE(ledger.entries().size() == 1);
  CHECK(ledger.entries()[0].authorization == "Bearer env-secret-456");
  CHECK(Redact("a Bearer env-secret-456 and file-secret-123 but blue") == "a [REDACTED] and [REDACTED] but blue");

  HttpToolOptions missing = opts;
  missing.headers = {{"Authorization", "", "CARAPACE_TEST_UNSET_VAR", ""}};
  auto m = HttpTool::Create("api", missing);
  REQUIRE_FALSE(m.ok());
  CHECK_THAT(m.status().message(), ContainsSubstring("http.headers[0] (Authorization): environment variable CARAPACE_TEST_UNSET_VAR is not set"));
  HttpToolOptions nofile = opts;
  nofile.headers = {{"X-Api-Key", "", "", tmp.Sub("nope")}};
  CHECK_THAT(HttpTool::Create("api", nofile).status().message(), ContainsSubstring("cannot read"));
  ::setenv("CARAPACE_TEST_SHORT", "abc", 1);
  HttpToolOptions shorty = opts;
  shorty.headers = {{"X-Api-Key", "", "CARAPACE_TEST_SHORT", ""}};
  CHECK_THAT(HttpTool::Create("api", shorty).status().message(), ContainsSubstring("shorter than 6 characters"));
  ClearSecretsForTesting();
}

TEST_CASE("secret headers stay with their origin, and the token of a Bearer value is redacted too", "[tools][http][secrets]") {
  ClearSecretsForTesting();
  LedgerServer a, b;
  REQUIRE(a.Start());
  REQUIRE(b.Start());
  ::setenv("CARAPACE_TEST_BEARER", "Bearer tok-abcdef-123", 1);
  ::setenv("CARAPACE_TEST_KEY", "key-xyz-987654", 1);
  HttpToolOptions opts;
  opts.allowed_hosts = {"127.0.0.1:" + std::to_string(a.port()), "127.0.0.1:" + std::to_string(b.port())};
  opts.headers = {{"Authorization", "", "CARAPACE_TEST_BEARER", ""}, {"X-Api-Key", "", "CARAPACE_TEST_KEY", ""}};
  auto tool = HttpTool::Create("api", opts);
  REQUIRE(tool.ok());
  CHECK(Redact("token tok-abcdef-123 alone") == "token [REDACTED] alone");
  std::string to = "http%3A%2F%2F127.0.0.1%3A" + std::to_string(b.port()) + "%2Fecho";
  auto r = (*tool)->Call({{"method", "GET"}, {"url", a.url() + "/redirect?to=" + to}}, ToolContext{"c", "k"});
  REQUIRE(r.ok);
  CHECK(r.output["body"]["youSent"] == "");  // the other origin got no Authorization
  ClearSecretsForTesting();
}

TEST_CASE("a secret that is not valid UTF-8 is refused at start", "[tools][http][secrets]") {
  carapace::testing::TempDir tmp;
  std::ofstream(tmp.Sub("latin1")) << "caf\xe9-secret";
  HttpToolOptions opts;
  opts.allowed_hosts = {"127.0.0.1"};
  opts.headers = {{"X-Api-Key", "", "", tmp.Sub("latin1")}};
  auto tool = HttpTool::Create("api", opts);
  REQUIRE_FALSE(tool.ok());
  CHECK_THAT(tool.status().message(), ContainsSubstring("the secret is not valid UTF-8"));
}

TEST_CASE("a small text body comes back whole and exact, under any limit that holds it", "[tools][http]") {
  // A server that answers GET /text with 11 bytes of text/plain: with Content-Length, or
  // chunked (no length known before the body), as real servers do both.
  int port = 0;
  auto listener = carapace::testing::ListenOnLoopback(0, "/", [](auto& l) {
    l.support(web::http::methods::GET, [](web::http::http_request req) {
      web::http::http_response r(web::http::status_codes::OK);
      if (req.relative_uri().path() == "/chunked") {
        // A body of unknown length: cpprest sends it chunked.
        auto body = concurrency::streams::bytestream::open_istream(std::string("hello world"));
        r.set_body(body, "text/plain");
      } else {
        r.set_body(std::string("hello world"), "text/plain");
      }
      req.reply(r).wait();
    });
  }, &port);
  REQUIRE(listener);
  HttpToolOptions opts;
  opts.allowed_hosts = {"127.0.0.1:" + std::to_string(port)};
  for (const char* path : {"/text", "/chunked"}) {
    for (int64_t limit : {int64_t{11}, int64_t{100}, int64_t{1} << 20}) {
      INFO(path << " with maxResponseBytes " << limit);
      opts.max_response_bytes = limit;
      HttpTool tool("api", opts);
      auto r = tool.Call({{"method", "GET"}, {"url", "http://127.0.0.1:" + std::to_string(port) + path}}, ToolContext{"c", "k"});
      INFO(r.error);
      REQUIRE(r.ok);
      CHECK(r.output["body"] == "hello world");  // no padding of NUL bytes after it
    }
    opts.max_response_bytes = 10;  // one byte short
    HttpTool tool("api", opts);
    auto r = tool.Call({{"method", "GET"}, {"url", "http://127.0.0.1:" + std::to_string(port) + path}}, ToolContext{"c", "k"});
    CHECK_FALSE(r.ok);
    CHECK_THAT(r.error, ContainsSubstring("over the limit of 10"));
  }
  listener->close().wait();
}

TEST_CASE("with \"*\", the connection goes to the address checked, over http and https alike (no DNS rebinding)",
          "[tools][http]") {
  // A listener on 127.0.0.1 that counts who connects. "localhost" reaches it through the
  // system's resolver (/etc/hosts); the tool's own lookup, as a hostile DNS server would
  // answer it, says a public address. The check passes on that answer, so the connection
  // must go to that public address, never to a second lookup's 127.0.0.1.
  int port = 0;
  const int fd = testing::ListenOnLoopbackPort(&port);
  REQUIRE(fd >= 0);
  fcntl(fd, F_SETFL, O_NONBLOCK);

  HttpToolOptions opts;
  opts.allowed_hosts = {"*"};
  opts.timeout_seconds = 2;
  HttpTool tool("web", opts);
  int lookups = 0;
  tool.SetResolver([&](const std::string& host) -> Result<std::vector<std::string>> {
    ++lookups;
    CHECK(host == "localhost");
    return std::vector<std::string>{"192.0.2.1"};  // TEST-NET-1: public by class, routed nowhere here
  });
  REQUIRE(*ClassifyAddress("192.0.2.1") == AddressClass::kPublic);
  for (const char* scheme : {"http", "https"}) {
    INFO(scheme);
    auto r = tool.Call({{"method", "GET"}, {"url", std::string(scheme) + "://localhost:" + std::to_string(port) + "/x"}},
                       ToolContext{"c", "k"});
    CHECK_FALSE(r.ok);
  }
  CHECK(lookups == 2);
  CHECK(accept(fd, nullptr, nullptr) < 0);  // nothing ever connected to 127.0.0.1
  close(fd);
}
