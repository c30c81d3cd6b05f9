#!/usr/bin/env bash
# The whole test suite, as the README states it. Installs what the tests need first, so that a
# fresh machine and CI run exactly the same thing.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

echo "== rustfmt"
cargo fmt --all -- --check

echo "== clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --locked

echo "== benches compile"
cargo bench --workspace --locked --no-run
