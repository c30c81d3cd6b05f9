#!/usr/bin/env bash
# Installs the system packages and tools the test suite uses. Idempotent.
set -euo pipefail

need_rust_component() {
  rustup component list --installed 2>/dev/null | grep -q "^$1" || rustup component add "$1"
}
if command -v rustup >/dev/null 2>&1; then
  need_rust_component rustfmt
  need_rust_component clippy
fi
