// Opening a test HTTP server (cpprestsdk http_listener) on 127.0.0.1: on a given port, or
// on a free one found by trying random ports. Test support only.
#pragma once

#include <functional>
#include <memory>
#include <random>
#include <string>

#include <cpprest/http_listener.h>

namespace carapace::testing {

// `setup` registers the handlers. Returns null when no port could be opened; `bound_port`
// receives the port.
inline std::unique_ptr<web::http::experimental::listener::http_listener> ListenOnLoopback(
    int port, const std::string& path,
    const std::function<void(web::http::experimental::listener::http_listener&)>& setup, int* bound_port) {
  using web::http::experimental::listener::http_listener;
  std::mt19937 rng(std::random_device{}());
  for (int attempt = 0; attempt < (port ? 1 : 50); ++attempt) {
    int p = port ? port : 20000 + static_cast<int>(rng() % 40000);
    auto listener = std::make_unique<http_listener>("http://127.0.0.1:" + std::to_string(p) + path);
    setup(*listener);
    try {
      listener->open().wait();
      *bound_port = p;
      return listener;
    } catch (const std::exception&) {
      continue;  // taken; try another
    }
  }
  return nullptr;
}

}  // namespace carapace::testing
