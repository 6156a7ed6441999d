// Kubernetes client configuration.
#include "operator/kube/config.h"

#include <sys/stat.h>

#include <cstdlib>

#include "common/file.h"
#include "common/manifest.h"

namespace carapace::kube {

namespace {

// A file the config names; `what` says which, in the error.
Result<std::string> ReadNamedFile(const std::string& path, const std::string& what) {
  auto text = ReadFile(path);
  if (!text.ok()) return InvalidArgument(what + ": cannot read " + path);
  return text;
}

// The entry of a named list (clusters, users, contexts) with this name: its inner mapping.
YAML::Node Find(const YAML::Node& list, const std::string& name, const char* inner, int* index) {
  // A missing key of a const map is an invalid node whose type cannot be asked: test first.
  if (!list || !list.IsSequence()) return YAML::Node(YAML::NodeType::Undefined);
  for (size_t i = 0; i < list.size(); ++i) {
    if (list[i].IsMap() && list[i]["name"] && list[i]["name"].Scalar() == name) {
      *index = static_cast<int>(i);
      return list[i][inner];
    }
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

std::string Names(const YAML::Node& list) {
  std::string out;
  if (list && list.IsSequence()) {
    for (const auto& e : list) {
      if (e.IsMap() && e["name"]) out += (out.empty() ? "" : ", ") + e["name"].Scalar();
    }
  }
  return out.empty() ? "none" : out;
}

}  // namespace

static const std::string kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string EncodeBase64(const std::string& bytes) {
  std::string out;
  int bits = 0, value = 0;
  for (unsigned char c : bytes) {
    value = ((value << 8) | c) & 0xffffff;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(value >> bits) & 0x3f]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(value << (6 - bits)) & 0x3f]);
  while (out.size() % 4 != 0) out.push_back('=');
  return out;
}

Result<std::string> DecodeBase64(const std::string& text) {
  std::string out;
  int bits = 0, value = 0, padding = 0;
  for (char c : text) {
    if (c == '\n' || c == '\r' || c == ' ') continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    size_t v = kAlphabet.find(c);
    if (v == std::string::npos || padding > 0) return InvalidArgument("not valid base64");
    value = (value << 6) | static_cast<int>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((value >> bits) & 0xff));
    }
  }
  if (padding > 2) return InvalidArgument("not valid base64");
  return out;
}

Result<std::string> KubeConfig::BearerToken() const {
  if (token_file.empty()) return token;
  struct stat st {};
  if (::stat(token_file.c_str(), &st) != 0) return Unavailable("cannot read the token file " + token_file);
  // Kubelet rotates a projected token by swapping a symlink (a new inode); an edit in place
  // changes the time or the size. Any of them means: read it again.
  const long long mtime = (static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec) ^
                          (static_cast<long long>(st.st_ino) << 20) ^ static_cast<long long>(st.st_size);
  TokenCache& cache = *token_cache_;
  std::lock_guard<std::mutex> lock(cache.mu);
  if (mtime != cache.mtime_ns || cache.token.empty()) {
    auto text = ReadTokenFile(token_file);
    if (!text.ok()) return Unavailable("token file: cannot read " + token_file);
    cache.token = *text;
    cache.mtime_ns = mtime;
  }
  return cache.token;
}

Result<KubeConfig> LoadInClusterConfig(const std::string& root) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || *host == '\0' || port == nullptr || *port == '\0') {
    return FailedPrecondition("not running in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set "
                              "(give --kubeconfig to run outside one)");
  }
  KubeConfig c;
  const std::string h = host;
  c.server = "https://" + (h.find(':') != std::string::npos ? "[" + h + "]" : h) + ":" + port;
  c.token_file = root + "/token";
  CARAPACE_ASSIGN_OR_RETURN(c.ca_pem, ReadNamedFile(root + "/ca.crt", "in-cluster CA"));
  auto ns = ReadNamedFile(root + "/namespace", "in-cluster namespace");
  if (ns.ok() && !TrimLineEnd(*ns).empty()) c.ns = TrimLineEnd(*ns);
  auto token = c.BearerToken();
  if (!token.ok() || token->empty()) return InvalidArgument("in-cluster token: cannot read " + c.token_file + ", or it is empty");
  c.source = "in-cluster";
  return c;
}

namespace {

Result<KubeConfig> KubeconfigFromYaml(const YAML::Node& root, const std::string& path, const std::string& wanted_context) {
  auto bad = [&](const std::string& field, const std::string& why) { return InvalidArgument(path + ": " + field + ": " + why); };
  if (!root.IsMap()) return bad("", "a kubeconfig must be a mapping");
  std::string context = wanted_context;
  if (context.empty()) {
    if (!root["current-context"] || root["current-context"].Scalar().empty()) {
      return bad("current-context", "is not set; name a context (available: " + Names(root["contexts"]) + ")");
    }
    context = root["current-context"].Scalar();
  }
  int ci = -1, cli = -1, ui = -1;
  YAML::Node ctx = Find(root["contexts"], context, "context", &ci);
  if (!ctx.IsMap()) return bad("contexts", "no context \"" + context + "\" (available: " + Names(root["contexts"]) + ")");
  const std::string cpath = "contexts[" + std::to_string(ci) + "].context";
  if (!ctx["cluster"]) return bad(cpath + ".cluster", "is required");
  const std::string cluster_name = ctx["cluster"].Scalar();
  YAML::Node cluster = Find(root["clusters"], cluster_name, "cluster", &cli);
  if (!cluster.IsMap()) return bad(cpath + ".cluster", "no cluster \"" + cluster_name + "\" (available: " + Names(root["clusters"]) + ")");
  const std::string clpath = "clusters[" + std::to_string(cli) + "].cluster";

  KubeConfig c;
  c.source = "kubeconfig " + path + ", context " + context;
  if (ctx["namespace"] && !ctx["namespace"].Scalar().empty()) c.ns = ctx["namespace"].Scalar();
  if (!cluster["server"] || cluster["server"].Scalar().empty()) return bad(clpath + ".server", "is required");
  c.server = cluster["server"].Scalar();
  while (!c.server.empty() && c.server.back() == '/') c.server.pop_back();
  if (c.server.rfind("https://", 0) != 0 && c.server.rfind("http://", 0) != 0) {
    return bad(clpath + ".server", "must be an https:// URL, got \"" + c.server + "\"");
  }
  if (cluster["certificate-authority-data"]) {
    auto pem = DecodeBase64(cluster["certificate-authority-data"].Scalar());
    if (!pem.ok()) return bad(clpath + ".certificate-authority-data", pem.status().message());
    c.ca_pem = *pem;
  } else if (cluster["certificate-authority"]) {
    CARAPACE_ASSIGN_OR_RETURN(c.ca_pem, ReadNamedFile(cluster["certificate-authority"].Scalar(), path + ": " + clpath + ".certificate-authority"));
  }
  if (cluster["insecure-skip-tls-verify"]) c.insecure_skip_tls_verify = cluster["insecure-skip-tls-verify"].as<bool>(false);

  if (ctx["user"] && !ctx["user"].Scalar().empty()) {
    const std::string user_name = ctx["user"].Scalar();
    YAML::Node user = Find(root["users"], user_name, "user", &ui);
    if (!user.IsMap()) return bad(cpath + ".user", "no user \"" + user_name + "\" (available: " + Names(root["users"]) + ")");
    const std::string upath = "users[" + std::to_string(ui) + "].user";
    for (const char* plugin : {"exec", "auth-provider"}) {
      if (user[plugin]) {
        return bad(upath + "." + plugin, "credential plugins are not supported; give the user a token, a tokenFile, or a "
                                         "client certificate and key");
      }
    }
    auto pem = [&](const char* data_key, const char* file_key, std::string* out) -> Status {
      if (user[data_key]) {
        auto decoded = DecodeBase64(user[data_key].Scalar());
        if (!decoded.ok()) return bad(upath + "." + data_key, decoded.status().message());
        *out = *decoded;
      } else if (user[file_key]) {
        CARAPACE_ASSIGN_OR_RETURN(*out, ReadNamedFile(user[file_key].Scalar(), path + ": " + upath + "." + file_key));
      }
      return Status::Ok();
    };
    CARAPACE_RETURN_IF_ERROR(pem("client-certificate-data", "client-certificate", &c.client_cert_pem));
    CARAPACE_RETURN_IF_ERROR(pem("client-key-data", "client-key", &c.client_key_pem));
    if (c.client_cert_pem.empty() != c.client_key_pem.empty()) {
      return bad(upath, "a client certificate and its key go together");
    }
    if (user["token"]) c.token = user["token"].Scalar();
    if (user["tokenFile"]) c.token_file = user["tokenFile"].Scalar();
    if (user["username"] || user["password"]) return bad(upath + ".username", "basic authentication is not supported");
  }
  return c;
}

// Whatever shape the file has, an error that names it, never an exception (a field of the
// wrong kind makes yaml-cpp throw when it is read).
Result<KubeConfig> FromYaml(const YAML::Node& root, const std::string& path, const std::string& wanted_context) {
  try {
    return KubeconfigFromYaml(root, path, wanted_context);
  } catch (const YAML::Exception& e) {
    return InvalidArgument(path + ": not a kubeconfig this client can read: " + e.what());
  }
}

}  // namespace

Result<KubeConfig> LoadKubeconfig(const std::string& path, const std::string& wanted_context) {
  CARAPACE_ASSIGN_OR_RETURN(YAML::Node root, LoadYamlFile(path));
  return FromYaml(root, path, wanted_context);
}

Result<KubeConfig> ParseKubeconfig(const std::string& text, const std::string& path, const std::string& wanted_context) {
  CARAPACE_ASSIGN_OR_RETURN(YAML::Node root, ParseYaml(text, path));
  return FromYaml(root, path, wanted_context);
}

}  // namespace carapace::kube
