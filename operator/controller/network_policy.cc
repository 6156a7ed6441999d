#include "operator/controller/network_policy.h"

#include <arpa/inet.h>

#include <algorithm>
#include <set>

#include "common/text.h"
#include "operator/controller/desired_objects.h"

namespace carapace::controller {

using nlohmann::json;

namespace {

// Where an endpoint is: a host and a port (0: any).
struct Destination {
  std::string host;
  int port = 0;
};

// "http(s)://host[:port]/path", "host:port", "[v6]:port", "dns:///host:port" or "host".
Destination Parse(std::string text, int default_port) {
  Destination d;
  if (size_t scheme = text.find("://"); scheme != std::string::npos) {
    const std::string s = text.substr(0, scheme);
    if (s == "https") default_port = 443;
    if (s == "http") default_port = 80;
    text = text.substr(scheme + 3);
    while (!text.empty() && text[0] == '/') text.erase(0, 1);  // dns:///host:port
  }
  text = text.substr(0, text.find('/'));
  if (size_t at = text.rfind('@'); at != std::string::npos) text = text.substr(at + 1);  // user:pass@
  std::string port;
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find(']');
    d.host = text.substr(1, close == std::string::npos ? std::string::npos : close - 1);
    if (close != std::string::npos && close + 1 < text.size() && text[close + 1] == ':') port = text.substr(close + 2);
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    d.host = text.substr(0, text.find(':'));
    port = text.substr(text.find(':') + 1);
  } else {
    d.host = text;  // a bare IPv6 address has several colons and no port
  }
  d.port = default_port;
  if (!port.empty()) {
    char* end = nullptr;
    const long p = std::strtol(port.c_str(), &end, 10);
    if (*end == '\0' && p > 0 && p < 65536) d.port = static_cast<int>(p);
  }
  return d;
}

bool IsIp(const std::string& host, bool* v6) {
  unsigned char buf[16];
  if (inet_pton(AF_INET, host.c_str(), buf) == 1) {
    *v6 = false;
    return true;
  }
  if (inet_pton(AF_INET6, host.c_str(), buf) == 1) {
    *v6 = true;
    return true;
  }
  return false;
}

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

// "10.0.0.0/8" or "2001:db8::/32", with a prefix length the family allows.
bool ValidCidr(const std::string& cidr) {
  const size_t slash = cidr.find('/');
  if (slash == std::string::npos) return false;
  bool v6 = false;
  if (!IsIp(cidr.substr(0, slash), &v6)) return false;
  char* end = nullptr;
  const std::string bits = cidr.substr(slash + 1);
  const long n = std::strtol(bits.c_str(), &end, 10);
  return !bits.empty() && *end == '\0' && n >= 0 && n <= (v6 ? 128 : 32);
}

json NamespaceSelector(const std::string& ns) {
  return {{"namespaceSelector", {{"matchLabels", {{"kubernetes.io/metadata.name", ns}}}}}};
}

json TcpPort(int port) { return {{"port", port}, {"protocol", "TCP"}}; }

}  // namespace

std::string NetworkPolicyName(const std::string& agentrun) { return agentrun; }

json DesiredNetworkPolicy(const AgentRun& run, const Owner& owner, const OperatorSettings& settings,
                          const json& agentrun_annotations) {
  std::vector<std::string> warnings;
  const NetworkPolicySettings& np = settings.network_policy;

  // Ingress: the control port from the operator (and namespaces named), metrics from the
  // monitoring namespaces.
  json operator_peer = NamespaceSelector(np.operator_namespace);
  if (!np.operator_pod_labels.empty()) operator_peer["podSelector"] = {{"matchLabels", np.operator_pod_labels}};
  json control_from = json::array({operator_peer});
  for (const auto& ns : np.control_namespaces) control_from.push_back(NamespaceSelector(ns));
  json ingress = json::array({{{"from", control_from}, {"ports", json::array({TcpPort(settings.control_port)})}}});
  if (!np.metrics_namespaces.empty()) {
    json metrics_from = json::array();
    for (const auto& ns : np.metrics_namespaces) metrics_from.push_back(NamespaceSelector(ns));
    ingress.push_back({{"from", metrics_from}, {"ports", json::array({TcpPort(settings.http_port)})}});
  }

  // Egress: DNS anywhere (the cluster's resolver may live in any namespace), then each
  // destination the spec names. Sets keep the rules sorted and unique: a stable object.
  std::vector<Destination> destinations;
  for (const ModelEndpointSpec* m : ModelEndpoints(run.spec)) {
    if (m->backend == "scripted" || m->endpoint.empty()) continue;
    destinations.push_back(Parse(m->endpoint, m->backend == "triton" ? 8001 : 80));
  }
  for (const auto& t : run.spec.tools) {
    if (t.kind == "mcp" && !t.mcp.url.empty()) destinations.push_back(Parse(t.mcp.url, 80));
    if (t.kind == "http") {
      for (const auto& h : t.http.allowed_hosts) destinations.push_back(h == "*" ? Destination{"*", 0} : Parse(h, 0));
    }
  }
  if (!settings.worker_otlp_endpoint.empty()) destinations.push_back(Parse(settings.worker_otlp_endpoint, 4317));

  std::set<std::string> namespaces;                // in-cluster Services' namespaces
  std::set<std::pair<std::string, int>> ip_blocks;  // (cidr, port; 0: any)
  std::set<std::string> unexpressed;
  for (const Destination& d : destinations) {
    if (d.host.empty() || IsLoopback(d.host)) continue;  // the pod itself: no policy applies
    bool v6 = false;
    if (IsIp(d.host, &v6)) {
      ip_blocks.insert({d.host + (v6 ? "/128" : "/32"), d.port});
      continue;
    }
    const size_t svc = d.host.find(".svc");
    const bool service = svc != std::string::npos &&
                         (svc + 4 == d.host.size() || d.host.compare(svc, 5, ".svc.") == 0);
    if (service) {
      const std::string name_ns = d.host.substr(0, svc);
      const size_t dot = name_ns.find('.');
      if (dot != std::string::npos && name_ns.find('.', dot + 1) == std::string::npos) {
        namespaces.insert(name_ns.substr(dot + 1));
        continue;
      }
    }
    if (d.host.find('.') == std::string::npos && d.host != "*") {
      namespaces.insert(owner.ns);  // a bare Service name: this namespace
      continue;
    }
    unexpressed.insert(d.host);
  }
  // The escape hatch: CIDRs the AgentRun's annotation opens, any port.
  const json cidrs_text = agentrun_annotations.is_object() ? agentrun_annotations.value(kEgressCidrsAnnotation, json())
                                                           : json();
  if (cidrs_text.is_string()) {
    for (const std::string& cidr : SplitCommaList(cidrs_text.get<std::string>())) {
      if (ValidCidr(cidr)) {
        ip_blocks.insert({cidr, 0});
      } else {
        warnings.push_back(std::string(kEgressCidrsAnnotation) + ": \"" + cidr + "\" is not a CIDR (10.0.0.0/8, 2001:db8::/32); ignored");
      }
    }
  }

  json egress = json::array({{{"ports", json::array({{{"port", 53}, {"protocol", "UDP"}}, TcpPort(53)})}}});
  if (!namespaces.empty()) {
    json to = json::array();
    for (const auto& ns : namespaces) to.push_back(NamespaceSelector(ns));
    egress.push_back({{"to", to}});
  }
  for (const auto& [cidr, port] : ip_blocks) {
    json rule = {{"to", json::array({{{"ipBlock", {{"cidr", cidr}}}}})}};
    if (port > 0) rule["ports"] = json::array({TcpPort(port)});
    egress.push_back(rule);
  }

  json meta = {{"name", NetworkPolicyName(owner.name)},
               {"namespace", owner.ns},
               {"labels", Labels(owner.name)},
               {"ownerReferences", json::array({OwnerReference(owner)})}};
  // Always both, empty when there is nothing to say: a fixed host or CIDR clears its line.
  std::string hosts, said;
  for (const auto& h : unexpressed) hosts += (hosts.empty() ? "" : ",") + h;
  for (const auto& w : warnings) said += (said.empty() ? "" : "; ") + w;
  meta["annotations"] = {{kUnexpressedEgressAnnotation, hosts}, {kEgressWarningsAnnotation, said}};
  return {{"apiVersion", "networking.k8s.io/v1"},
          {"kind", "NetworkPolicy"},
          {"metadata", meta},
          {"spec",
           {{"podSelector", {{"matchLabels", SelectorLabels(owner.name)}}},
            {"policyTypes", json::array({"Ingress", "Egress"})},
            {"ingress", ingress},
            {"egress", egress}}}};
}

}  // namespace carapace::controller
