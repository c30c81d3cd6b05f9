#!/usr/bin/env bash
# Installs the system packages and tools the test suite uses. Idempotent; safe to run on a fresh
# machine (as root, as CI does) or a developer's.
set -euo pipefail
cd "$(dirname "$0")/.."

need_rust_component() {
  rustup component list --installed 2>/dev/null | grep -q "^$1" || rustup component add "$1"
}
if command -v rustup >/dev/null 2>&1; then
  need_rust_component rustfmt
  need_rust_component clippy
fi

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== apt-get install ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Headless browser for the demo page test (Debian's Chromium; nothing downloads a browser), and
# the openssl CLI that makes the TLS test's certificates.
apt_install chromium openssl
# The proxies in front of the decision endpoint (crates/trustgate/tests/e2e/forward_auth.rs):
# Debian's nginx (auth_request built in) and Caddy (forward_auth). The tests start their own
# instances on loopback ports; the packaged services must not hold port 80.
apt_install nginx caddy
for service in nginx caddy; do
  service "$service" stop >/dev/null 2>&1 || true
done
# Redis for the fleet tests (crates/trustgate/tests/e2e/fleet/): Debian's redis-server and
# redis-cli (`--cluster create`). The tests start their own servers on loopback ports; the
# packaged service must not hold 6379 nor persist anything.
apt_install redis-server redis-tools
service redis-server stop >/dev/null 2>&1 || true
command -v node >/dev/null 2>&1 || apt_install nodejs npm

echo "== npm ci (tests/browser)"
(cd tests/browser && npm ci --no-audit --no-fund --silent)

echo "== npm ci (tests/interop/oidc-provider)"
(cd tests/interop/oidc-provider && npm ci --no-audit --no-fund --silent)

# joserfc: an independent JOSE implementation that mints tokens for the interop test
# (crates/trustgate/tests/e2e/interop_joserfc.rs, tests/interop/joserfc_mint.py).
if ! python3 -c "import joserfc" >/dev/null 2>&1; then
  echo "== pip install joserfc"
  python3 -m pip install --quiet joserfc
fi

# protoc and protobuf for Python, and PyYAML: scripts/check-envoy-examples.py parses the Envoy
# configurations of docs/forward-auth/envoy.md with Envoy's own protos (Envoy is not packaged).
if ! python3 -c "import grpc_tools, yaml" >/dev/null 2>&1; then
  echo "== pip install grpcio-tools pyyaml"
  python3 -m pip install --quiet grpcio-tools pyyaml
fi

# cargo-deny (licences, bans, sources: deny.toml) and cargo-machete (unused dependencies), which
# scripts/test.sh runs first. Pinned, so that a new release cannot fail CI by itself, and built
# only when that version is not already on PATH: `cargo install` compiles from source, which took
# about 5 minutes for cargo-deny and 2 for cargo-machete on a 2-core machine.
cargo_install_pinned() {
  local crate=$1 version=$2
  if "$crate" --version 2>/dev/null | grep -qw "$version"; then
    return
  fi
  echo "== cargo install $crate $version"
  cargo install --locked "$crate" --version "$version"
}
cargo_install_pinned cargo-deny 0.20.2
cargo_install_pinned cargo-machete 0.9.2

# cargo-fuzz for the fuzz smoke run (scripts/fuzz-smoke.sh), only where a nightly toolchain is
# installed: libFuzzer needs nightly. Without nightly the smoke run says so and replays on stable.
if command -v rustup >/dev/null 2>&1 && rustup run nightly rustc --version >/dev/null 2>&1; then
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== cargo install cargo-fuzz"
    cargo install cargo-fuzz --locked
  fi
fi
