// Certificates made at test time with the real `openssl` CLI: a throwaway CA and server
// certificates it signs, written in the layout cert-manager gives a Secret (tls.crt, tls.key,
// ca.crt), and a directory that is swapped the way the kubelet updates a Secret volume.
// Test support only.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace carapace::testing {

// What a certificate Secret holds, by key: tls.crt, tls.key, ca.crt (PEM text).
using CertFiles = std::map<std::string, std::string>;

class TestCa {
 public:
  // Makes a CA key and self-signed certificate (CN `name`) under `dir`. Throws
  // std::runtime_error with openssl's output when openssl fails.
  TestCa(std::string dir, std::string name);

  const std::string& cert_pem() const { return cert_pem_; }
  std::string cert_path() const { return dir_ + "/ca.crt"; }

  // A server certificate (server auth) for `dns_names` and `ips`, with serial `serial_hex`
  // (hex digits), signed by this CA; its key is new. Throws as the constructor does.
  CertFiles Issue(const std::vector<std::string>& dns_names, const std::vector<std::string>& ips,
                  const std::string& serial_hex) const;

 private:
  std::string dir_;
  std::string cert_pem_;
};

// Writes `files` into `dir` as the kubelet writes a Secret volume: into a new hidden
// directory, then `..data` is swapped to it with one rename, and each name is a symlink
// through `..data`. Called again, it swaps the whole set at once (what a reader of the names
// sees is the old set or the new, never half of each).
void WriteSecretVolume(const std::string& dir, const CertFiles& files);

// The serial number (upper-case hex, as `openssl x509 -serial` prints it) of a PEM certificate.
std::string CertSerial(const std::string& cert_pem);

}  // namespace carapace::testing
