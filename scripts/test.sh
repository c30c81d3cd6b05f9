#!/usr/bin/env bash
# The whole test suite, as the README states it. Installs what the tests need first, so that a
# fresh machine and CI run exactly the same thing.
set -euo pipefail
cd "$(dirname "$0")/.."

# A fresh machine gains nothing from incremental state; it only fills the disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

bash scripts/install-test-deps.sh

# The cheap checks first: they read Cargo.toml files and Cargo.lock, and build nothing.
# Advisories are not checked here: they need the RustSec database from GitHub, which CI cannot
# reach (deny.toml says how to run them where it can).
echo "== cargo deny (licenses, bans, sources)"
cargo deny --locked check licenses bans sources

# The two packages outside the workspace keep lock files of their own, which a dependency change
# in a workspace crate they use leaves stale. Their builds much later (`--locked`) would fail on
# that; this says so in seconds. `update -w --locked` resolves again and fails if the lock file
# would change.
echo "== lock files outside the workspace are current (bench/service-peers, fuzz)"
for manifest in bench/service-peers/Cargo.toml fuzz/Cargo.toml; do
  cargo update --workspace --locked --quiet --manifest-path "$manifest" ||
    { echo "$manifest: its Cargo.lock is stale; run: cargo update -w --manifest-path $manifest" >&2; exit 1; }
done

echo "== cargo machete (unused dependencies)"
cargo machete

echo "== rustfmt"
cargo fmt --all -- --check

echo "== clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked --features trustgate/demo -- -D warnings

echo "== Envoy examples parse with Envoy's protos (docs/forward-auth/envoy.md)"
python3 scripts/check-envoy-examples.py

echo "== benches compile (not run: timings stay out of pass/fail tests)"
cargo bench --workspace --locked --features trustgate/demo --no-run

log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== tests"
cargo test --workspace --locked --features trustgate/demo 2>&1 | tee "$log"

# The load benchmark itself is too noisy for CI; this keeps it from rotting: it installs the
# peers, validates every configuration and checks each system once with curl, without load.
echo "== bench/peers: configurations and functional checks (no load)"
bash bench/peers/run.sh --check

# The validator's microbenchmark script, once, so that its parsing of the bench output cannot rot.
echo "== bench/validate: one interleaved run per algorithm (figures not judged)"
bash bench/validate.sh --check

# The service-layer comparison (a package of its own, outside the workspace: its peers bring
# crates trustgate does not use): the equivalence tests, and the bench binary once, untimed. It
# shares the workspace's target directory, so the crates both resolve alike are built once.
echo "== bench/service: every layer configured alike (equivalence tests, no timing)"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}" bash bench/service.sh --check 2>&1 | tee -a "$log"

echo "== fuzz smoke run (cargo-fuzz on nightly when available, stable replay always)"
bash scripts/fuzz-smoke.sh 2>&1 | tee -a "$log"

echo "== demo page in headless Chromium"
bash scripts/browser-test.sh --no-build 2>&1 | tee -a "$log"

# One closing line over every runner above: cargo's "test result:" lines and node's "# pass/# fail".
awk '
  /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  /^# pass / { p += $3 }
  /^# fail / { f += $3 }
  END { printf "tests: %d passed, %d failed\n", p, f; exit (f > 0) }
' "$log"
