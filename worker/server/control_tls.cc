// TLS files of the control API (see control_tls.h).
#include "worker/server/control_tls.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/file.h"

namespace carapace {

namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

std::unique_ptr<BIO, BioFree> MemoryBio(const std::string& text) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

}  // namespace

Status CheckTlsDir(const std::string& dir) {
  const std::string cert_path = dir + "/" + kTlsCertFile;
  const std::string key_path = dir + "/" + kTlsKeyFile;
  auto cert_pem = ReadFile(cert_path);
  if (!cert_pem.ok()) return InvalidArgument("cannot read the TLS certificate " + cert_pem.status().message());
  auto key_pem = ReadFile(key_path);
  if (!key_pem.ok()) return InvalidArgument("cannot read the TLS key " + key_pem.status().message());
  std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(MemoryBio(*cert_pem).get(), nullptr, nullptr, nullptr));
  if (!cert) return InvalidArgument("the TLS certificate " + cert_path + " holds no PEM certificate");
  std::unique_ptr<EVP_PKEY, KeyFree> key(PEM_read_bio_PrivateKey(MemoryBio(*key_pem).get(), nullptr, nullptr, nullptr));
  if (!key) return InvalidArgument("the TLS key " + key_path + " holds no PEM private key (or an encrypted one)");
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();  // OpenSSL's queue is per thread; leave nothing for the next user
    return InvalidArgument("the TLS key " + key_path + " does not match the certificate " + cert_path);
  }
  ERR_clear_error();
  return Status::Ok();
}

std::shared_ptr<grpc::ServerCredentials> ControlServerCredentials(const std::string& dir, unsigned reload_seconds) {
  // The file watcher re-reads the paths, so it follows a Secret volume's ..data symlink
  // when the kubelet swaps it; no root bundle: clients are known by their token, not a
  // certificate.
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      dir + "/" + kTlsKeyFile, dir + "/" + kTlsCertFile, reload_seconds);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  return grpc::experimental::TlsServerCredentials(options);
}

}  // namespace carapace
