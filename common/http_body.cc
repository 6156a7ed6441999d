// Bounded reads of reply bodies (see http_body.h).
#include "common/http_body.h"

#include <vector>

namespace carapace {

Result<std::string> ReadBody(web::http::http_response& response, size_t limit,
                             pplx::cancellation_token_source* cancel) {
  auto over = [&] {
    if (cancel) {
      cancel->cancel();
      try {
        response.content_ready().wait();
      } catch (...) {
        // cancelled, as asked
      }
    }
    return ResourceExhausted("the reply is over the limit of " + std::to_string(limit) + " bytes");
  };
  const auto length = response.headers().content_length();
  if (length > limit) return over();
  auto stream = response.body().streambuf();
  std::string out;
  std::vector<uint8_t> buf(64 * 1024);
  for (;;) {
    const size_t n = stream.getn(buf.data(), buf.size()).get();
    if (n == 0) break;
    if (out.size() + n > limit) return over();
    out.append(reinterpret_cast<const char*>(buf.data()), n);
  }
  return out;
}

}  // namespace carapace
