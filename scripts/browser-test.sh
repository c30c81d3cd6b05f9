#!/usr/bin/env bash
# Drives the demo page in headless Chromium (playwright-core + Debian's /usr/bin/chromium) and
# saves screenshots to artifacts/. Needs scripts/install-test-deps.sh to have run.
# `--no-build` reuses the binary that `cargo test --workspace` just built (scripts/test.sh), which
# avoids a second build with a different feature set.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
if [ "${1:-}" != "--no-build" ]; then
  cargo build --locked -p trustgate --features demo
fi
mkdir -p artifacts
node tests/browser/demo.test.mjs "$target_dir/debug/trustgate" "$PWD/artifacts"
