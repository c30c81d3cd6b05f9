#!/usr/bin/env bash
# Fuzz smoke run: each cargo-fuzz target (fuzz/fuzz_targets: token, jwks, headers, framing,
# decision) for a short time when a nightly toolchain is available, then rustfmt and clippy over
# the fuzz crate, and the stable replay of the seeds plus a few thousand random inputs
# (fuzz/tests/replay.rs), which always run. Fails on any crash, panic or lint.
#
#   FUZZ_SECONDS=30          seconds per target (nightly only)
#   FUZZ_SEED=1              libFuzzer's seed: fixed, so that a CI failure reproduces; set another
#                            (or 0 for a random one) for exploratory runs
#   FUZZ_REPLAY_CASES=1500   random cases per strategy in the stable replay
#   FUZZ_TARGETS="token jwks headers framing decision"
#   FUZZ_NO_NIGHTLY=1        behave as if nightly were missing (to test the fallback)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-30}"
seed="${FUZZ_SEED:-1}"
targets="${FUZZ_TARGETS:-token jwks headers framing decision}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"

if [ "${FUZZ_NO_NIGHTLY:-0}" != 1 ] && rustup run nightly rustc --version >/dev/null 2>&1; then
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== cargo install cargo-fuzz"
    cargo install cargo-fuzz --locked
  fi
  echo "== cargo-fuzz build ($(rustup run nightly rustc --version))"
  cargo +nightly fuzz build
  for target in $targets; do
    echo "== cargo fuzz run $target for ${seconds}s"
    mkdir -p "corpus/$target"
    # New inputs go to corpus/ (ignored by git); seeds/ is read only. A crash exits non-zero
    # and leaves its input in artifacts/$target/.
    if ! cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -seed="$seed" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
      echo "!! fuzz target $target found a crash; the input is in fuzz/artifacts/$target/" >&2
      ls -l "artifacts/$target" >&2 || true
      exit 1
    fi
  done
else
  cat >&2 <<'EOF'
!!
!! NIGHTLY RUST IS MISSING: the cargo-fuzz targets were NOT run.
!! Install it with `rustup toolchain install nightly` to fuzz with libFuzzer.
!! Running only the stable replay of the seeds and random inputs.
!!
EOF
fi

# Its own workspace, so the main rustfmt and clippy runs never see it; it had drifted before.
echo "== rustfmt and clippy on the fuzz crate (targets included, warnings are errors)"
cargo fmt -- --check
cargo clippy --locked --all-targets -- -D warnings

echo "== fuzz replay on stable (seeds, corpus, random and mutated inputs)"
cargo test --locked --no-default-features
