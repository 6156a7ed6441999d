// Where the Kubernetes API is and how to authenticate to it: in-cluster (the pod's service
// account: token, CA, KUBERNETES_SERVICE_HOST/PORT) or a kubeconfig file (the current or a
// named context; CA data or file, client certificate and key, bearer token or token file).
// Credential plugins (exec, auth-provider) are refused with a clear error: the operator runs
// in a cluster, and locally a token or a client certificate does.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "common/status.h"

namespace carapace::kube {

struct KubeConfig {
  std::string server;           // https://host:port
  std::string ca_pem;           // trusted CA; empty: the system roots
  bool insecure_skip_tls_verify = false;
  std::string client_cert_pem;  // client certificate and key (PEM), both or neither
  std::string client_key_pem;
  std::string token;            // a fixed bearer token
  std::string token_file;       // or a file holding it, re-read when it changes (rotation)
  std::string ns = "default";   // the context's namespace, or the pod's
  std::string source;           // "in-cluster" or "kubeconfig FILE, context NAME"

  // The bearer token to send now ("" when the config authenticates otherwise). A token file
  // is read again whenever it has changed, as projected service-account tokens rotate.
  // Errors: kUnavailable naming the file when it cannot be read.
  Result<std::string> BearerToken() const;

 private:
  struct TokenCache {
    std::mutex mu;
    std::string token;
    long long mtime_ns = -1;  // a fingerprint of the file: time, inode and size
  };
  // Shared by copies of the config: one file, one cache.
  std::shared_ptr<TokenCache> token_cache_ = std::make_shared<TokenCache>();
};

// The in-cluster config under `root` (default: the service-account mount). Errors:
// kFailedPrecondition when not in a cluster (no KUBERNETES_SERVICE_HOST), kInvalidArgument
// naming a missing or empty file.
Result<KubeConfig> LoadInClusterConfig(const std::string& root = "/var/run/secrets/kubernetes.io/serviceaccount");

// A kubeconfig file; `context` empty: its current-context. Errors: kInvalidArgument naming
// the file and the field (`users[0].user.exec: ...`), kNotFound for a missing file.
Result<KubeConfig> LoadKubeconfig(const std::string& path, const std::string& context = "");
// The same from a kubeconfig's text (`path` names it in errors and anchors relative file
// paths); for tests and the fuzz harness.
Result<KubeConfig> ParseKubeconfig(const std::string& text, const std::string& path, const std::string& context = "");

// Decodes standard base64 (kubeconfig *-data fields). Errors: kInvalidArgument.
Result<std::string> DecodeBase64(const std::string& text);
// Standard base64 with padding (Secret data).
std::string EncodeBase64(const std::string& bytes);

}  // namespace carapace::kube
