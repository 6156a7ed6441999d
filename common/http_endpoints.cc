// GET endpoints over cpprestsdk (see http_endpoints.h).
#include "common/http_endpoints.h"

#include <cpprest/http_listener.h>

namespace carapace {

namespace http = web::http;

HttpEndpoints::HttpEndpoints() = default;
HttpEndpoints::~HttpEndpoints() { Stop(); }

void HttpEndpoints::Handle(const std::string& path, Handler handler) { handlers_[path] = std::move(handler); }

Status HttpEndpoints::Start(const std::string& address) {
  try {
    listener_ = std::make_unique<http::experimental::listener::http_listener>("http://" + address);
    listener_->support(http::methods::GET, [this](http::http_request request) {
      const std::string path = request.relative_uri().path();
      auto it = handlers_.find(path);
      HttpReply reply = it != handlers_.end() ? it->second() : HttpReply{404, "not found: " + path + "\n"};
      http::http_response r(static_cast<http::status_code>(reply.code));
      r.set_body(std::vector<unsigned char>(reply.body.begin(), reply.body.end()));
      r.headers().set_content_type(reply.content_type);
      // A client gone before the answer is written fails this task; observed here, or
      // pplx would end the process for an exception nobody looked at.
      request.reply(r).then([](pplx::task<void> t) {
        try {
          t.get();
        } catch (...) {
        }
      });
    });
    listener_->open().wait();
    return Status::Ok();
  } catch (const std::exception& e) {
    listener_.reset();
    return Unavailable("cannot listen on http://" + address + ": " + e.what());
  }
}

void HttpEndpoints::Stop() {
  if (!listener_) return;
  try {
    listener_->close().wait();
  } catch (const std::exception&) {
  }
  listener_.reset();
}

}  // namespace carapace
