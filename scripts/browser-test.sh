#!/usr/bin/env bash
# Drives the demo page in headless Chromium (playwright-core + Debian's /usr/bin/chromium) and
# saves screenshots to artifacts/. Needs scripts/install-test-deps.sh to have run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked -p trustgate
mkdir -p artifacts
node tests/browser/demo.test.mjs "$PWD/target/debug/trustgate" "$PWD/artifacts"
