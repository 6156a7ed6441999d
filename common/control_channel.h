// How every client of a worker's control API (the `carapace` CLI and the operator) reaches
// it: message sizes set to what the worker's server allows, not gRPC's defaults, and
// plaintext or TLS verified against a CA (docs/operations.md, "TLS on the control API").
// Header only: its users link gRPC, the common library does not.
#pragma once

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <memory>
#include <string>

#include "common/file.h"
#include "common/limits.h"
#include "common/status.h"

namespace carapace {

// TLS towards a worker. Empty `ca_pem`: plaintext, as a worker without --tls-dir serves.
struct ControlTls {
  std::string ca_pem;       // the CA bundle the worker's certificate must chain to (a cert-manager ca.crt)
  std::string server_name;  // the name the certificate must carry; empty: the host in the address
  bool enabled() const { return !ca_pem.empty(); }
};

inline grpc::ChannelArguments ControlChannelArguments() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(limits::kControlReplyBytes);
  args.SetMaxSendMessageSize(limits::kControlRequestBytes);
  return args;
}

// A channel to the control API at `address` (host:port). With TLS the worker's certificate
// is checked against `tls.ca_pem` and `tls.server_name` (or the address's host); a worker
// that shows another certificate fails every call UNAVAILABLE, naming the handshake.
inline std::shared_ptr<grpc::Channel> CreateControlChannel(const std::string& address, const ControlTls& tls) {
  grpc::ChannelArguments args = ControlChannelArguments();
  if (!tls.enabled()) return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  // Pods are dialled by IP while their certificates name the Service: the name checked is
  // then the one given here (GRPC_SSL_TARGET_NAME_OVERRIDE_ARG), not the address.
  if (!tls.server_name.empty()) args.SetSslTargetNameOverride(tls.server_name);
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = tls.ca_pem;
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(ssl), args);
}

// Reads a CA bundle for ControlTls::ca_pem. Errors name the file: unreadable, or no PEM
// certificate in it (gRPC would otherwise fail each handshake with no word on why).
inline Result<std::string> ReadControlCa(const std::string& path) {
  auto pem = ReadFile(path);
  if (!pem.ok()) return InvalidArgument("cannot read the CA file " + pem.status().message());
  if (pem->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return InvalidArgument("the CA file " + path + " holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
  }
  return *pem;
}

// What a failed call's UNAVAILABLE most likely means, for a person to act on: gRPC's own
// text says "Socket closed" for a plaintext client at a TLS worker and names an SSL error
// for a certificate that does not verify. "" when there is nothing to add.
inline std::string ControlTlsHint(const std::string& grpc_message, const ControlTls& tls) {
  if (!tls.enabled()) {
    if (grpc_message.find("Socket closed") != std::string::npos ||
        grpc_message.find("Connection reset") != std::string::npos) {
      return "the worker closed the connection: if it serves TLS (--tls-dir), connect with its CA (--tls-ca FILE)";
    }
    return "";
  }
  if (grpc_message.find("CERTIFICATE_VERIFY_FAILED") != std::string::npos ||
      grpc_message.find("certificate verify failed") != std::string::npos) {
    return "the worker's certificate is not signed by the CA given (--tls-ca)";
  }
  if (grpc_message.find("Peer name") != std::string::npos || grpc_message.find("peer name") != std::string::npos) {
    return "the worker's certificate is not issued for " +
           (tls.server_name.empty() ? std::string("the address dialled") : tls.server_name) +
           " (--tls-server-name NAME names the one to check)";
  }
  if (grpc_message.find("WRONG_VERSION_NUMBER") != std::string::npos ||
      grpc_message.find("wrong version number") != std::string::npos ||
      grpc_message.find("Handshake") != std::string::npos || grpc_message.find("handshake") != std::string::npos) {
    return "the TLS handshake failed: does the worker serve TLS (--tls-dir)?";
  }
  return "";
}

}  // namespace carapace
