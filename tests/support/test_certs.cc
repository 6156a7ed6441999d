// Test certificates with the openssl CLI (see test_certs.h).
#include "tests/support/test_certs.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "common/file.h"
#include "tests/support/child_process.h"

namespace fs = std::filesystem;

namespace carapace::testing {

namespace {

void Openssl(std::vector<std::string> args) {
  args.insert(args.begin(), OPENSSL_BIN);
  CommandResult r = RunCommand(args);
  if (r.exit_code != 0) throw std::runtime_error("openssl " + args[1] + " failed: " + r.err + r.out);
}

std::string Slurp(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) throw std::runtime_error(text.status().message());
  return *text;
}

void Spit(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

}  // namespace

TestCa::TestCa(std::string dir, std::string name) : dir_(std::move(dir)) {
  fs::create_directories(dir_);
  // P-256 keys: quick to make, and what cert-manager's ECDSA issuers hand out.
  Openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
           dir_ + "/ca.key", "-out", cert_path(), "-days", "2", "-subj", "/CN=" + name});
  cert_pem_ = Slurp(cert_path());
}

CertFiles TestCa::Issue(const std::vector<std::string>& dns_names, const std::vector<std::string>& ips,
                        const std::string& serial_hex) const {
  static std::atomic<int> counter{0};
  const std::string base = dir_ + "/issued-" + std::to_string(counter++);
  std::string sans;
  for (const auto& d : dns_names) sans += (sans.empty() ? "" : ",") + std::string("DNS:") + d;
  for (const auto& ip : ips) sans += (sans.empty() ? "" : ",") + std::string("IP:") + ip;
  Spit(base + ".ext", "subjectAltName=" + sans + "\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n");
  Openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", base + ".key", "-out",
           base + ".csr", "-subj", "/CN=" + (dns_names.empty() ? std::string("worker") : dns_names[0])});
  Openssl({"x509", "-req", "-in", base + ".csr", "-CA", cert_path(), "-CAkey", dir_ + "/ca.key", "-set_serial",
           "0x" + serial_hex, "-days", "1", "-extfile", base + ".ext", "-out", base + ".crt"});
  return {{"tls.crt", Slurp(base + ".crt")}, {"tls.key", Slurp(base + ".key")}, {"ca.crt", cert_pem_}};
}

void WriteSecretVolume(const std::string& dir, const CertFiles& files) {
  // As kubelet's AtomicWriter (pkg/volume/util/atomic_writer.go): a timestamped directory,
  // a `..data_tmp` symlink to it renamed over `..data`, user-visible names linking through it.
  static std::atomic<int> counter{0};
  fs::create_directories(dir);
  const std::string version = "..v" + std::to_string(counter++);
  fs::create_directories(dir + "/" + version);
  for (const auto& [name, text] : files) Spit(dir + "/" + version + "/" + name, text);
  const std::string tmp = dir + "/..data_tmp";
  fs::remove(tmp);
  fs::create_symlink(version, tmp);
  fs::rename(tmp, dir + "/..data");
  for (const auto& [name, text] : files) {
    if (!fs::is_symlink(dir + "/" + name)) fs::create_symlink("..data/" + name, dir + "/" + name);
  }
}

std::string CertSerial(const std::string& cert_pem) {
  static std::atomic<int> counter{0};
  const std::string path = fs::temp_directory_path().string() + "/carapace-serial-" + std::to_string(::getpid()) + "-" +
                           std::to_string(counter++) + ".pem";
  Spit(path, cert_pem);
  CommandResult r = RunCommand({OPENSSL_BIN, "x509", "-in", path, "-noout", "-serial"});
  fs::remove(path);
  if (r.exit_code != 0 || r.out.rfind("serial=", 0) != 0) throw std::runtime_error("openssl x509 -serial: " + r.err);
  return TrimLineEnd(r.out.substr(7));
}

}  // namespace carapace::testing
