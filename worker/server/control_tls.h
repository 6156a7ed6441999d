// TLS for the worker's control API from a directory in the layout cert-manager writes into a
// Secret (tls.crt, tls.key; ca.crt is for clients). The files are checked once at startup and
// then re-read while serving, so a renewed certificate is served without a restart.
#pragma once

#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "common/status.h"

namespace carapace {

inline constexpr char kTlsCertFile[] = "tls.crt";
inline constexpr char kTlsKeyFile[] = "tls.key";

// Checks that DIR/tls.crt holds a PEM certificate and DIR/tls.key the private key that
// matches it. InvalidArgument naming the file and what is wrong with it otherwise.
Status CheckTlsDir(const std::string& dir);

// Server credentials serving DIR/tls.crt with DIR/tls.key, re-read every `reload_seconds`
// (gRPC's file watcher: a pair that does not match is not taken, the last good one stays).
// Call CheckTlsDir first: gRPC itself only logs a bad pair, and every handshake then fails.
std::shared_ptr<grpc::ServerCredentials> ControlServerCredentials(const std::string& dir, unsigned reload_seconds);

}  // namespace carapace
