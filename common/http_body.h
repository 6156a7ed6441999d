// Reading an HTTP reply's body from a peer (cpprestsdk) without letting the peer decide how
// much is held: at most `limit` bytes are read.
#pragma once

#include <cstddef>
#include <string>

#include <cpprest/http_msg.h>

#include "common/status.h"

namespace carapace {

// The body, or kResourceExhausted ("... is over the limit of N bytes") as soon as it is
// known to be larger: from Content-Length before reading, else after `limit` bytes read.
// cpprest keeps downloading a body nobody reads, so on a refusal `cancel` (the source of
// the request's cancellation token) is cancelled and the transfer waited out.
Result<std::string> ReadBody(web::http::http_response& response, size_t limit,
                             pplx::cancellation_token_source* cancel);

}  // namespace carapace
