// Writing to a socket from the test servers (the OpenAI and Kubernetes API doubles): all of
// it, never raising SIGPIPE when the client has gone. Test support only.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <string>

namespace carapace::testing {

// False when the peer closed or the write failed.
inline bool SendAll(int fd, const std::string& data) {
  size_t at = 0;
  while (at < data.size()) {
    ssize_t n = ::send(fd, data.data() + at, data.size() - at, MSG_NOSIGNAL);
    if (n <= 0) return false;
    at += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace carapace::testing
