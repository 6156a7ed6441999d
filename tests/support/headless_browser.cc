// Headless Chromium over CDP (see headless_browser.h).
#include "tests/support/headless_browser.h"

#include <cpprest/asyncrt_utils.h>
#include <cpprest/ws_client.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "tests/support/worker_process.h"

namespace carapace::testing {

namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

HeadlessBrowser::HeadlessBrowser(std::string chromium, int width, int height)
    : chromium_(std::move(chromium)), width_(width), height_(height) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "carapace-chromium-XXXXXX").string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) != nullptr) profile_dir_ = buf.data();
}

HeadlessBrowser::~HeadlessBrowser() {
  if (ws_) {
    try {
      ws_->close().wait();
    } catch (...) {
    }
    ws_.reset();
  }
  if (pid_ > 0) {
    ::kill(-pid_, SIGKILL);  // the browser and every process it started: they share its group
    ::waitpid(pid_, nullptr, 0);
  }
  std::error_code ignored;
  if (!profile_dir_.empty()) std::filesystem::remove_all(profile_dir_, ignored);
}

bool HeadlessBrowser::Start(std::string* problem) {
  if (profile_dir_.empty()) {
    *problem = "cannot make a temporary profile directory";
    return false;
  }
  std::vector<std::string> argv = {chromium_,
                                   "--headless=new",
                                   "--remote-debugging-port=0",  // any free port; written to DevToolsActivePort
                                   "--user-data-dir=" + profile_dir_,
                                   "--window-size=" + std::to_string(width_) + "," + std::to_string(height_),
                                   "--no-first-run",
                                   "--no-default-browser-check",
                                   "--disable-gpu",
                                   "--disable-dev-shm-usage",  // containers often have a small /dev/shm
                                   "--disable-extensions",
                                   "--disable-background-networking",
                                   "--disable-component-update",
                                   "--disable-sync",
                                   "--hide-scrollbars",
                                   "--mute-audio"};
  // Chromium refuses to start as root with its sandbox on (the sandbox needs an
  // unprivileged user); test machines and containers often run as root. Only then is it
  // switched off: the pages it loads are our own, on loopback.
  if (::geteuid() == 0) argv.push_back("--no-sandbox");
  argv.push_back("about:blank");

  const std::string log = profile_dir_ + "/chromium.log";
  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_addopen(&files, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&files, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&files, 1, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);  // its own group, so it can all be killed
  posix_spawnattr_setpgroup(&attr, 0);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const int rc = posix_spawn(&pid_, chromium_.c_str(), &files, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&files);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    pid_ = -1;
    *problem = "cannot start " + chromium_ + ": " + std::strerror(rc);
    return false;
  }

  // The port it chose is the first line of DevToolsActivePort; its page's websocket is in
  // /json/list.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::string ws_url;
  while (ws_url.empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (int status = 0; ::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      *problem = "chromium exited at start: " + ReadAll(log);
      return false;
    }
    std::istringstream active(ReadAll(profile_dir_ + "/DevToolsActivePort"));
    int port = 0;
    if (!(active >> port) || port <= 0) continue;
    auto [code, body] = HttpGet(port, "/json/list");
    if (code != 200) continue;
    auto targets = nlohmann::json::parse(body, nullptr, false);
    if (!targets.is_array()) continue;
    // Its own webSocketDebuggerUrl is built from the Host header, which HttpGet sends
    // without the port: the URL is made here instead.
    for (const auto& t : targets) {
      if (t.value("type", "") == "page" && t.contains("id")) {
        ws_url = "ws://127.0.0.1:" + std::to_string(port) + "/devtools/page/" + t.value("id", "");
      }
    }
  }
  if (ws_url.empty()) {
    *problem = "chromium's DevTools did not come up within 30 s: " + ReadAll(log);
    return false;
  }
  try {
    ws_ = std::make_unique<web::websockets::client::websocket_callback_client>();
    ws_->set_message_handler([this](const web::websockets::client::websocket_incoming_message& msg) {
      std::string text = msg.extract_string().get();
      std::lock_guard<std::mutex> lock(mu_);
      inbox_.push_back(std::move(text));
      arrived_.notify_all();
    });
    ws_->connect(utility::conversions::to_string_t(ws_url)).wait();
  } catch (const std::exception& e) {
    *problem = "cannot open the DevTools websocket " + ws_url + ": " + e.what() + "\n" + ReadAll(log);
    ws_.reset();
    return false;
  }
  // The viewport itself at the size asked for (--window-size counts the window's frame).
  return !Call("Emulation.setDeviceMetricsOverride",
               {{"width", width_}, {"height", height_}, {"deviceScaleFactor", 1}, {"mobile", false}}, problem)
              .is_discarded();
}

nlohmann::json HeadlessBrowser::Call(const std::string& method, const nlohmann::json& params, std::string* problem) {
  std::string ignored;
  if (!problem) problem = &ignored;
  if (!ws_) {
    *problem = "the browser is not started";
    return nlohmann::json::value_t::discarded;
  }
  const int id = next_id_++;
  try {
    web::websockets::client::websocket_outgoing_message out;
    out.set_utf8_message(nlohmann::json{{"id", id}, {"method", method}, {"params", params}}.dump());
    ws_->send(out).wait();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    std::unique_lock<std::mutex> lock(mu_);
    while (arrived_.wait_until(lock, deadline, [this] { return !inbox_.empty(); })) {
      auto msg = nlohmann::json::parse(inbox_.front(), nullptr, false);
      inbox_.pop_front();
      if (!msg.is_object() || msg.value("id", -1) != id) continue;  // an event, or another answer
      if (msg.contains("error")) {
        *problem = method + ": " + msg["error"].dump();
        return nlohmann::json::value_t::discarded;
      }
      return msg.value("result", nlohmann::json::object());
    }
  } catch (const std::exception& e) {
    *problem = method + ": " + e.what();
    return nlohmann::json::value_t::discarded;
  }
  *problem = method + ": no answer within 30 s";
  return nlohmann::json::value_t::discarded;
}

bool HeadlessBrowser::Navigate(const std::string& url, std::string* problem) {
  if (Call("Page.navigate", {{"url", url}}, problem).is_discarded()) return false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    auto state = Evaluate("document.readyState + ' ' + location.href", problem);
    if (state.is_string() && state.get<std::string>().rfind("complete ", 0) == 0 &&
        state.get<std::string>().find("about:blank") == std::string::npos) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  *problem = "the page did not load within 30 s: " + url;
  return false;
}

nlohmann::json HeadlessBrowser::Evaluate(const std::string& expression, std::string* problem) {
  std::string ignored;
  if (!problem) problem = &ignored;
  auto r =
      Call("Runtime.evaluate", {{"expression", expression}, {"returnByValue", true}, {"awaitPromise", true}}, problem);
  if (r.is_discarded()) return r;
  if (r.contains("exceptionDetails")) {
    *problem = "the page threw: " + r["exceptionDetails"].dump();
    return nlohmann::json::value_t::discarded;
  }
  return r.contains("result") ? r["result"].value("value", nlohmann::json()) : nlohmann::json();
}

std::string HeadlessBrowser::ScreenshotPng() {
  auto r = Call("Page.captureScreenshot", {{"format", "png"}}, nullptr);
  if (r.is_discarded() || !r.contains("data")) return "";
  auto bytes = utility::conversions::from_base64(utility::conversions::to_string_t(r["data"].get<std::string>()));
  return std::string(bytes.begin(), bytes.end());
}

}  // namespace carapace::testing
