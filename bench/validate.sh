#!/usr/bin/env bash
# The validator's microbenchmark targets, measured over many runs: full validation against a raw
# aws-lc-rs verify on a pre-parsed key (goals: RS256 ≤ 1.15×, ES256 ≤ 1.10×) and a cache hit
# (≤ 1 µs). Writes docs/microbenchmarks.md.
#
# Each run of the bench binary prints, per algorithm, the ratio of an interleaved measurement:
# both sides in alternating short batches in one process, rounds with a context switch dropped
# (benches/validate.rs). A virtual machine's speed drifts between runs, and two separate criterion
# groups can land in different states; the interleaved ratio of one run cannot. This script takes
# the median over many such runs, and shows their spread.
#
# Usage:
#   bench/validate.sh            BENCH_RUNS runs (default 15), then criterion's cache-hit groups
#   bench/validate.sh --check    CI: one run, every figure parsed, docs/ left alone
#
# Environment: BENCH_RUNS=15, BENCH_CPU=1 (the core the runs are pinned to).
set -euo pipefail

mode=full
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  *) echo "unknown argument: $1 (use --check or nothing)" >&2; exit 64 ;;
esac
cd "$(dirname "$0")/.."
runs=${BENCH_RUNS:-15}
[ "$mode" = check ] && runs=1
cpu=${BENCH_CPU:-1}
[ "$(nproc)" -lt 2 ] && cpu=0

die() { printf 'bench/validate: %s\n' "$*" >&2; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# `--workspace`, as scripts/test.sh builds the benches: with `-p trustgate-core`, features unify
# differently and the whole release build would run again.
if ! cargo bench --workspace --locked --no-run --message-format=json >"$log" 2>/dev/null; then
  die "cargo bench --no-run failed (run it by hand to see why)"
fi
exe=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "validate" and m.get("executable"):
        print(m["executable"])
' "$log")
[ -x "$exe" ] || die "no bench executable"

# A filter that matches no criterion benchmark: only the interleaved measurements run.
for run in $(seq 1 "$runs"); do
  taskset -c "$cpu" "$exe" --bench 'interleaved-only' | grep ' interleaved: ' | sed "s/^/$run /"
done >"$log"

summary=$(python3 - "$log" "$runs" <<'PY'
import re, statistics, sys
rows = {}
pattern = re.compile(r"^(\d+) (\S+) interleaved: raw_verify (\d+) ns, validate_uncached (\d+) ns, "
                     r"ratio ([0-9.]+) ")
for line in open(sys.argv[1]):
    m = pattern.match(line)
    if not m:
        sys.exit(f"unparsed line: {line!r}")
    _, alg, raw, full, ratio = m.groups()
    rows.setdefault(alg, []).append((int(raw), int(full), float(ratio)))
goals = {"RS256": 1.15, "ES256": 1.10}
if set(goals) - set(rows) or any(len(v) != int(sys.argv[2]) for v in rows.values()):
    sys.exit("missing runs")
for alg, v in rows.items():
    ratios = sorted(r for _, _, r in v)
    goal = goals.get(alg)
    met = f"{sum(r <= goal for r in ratios)} of {len(ratios)}" if goal else "(no goal)"
    print(f"| {alg} | {statistics.median(r for r, _, _ in v) / 1000:.1f} µs | "
          f"{statistics.median(f for _, f, _ in v) / 1000:.1f} µs | {statistics.median(ratios):.3f} | "
          f"{ratios[0]:.3f}–{ratios[-1]:.3f} | {'≤ %.2f×' % goal if goal else '—'} | {met} |")
PY
) || die "could not read the interleaved figures"

if [ "$mode" = check ]; then
  echo "$summary"
  echo "bench/validate --check: every algorithm measured once"
  exit 0
fi

hits=$(taskset -c "$cpu" "$exe" --bench --warm-up-time 1 --measurement-time 3 'validate_cache_hit' 2>/dev/null |
  awk '/validate_cache_hit/ { name = $1 }
    /time:/ && name { for (i = 1; i < NF; i++) if ($i == "time:") print name, $(i + 3), $(i + 4); name = "" }')
[ -n "$hits" ] || die "no cache-hit figures"

{
  echo "# Validator microbenchmarks"
  echo
  echo "Made by \`bench/validate.sh\` (BENCH_RUNS=$runs) on $(date -u +%Y-%m-%d) at commit" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(rustc --version)."
  echo "Machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), pinned to CPU $cpu."
  echo
  echo "## Full validation against a raw verify"
  echo
  echo "Full validation is \`Validator::validate\` with the cache off: size check, base64url and"
  echo "strict JSON parsing of the payload, the protected header (parsed once per thread, then found"
  echo "by its text, as for every token one key signs), issuer and key selection, signature, claims"
  echo "and identity mapping. The"
  echo "raw verify is aws-lc-rs' \`ParsedPublicKey::verify_sig\` on a key parsed once, over the same"
  echo "signing input and signature. Each of the $runs runs measures both sides interleaved in one"
  echo "process; the table gives the medians over runs and the spread of the per-run ratios."
  echo
  echo "| Algorithm | raw verify | full validation | ratio (median) | ratio (range) | goal | runs meeting it |"
  echo "|---|---|---|---|---|---|---|"
  echo "$summary"
  echo
  echo "## Cache hit"
  echo
  echo "Criterion, \`validate_cache_hit\`: the same call with the cache on, once the token is cached."
  echo
  echo "| Benchmark | time (criterion's estimate) |"
  echo "|---|---|"
  echo "$hits" | while read -r name value unit; do echo "| $name | $value $unit |"; done
  echo
  echo "Goal: ≤ 1 µs."
} >docs/microbenchmarks.md
cat docs/microbenchmarks.md
