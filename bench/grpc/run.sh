#!/usr/bin/env bash
# gRPC workload of the load benchmark: unary calls (bench/grpc-load) to examples/grpc-echo,
# reached directly, through trustgate (pattern 3 on an h2c upstream), through a plain HAProxy
# (HTTP/2 on both sides, no JWT) and through HAProxy with jwt_verify (the same rules as the
# HTTP/1 benchmark's). Same RS256 token, and 2,000 RS256 tokens with trustgate's cache off.
# bench/peers/run.sh calls it (full run, --check, and --grpc for this part alone).
#
# Usage:
#   bench/grpc/run.sh            measure; writes the gRPC section of docs/benchmarks.md
#   bench/grpc/run.sh --check    CI: start every system once and check a call passes with the
#                                identity of its token and without a token is UNAUTHENTICATED
#
# Environment: BENCH_ROUNDS (3), BENCH_SECS (5), BENCH_WARMUP (2), BENCH_TOKENS (2000),
# BENCH_GRPC_CONNS (4) HTTP/2 connections × BENCH_GRPC_STREAMS (8) calls in flight on each,
# BENCH_GW_CPU (0) / BENCH_LOAD_CPU (1), BENCH_PORT_BASE (18180; this uses base+40 to base+49),
# BENCH_NO_DOCS=1 (print only), CARGO_TARGET_DIR.
set -euo pipefail

mode=full
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  *) echo "unknown argument: $1 (use --check or nothing)" >&2; exit 64 ;;
esac

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target="$root/$target" ;; esac
rounds=${BENCH_ROUNDS:-3}
secs=${BENCH_SECS:-5}
warm=${BENCH_WARMUP:-2}
ntokens=${BENCH_TOKENS:-2000}
conns=${BENCH_GRPC_CONNS:-4}
streams=${BENCH_GRPC_STREAMS:-8}
gw_cpu=${BENCH_GW_CPU:-0}
load_cpu=${BENCH_LOAD_CPU:-1}
base=$(( ${BENCH_PORT_BASE:-18180} + 40 ))
iss=https://idp.bench
aud=bench-api
if [ "$(nproc)" -lt 2 ]; then gw_cpu=0; load_cpu=0; fi

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench/grpc: %s\n' "$*" >&2; exit 1; }

command -v haproxy >/dev/null || die "haproxy is needed (bench/peers/run.sh installs it)"
command -v taskset >/dev/null || die "taskset is needed (util-linux)"

build_log=$(mktemp "${TMPDIR:-/tmp}/trustgate-grpc-build.XXXXXX")
if [ "$mode" = check ]; then
  profile=(--workspace --all-targets --features trustgate/demo); bin="$target/debug"
else
  profile=(--release -p trustgate -p test-support -p grpc-echo -p grpc-load); bin="$target/release"
fi
log "cargo build ${profile[*]}"
cargo build --locked "${profile[@]}" >"$build_log" 2>&1 || { tail -n 60 "$build_log" >&2; die "build failed"; }
rm -f "$build_log"
for b in trustgate forge-tokens grpc-echo grpc-load; do
  [ -x "$bin/$b" ] || die "no $b in $bin"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/trustgate-grpc.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$mode" = full ] || ntokens=1
"$bin/forge-tokens" --alg RS256 --count "$ntokens" --iss "$iss" --aud "$aud" --out "$work/RS256" >/dev/null
head -1 "$work/RS256/tokens.txt" >"$work/one-token.txt"

# Systems: direct (the echo server itself), tg, tgnc (cache off), hp (plain HAProxy), hj
# (HAProxy + jwt_verify).
declare -A NAME=([direct]="grpc-echo, direct" [tg]="trustgate" [tgnc]="trustgate, cache off"
  [hp]="HAProxy, no JWT (h2)" [hj]="HAProxy + jwt_verify (h2)")
declare -A PORT=([direct]=$base [tg]=$((base + 1)) [tgnc]=$((base + 2)) [hp]=$((base + 3)) [hj]=$((base + 4)))
admin_port=$((base + 9))

wait_listening() { # PORT PID
  local _
  for _ in $(seq 1 100); do
    kill -0 "$2" 2>/dev/null || return 1
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

start() { # SYSTEM CPU COMMAND...
  local system=$1 cpu=$2
  shift 2
  taskset -c "$cpu" "$@" >"$work/$system.log" 2>&1 &
  pids+=($!)
  wait_listening "${PORT[$system]}" "$!" || { cat "$work/$system.log" >&2; die "${NAME[$system]} did not start"; }
}

# The echo server is the upstream of every gateway, on the load generator's core (as nginx is in
# the HTTP/1 benchmark).
start direct "$load_cpu" "$bin/grpc-echo" --listen "127.0.0.1:${PORT[direct]}" --mode none

for s in tg tgnc; do
  admin=$admin_port
  [ "$s" = tgnc ] && admin=$((admin_port - 1))
  cat >"$work/$s.toml" <<TOML
[server]
listen = "127.0.0.1:${PORT[$s]}"
worker_threads = 1

[admin]
listen = "127.0.0.1:$admin"

[log]
access = false
level = "error"

[cache]
enabled = $([ "$s" = tgnc ] && echo false || echo true)

[[issuer]]
id = "bench"
issuer = "$iss"
audiences = ["$aud"]
algorithms = ["RS256"]
jwks_file = "$work/RS256/jwks.json"

[[upstream]]
id = "echo"
url = "http://127.0.0.1:${PORT[direct]}"
protocol = "http2"

[[route]]
name = "echo"
prefix = "/trustgate.echo.v1.Echo"
upstream = "echo"
pattern = "identity-headers"
headers = [{ name = "X-User-Id", from = "subject" }]
TOML
  "$bin/trustgate" check -c "$work/$s.toml" >/dev/null || die "trustgate config invalid"
  start "$s" "$gw_cpu" "$bin/trustgate" serve -c "$work/$s.toml"
done

# HAProxy: the HTTP/1 benchmark's configurations, with HTTP/2 on the listener (h2c with prior
# knowledge, `proto h2`) and towards the echo server.
for s in hp hj; do
  template=haproxy-plain.cfg.in
  [ "$s" = hj ] && template=haproxy-jwt.cfg.in
  sed -e "s|@PORT@|${PORT[$s]} proto h2|; s|server nginx 127.0.0.1:@UPSTREAM_PORT@|server echo 127.0.0.1:${PORT[direct]} proto h2|" \
    -e "s|@ALG@|RS256|g; s|@PEM@|$work/RS256/public.pem|g; s|@ISS@|$iss|g; s|@AUD@|$aud|g" \
    "bench/peers/$template" >"$work/$s.cfg"
  haproxy -c -q -f "$work/$s.cfg" || die "${NAME[$s]}: config invalid"
  start "$s" "$gw_cpu" haproxy -db -f "$work/$s.cfg"
done

load() { # SYSTEM TOKENS-FILE SECONDS WARMUP
  taskset -c "$load_cpu" "$bin/grpc-load" --target "http://127.0.0.1:${PORT[$1]}" \
    --tokens "$2" --connections "$conns" --streams "$streams" --seconds "$3" --warmup "$4"
}

# A functional check: a call with a valid token succeeds, with no failures.
check() { # SYSTEM
  local out
  out=$(load "$1" "$work/one-token.txt" 0.5 0) || die "${NAME[$1]}: grpc-load failed"
  case "$out" in
    *'"failures":{}'*) ;;
    *) die "${NAME[$1]}: calls failed: $out" ;;
  esac
}
for s in direct tg tgnc hp hj; do check "$s"; log "ok: ${NAME[$s]}"; done

if [ "$mode" = check ]; then
  # Without a token the gateways refuse with UNAUTHENTICATED; the echo server has no auth.
  : >"$work/no-token.txt"
  for s in tg hj; do
    out=$(taskset -c "$load_cpu" "$bin/grpc-load" --target "http://127.0.0.1:${PORT[$s]}" \
      --connections 1 --streams 1 --seconds 0.3 --warmup 0)
    # trustgate answers the gRPC way; HAProxy's `http-request return` is a plain HTTP 401,
    # which a gRPC client can only read as a failed call.
    want='*"ok":0,*'
    [ "$s" = tg ] && want='*"Unauthenticated":*"ok":0,*'
    # shellcheck disable=SC2053 # $want is a pattern
    [[ $out == $want ]] || die "${NAME[$s]}: a call without a token was not refused: $out"
  done
  log "bench/grpc --check: every system answered; gateways refuse calls without a token"
  exit 0
fi

# Measure: systems take turns in each round; the median of the rounds is reported.
declare -A RUNS
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
for round in $(seq 1 "$rounds"); do
  for workload in same many; do
    systems="direct tg tgnc hp hj"
    tokens="$work/one-token.txt"
    if [ "$workload" = many ]; then systems="tg tgnc hj"; tokens="$work/RS256/tokens.txt"; fi
    for s in $systems; do
      out=$(load "$s" "$tokens" "$secs" "$warm")
      case "$out" in *'"failures":{}'*) ;; *) die "${NAME[$s]} ($workload): failures: $out" ;; esac
      RUNS[$workload.$s.rps]+="$(field "$out" rps) "
      RUNS[$workload.$s.p99]+="$(field "$out" p99_us) "
      log "round $round $workload ${NAME[$s]}: $(field "$out" rps) calls/s, p99 $(field "$out" p99_us) µs"
    done
  done
done

rps() { printf '%s' "${RUNS[$1.$2.rps]}" | median; }
p99() { printf '%s' "${RUNS[$1.$2.p99]}" | median; }
# A ratio pairs the two figures round by round and takes the median of those ratios, as the
# HTTP/1 tables do: each system's median may come from a different round, and the machine's
# speed drifts between rounds.
ratio() { # WORKLOAD SYSTEM BASE_WORKLOAD BASE_SYSTEM
  python3 -c '
import statistics, sys
a, b = ([float(x) for x in s.split()] for s in sys.argv[1:3])
print(f"{statistics.median(x / y for x, y in zip(a, b)):.2f}×")' "${RUNS[$1.$2.rps]}" "${RUNS[$3.$4.rps]}"
}
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
table=$(
  echo "<!-- grpc:begin (written by bench/grpc/run.sh) -->"
  echo "### gRPC, unary calls (grpc-load, $conns HTTP/2 connections × $streams calls in flight, median of $rounds rounds of ${secs} s)"
  echo
  echo "$(date -u +%Y-%m-%d), commit $commit, $(haproxy -v | head -1 | awk '{print $1, $3}'). Gateways on core $gw_cpu, the echo server and the load generator on core $load_cpu."
  echo
  echo "| workload | system | calls/s | p99 (µs) | vs direct | vs HAProxy, no JWT |"
  echo "|---|---|---:|---:|---:|---:|"
  for s in direct tg tgnc hp hj; do
    r=$(rps same "$s")
    echo "| same token | ${NAME[$s]} | ${r%.*} | $(p99 same "$s") | $(ratio same "$s" same direct) | $(ratio same "$s" same hp) |"
  done
  for s in tg tgnc hj; do
    r=$(rps many "$s")
    echo "| $ntokens tokens | ${NAME[$s]} | ${r%.*} | $(p99 many "$s") | $(ratio many "$s" same direct) | $(ratio many "$s" same hp) |"
  done
  echo
  echo "trustgate vs HAProxy + jwt_verify: same token $(ratio same tg same hj), $ntokens tokens with trustgate's cache off $(ratio many tgnc many hj)."
  echo
  echo "**Method.** \`bench/grpc-load\` (tonic, one Tokio thread) sends \`Echo/Unary\` calls with a"
  echo "10-byte message to examples/grpc-echo; a call that is not OK fails the run. trustgate runs"
  echo "pattern 3 (\`X-User-Id\` from \`sub\`, token removed) towards an h2c upstream; HAProxy has"
  echo "\`proto h2\` on its listener and its server line and the HTTP/1 table's \`jwt_verify\` rules."
  echo "The systems take turns in every round; calls/s and p99 are medians of the rounds, and each"
  echo "ratio the median of the round-by-round ratios. *Direct* is the echo server without a gateway hop,"
  echo "sharing its core with the load generator: the ceiling of this setup, not a like-for-like peer."
  echo "<!-- grpc:end -->"
)
printf '%s\n' "$table"
if [ -z "${BENCH_NO_DOCS:-}" ]; then
  python3 - "$table" <<'PY'
import re, sys
path = "docs/benchmarks.md"
table = sys.argv[1]
text = open(path).read()
pattern = re.compile(r"<!-- grpc:begin.*?<!-- grpc:end -->", re.S)
text = pattern.sub(lambda _: table, text) if pattern.search(text) else text.rstrip("\n") + "\n\n## gRPC\n\n" + table + "\n"
open(path, "w").write(text)
PY
  log "wrote the gRPC section of docs/benchmarks.md"
fi
