// A real headless Chromium, driven over the Chrome DevTools Protocol (CDP) with cpprestsdk's
// websocket client: for tests of the web pages Carapace serves (`carapace ui`). Test support
// only.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

namespace web::websockets::client {
class websocket_callback_client;
}

namespace carapace::testing {

class HeadlessBrowser {
 public:
  // `chromium`: the browser's path. The window size is the page's viewport.
  explicit HeadlessBrowser(std::string chromium, int width = 1400, int height = 900);
  // Kills the browser's whole process group (it forks renderers and helpers) and removes
  // its profile.
  ~HeadlessBrowser();
  HeadlessBrowser(const HeadlessBrowser&) = delete;
  HeadlessBrowser& operator=(const HeadlessBrowser&) = delete;

  // Starts the browser on about:blank and connects to its page. False, with the reason
  // (and the browser's stderr), when it does not come up within 30 s.
  bool Start(std::string* problem);

  // Loads `url` and waits until the document has loaded. False with the reason otherwise.
  bool Navigate(const std::string& url, std::string* problem);

  // Evaluates a JavaScript expression in the page (awaiting it when it is a promise) and
  // returns its value as JSON (by value). A thrown exception or a failed call gives a
  // discarded value and the reason in *problem.
  nlohmann::json Evaluate(const std::string& expression, std::string* problem = nullptr);

  // The viewport as a PNG; "" on failure.
  std::string ScreenshotPng();

 private:
  // Sends one CDP command and waits (up to 30 s) for its answer, skipping the events the
  // browser sends meanwhile. The answer's "result", or a discarded value with *problem set.
  nlohmann::json Call(const std::string& method, const nlohmann::json& params, std::string* problem);

  std::string chromium_;
  int width_, height_;
  std::string profile_dir_;
  pid_t pid_ = -1;
  int next_id_ = 1;
  std::unique_ptr<web::websockets::client::websocket_callback_client> ws_;
  // What the browser sent (answers and events), as the websocket's thread hands it over.
  std::mutex mu_;
  std::condition_variable arrived_;
  std::deque<std::string> inbox_;
};

}  // namespace carapace::testing
