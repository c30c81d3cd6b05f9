#!/usr/bin/env bash
# Side-by-side load benchmark of trustgate against HAProxy (jwt_verify), Apache httpd with
# mod_auth_openidc, and a plain HAProxy proxy, every one doing "pattern 3": strip client identity
# headers, verify the bearer token (alg pinned, iss, aud, exp required, nbf), inject X-User-Id
# from `sub`, drop Authorization. Then the edge over TLS: trustgate terminating TLS (rustls)
# against HAProxy terminating TLS (OpenSSL) and proxying plainly, with HTTPS keep-alive (wrk), HTTP/2
# (h2load) and new connections per second (full and resumed handshakes, test-support's
# `tls-connections`). See docs/benchmarks.md for the method and the last results.
#
# Usage:
#   bench/peers/run.sh            full run: writes docs/benchmarks.md and docs/benchmarks.png
#   bench/peers/run.sh --check    CI: install, generate and validate every config, start each
#                                 system once and run the functional checks; no load
#   bench/peers/run.sh --grpc     the gRPC workload alone (bench/grpc/run.sh; the full run and
#                                 --check run it too)
#   bench/peers/run.sh --compare BIN
#                                 before/after: the same-token workload only, this tree's
#                                 trustgate against the trustgate binary BIN (an older build) and
#                                 plain HAProxy, interleaved; prints the ratios, writes no docs
#   bench/peers/run.sh --store    the same-token workload, this tree's trustgate with
#                                 [store] backend = "redis" and [revocation] (a local
#                                 redis-server) against the default memory store, interleaved;
#                                 writes docs/benchmarks-fleet.md
#   bench/peers/run.sh --tracing BIN
#                                 tracing overhead: the same-token workload on this tree's
#                                 trustgate with [telemetry] off, on at 1 % and on at 100 %
#                                 sampling (OTLP/HTTP to the nginx upstream, which answers 200 and
#                                 discards), interleaved with the trustgate binary BIN built
#                                 without telemetry (the baseline), with instructions per request
#                                 counted by callgrind; prints the ratios and writes its section
#                                 of docs/benchmarks.md (BENCH_NO_DOCS=1: prints only)
#
# Environment (--tracing):
#   BENCH_CALLGRIND_ONLY=1 instructions per request only (callgrind), no wrk rounds, no docs
#   BENCH_CALLGRIND_DIR=   keep the callgrind profiles there (callgrind_annotate reads them)
#
# Environment (full run):
#   BENCH_ROUNDS=3         rounds of the wrk workloads and of the fixed-rate runs; the systems
#                          take turns in each round
#   BENCH_SECS=5           seconds measured per wrk workload and round, per oha round and per RSS run
#   BENCH_WARMUP=2         seconds of warm-up before each wrk workload (discarded)
#   BENCH_CONNS=32         wrk and oha connections
#   BENCH_RATE=            fixed rate for oha, req/s; default BENCH_RATE_FRACTION of the slowest
#   BENCH_RATE_FRACTION=0.5  JWT system's same-token throughput, rounded down to a multiple of 100
#   BENCH_RSS_CONNS=1000   keep-alive connections held (oha, at the fixed rate) while RSS is read
#   BENCH_TOKENS=2000      distinct tokens per distinct-token workload
#   BENCH_GW_CPU=0 BENCH_LOAD_CPU=1   cores for the gateways and for wrk, oha and nginx
#   BENCH_PORT_BASE=18180  first of the loopback ports used
#   BENCH_NO_DOCS=1        print the tables only, do not overwrite docs/
#   CARGO_TARGET_DIR       honoured for the binaries
set -euo pipefail

mode=full
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  --grpc) exec "$(dirname "$0")/../grpc/run.sh" ;;
  --store) mode=store ;;
  --compare | --tracing)
    mode=${1#--}
    baseline_bin=${2:-}
    [ -x "$baseline_bin" ] || { echo "$1 needs the path of a trustgate binary" >&2; exit 64; }
    baseline_bin=$(cd "$(dirname "$baseline_bin")" && pwd)/$(basename "$baseline_bin")
    ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "unknown argument: $1 (use --check, --compare BIN, --tracing BIN, --store, --grpc or nothing)" >&2; exit 64 ;;
esac

root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/bench/peers"
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target="$root/$target" ;; esac

rounds=${BENCH_ROUNDS:-3}
secs=${BENCH_SECS:-5}
warm=${BENCH_WARMUP:-2}
conns=${BENCH_CONNS:-32}
rate=${BENCH_RATE:-}
rate_fraction=${BENCH_RATE_FRACTION:-0.5}
rss_conns=${BENCH_RSS_CONNS:-1000}
ntokens=${BENCH_TOKENS:-2000}
gw_cpu=${BENCH_GW_CPU:-0}
load_cpu=${BENCH_LOAD_CPU:-1}
base=${BENCH_PORT_BASE:-18180}
upstream_port=$base
keys_port=$((base + 10))
admin_port=$((base + 19))
iss=https://idp.bench
aud=bench-api

log() { printf '== %s\n' "$*" >&2; }
# The markers around the section `--tracing` writes into docs/benchmarks.md.
tracing_begin='<!-- tracing overhead: begin -->'
tracing_end='<!-- tracing overhead: end -->'
die() { printf 'bench/peers: %s\n' "$*" >&2; exit 1; }

if [ "$(nproc)" -lt 2 ]; then
  [ "$mode" = full ] && log "only one CPU: gateways and load generators share it, figures are meaningless"
  gw_cpu=0
  load_cpu=0
fi

# ---------------------------------------------------------------------------------------------
# Install
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_deps() {
  local need=() services=()
  command -v haproxy >/dev/null || { need+=(haproxy); services+=(haproxy); }
  command -v apache2 >/dev/null || { need+=(apache2); services+=(apache2); }
  [ -e /usr/lib/apache2/modules/mod_auth_openidc.so ] || need+=(libapache2-mod-auth-openidc)
  command -v nginx >/dev/null || { need+=(nginx-light); services+=(nginx); }
  command -v curl >/dev/null || need+=(curl)
  command -v openssl >/dev/null || need+=(openssl)
  command -v taskset >/dev/null || need+=(util-linux)
  command -v ss >/dev/null || need+=(iproute2)
  command -v h2load >/dev/null || need+=(nghttp2-client)
  if [ "$mode" != check ]; then
    command -v wrk >/dev/null || need+=(wrk)
    command -v gnuplot >/dev/null || need+=(gnuplot-nox)
    command -v python3 >/dev/null || need+=(python3)
  fi
  if [ ${#need[@]} -gt 0 ]; then
    log "apt-get install ${need[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${need[@]}" >/dev/null
    # Debian's postinst may start the packaged services: they must not hold ports or CPU.
    local s
    for s in "${services[@]}"; do
      as_root service "$s" stop >/dev/null 2>&1 || true
    done
  fi
  if [ "$mode" = full ] && ! command -v oha >/dev/null; then
    if [ -x "$HOME/.cargo/bin/oha" ]; then
      PATH="$HOME/.cargo/bin:$PATH"
    else
      log "cargo install oha --locked"
      cargo install oha --locked >/dev/null 2>&1 || die "cargo install oha failed"
      PATH="$HOME/.cargo/bin:$PATH"
    fi
  fi
}

install_deps

# ---------------------------------------------------------------------------------------------
# Build, keys, tokens
# The build's output is kept and shown only when it fails, so that a CI log says why.
build_log=$(mktemp "${TMPDIR:-/tmp}/trustgate-peers-build.XXXXXX")
build() {
  if ! "$@" >"$build_log" 2>&1; then
    tail -n 60 "$build_log" >&2
    rm -f "$build_log"
    die "$* failed"
  fi
}
if [ "$mode" != check ]; then
  # The full run ends with bench/grpc/run.sh, which builds these four packages: building the same
  # set here resolves the same features, so that build finds trustgate up to date. With another
  # set, the features under it differ and trustgate is compiled again (about 3 minutes on 2 cores).
  packages=(-p trustgate -p test-support)
  [ "$mode" = full ] && packages+=(-p grpc-echo -p grpc-load)
  log "cargo build --release ${packages[*]}"
  build cargo build --release --locked "${packages[@]}"
  bin="$target/release"
else
  # Every target of the workspace, so that features unify as in `cargo test --workspace` and the
  # crates that run built are reused: `cargo build -p trustgate -p test-support` resolves other
  # features and compiles some 25 crates (tokio, hyper, syn, ...) a second time.
  log "cargo build --workspace --all-targets (debug)"
  build cargo build --workspace --all-targets --locked --features trustgate/demo
  bin="$target/debug"
fi
rm -f "$build_log"
if ! [ -x "$bin/trustgate" ] || ! [ -x "$bin/forge-tokens" ] || ! [ -x "$bin/tls-connections" ]; then
  die "no trustgate/forge-tokens/tls-connections in $bin"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/trustgate-peers.XXXXXX")
chmod 755 "$work" # Apache's children run as www-data and read the Lua hook from here
gw_pid=
up_pid=
load_pid=
cleanup() {
  local p
  for p in $load_pid $gw_pid $up_pid; do
    kill "$p" 2>/dev/null || true
  done
  for p in $load_pid $gw_pid $up_pid; do
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$mode" = full ] || ntokens=1
for alg in RS256 ES256; do
  "$bin/forge-tokens" --alg "$alg" --count "$ntokens" --iss "$iss" --aud "$aud" \
    --out "$work/$alg" --cases >/dev/null
done
# The edge's certificate, as a small deployment has it: ECDSA P-256, signed by a private CA.
tls="$work/tls"
mkdir -p "$tls"
{
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=bench-ca -keyout "$tls/ca.key" -out "$tls/ca.pem" &&
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
      -keyout "$tls/key.pem" -out "$tls/leaf.csr" &&
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' >"$tls/leaf.ext" &&
    openssl x509 -req -in "$tls/leaf.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
      -days 2 -extfile "$tls/leaf.ext" -out "$tls/cert.pem" &&
    cat "$tls/cert.pem" "$tls/key.pem" >"$tls/combined.pem"
} >/dev/null 2>&1 || die "openssl could not make the edge's certificate"
chmod -R a+rX "$work"

kid_of() { case "$1" in RS256) echo bench-rsa ;; ES256) echo bench-es256 ;; esac; }

# ---------------------------------------------------------------------------------------------
# Systems. Keys of the tables below: hj (HAProxy + jwt_verify), ap (Apache + mod_auth_openidc),
# tg (trustgate), tgnc (trustgate with its verified-token cache off), hp (plain HAProxy);
# at the TLS edge, tgs (trustgate) and hps (plain HAProxy).
systems_jwt="hj ap tg tgnc"
systems_all="hj ap tg tgnc hp"
systems_tls="tgs hps"
declare -A NAME=(
  [hj]="HAProxy + jwt_verify" [ap]="Apache + mod_auth_openidc" [tg]="trustgate"
  [tgnc]="trustgate, cache off" [hp]="HAProxy, no JWT" [tgb]="trustgate (baseline build)"
  [tgr]="trustgate, Redis store + revocation checks"
  [tgt0]="trustgate, tracing on, nothing sampled" [tgt1]="trustgate, tracing 1 %"
  [tgt100]="trustgate, tracing 100 %" [tgs]="trustgate, TLS (rustls)"
  [hps]="HAProxy with TLS (OpenSSL), no JWT")
declare -A PORT=([hj]=$((base + 1)) [ap]=$((base + 2)) [tg]=$((base + 3)) [tgnc]=$((base + 4))
  [hp]=$((base + 5)) [tgb]=$((base + 6)) [tgr]=$((base + 7)) [tgt1]=$((base + 8)) [tgt100]=$((base + 9))
  [tgt0]=$((base + 11)) [tgs]=$((base + 12)) [hps]=$((base + 13)))
redis_port=$((base + 21))
# The binary each trustgate system runs: this tree's, or for --compare's baseline, the one given.
tg_bin() { if [ "$1" = tgb ]; then echo "$baseline_bin"; else echo "$bin/trustgate"; fi; }
# The address of a system's listener, https for the TLS ones; curl trusts the bench CA for them.
base_url() { case "$1" in tgs | hps) echo "https://127.0.0.1:${PORT[$1]}" ;; *) echo "http://127.0.0.1:${PORT[$1]}" ;; esac; }
curl_tls=(--cacert "$tls/ca.pem")

modver=$(dpkg-query -W -f '${Version}' libapache2-mod-auth-openidc 2>/dev/null || echo unknown)

# render TEMPLATE OUT SYSTEM ALG: fills a template of bench/peers.
render() {
  local dir
  dir=$(dirname "$2")
  sed -e "s|@PORT@|${PORT[$3]:-}|g; s|@UPSTREAM_PORT@|$upstream_port|g; s|@ADMIN_PORT@|$admin_port|g; s|@KEYS_PORT@|$keys_port|g" \
    -e "s|@ALG@|$4|g; s|@KID@|$(kid_of "$4")|g; s|@PEM@|$work/$4/public.pem|g" \
    -e "s|@JWKS@|$work/$4/jwks.json|g; s|@ISS@|$iss|g; s|@AUD@|$aud|g; s|@WORK@|$dir|g; s|@KEYS@|$work|g" \
    -e "s|@CACHE@|$([ "$3" = tgnc ] && echo false || echo true)|g" \
    -e "s|@LOGLEVEL@|error|g; s|@MODVER@|$modver|g" "$here/$1" >"$2"
}

# config SYSTEM ALG: writes the system's files into $work/SYSTEM-ALG, prints the main file.
config() {
  local dir="$work/$1-$2"
  mkdir -p "$dir"
  chmod 755 "$dir"
  case "$1" in
    hj) render haproxy-jwt.cfg.in "$dir/haproxy.cfg" "$1" "$2"; echo "$dir/haproxy.cfg" ;;
    hp) render haproxy-plain.cfg.in "$dir/haproxy.cfg" "$1" "$2"; echo "$dir/haproxy.cfg" ;;
    hps)
      render haproxy-plain.cfg.in "$dir/haproxy.cfg" "$1" "$2"
      sed -i "s|^\(    bind 127.0.0.1:[0-9]*\)\$|\1 ssl crt $tls/combined.pem alpn h2,http/1.1|" "$dir/haproxy.cfg"
      grep -q ' ssl crt ' "$dir/haproxy.cfg" || die "no TLS bind line in $dir/haproxy.cfg"
      echo "$dir/haproxy.cfg"
      ;;
    tgs)
      render trustgate.toml.in "$dir/trustgate.toml" "$1" "$2"
      sed -i "s|^worker_threads = 1\$|&\ntls = { cert = \"$tls/cert.pem\", key = \"$tls/key.pem\" }|" "$dir/trustgate.toml"
      grep -q '^tls = ' "$dir/trustgate.toml" || die "no tls line in $dir/trustgate.toml"
      echo "$dir/trustgate.toml"
      ;;
    ap)
      render apache-oidc.conf.in "$dir/apache.conf" "$1" "$2"
      render apache-claims.lua.in "$dir/apache-claims.lua" "$1" "$2"
      chmod 644 "$dir/apache-claims.lua"
      echo "$dir/apache.conf"
      ;;
    tg | tgnc | tgb) render trustgate.toml.in "$dir/trustgate.toml" "$1" "$2"; echo "$dir/trustgate.toml" ;;
    tgr)
      render trustgate.toml.in "$dir/trustgate.toml" "$1" "$2"
      printf '\n[store]\nbackend = "redis"\nurl = "redis://127.0.0.1:%s"\nnamespace = "bench"\n\n[revocation]\n' \
        "$redis_port" >>"$dir/trustgate.toml"
      echo "$dir/trustgate.toml"
      ;;
    tgt0 | tgt1 | tgt100)
      render trustgate.toml.in "$dir/trustgate.toml" "$1" "$2"
      # Spans go to the nginx upstream's /v1/traces, which answers 200 and discards them.
      printf '\n[telemetry]\nenabled = true\nprotocol = "http"\nendpoint = "http://127.0.0.1:%s"\nsample_ratio = %s\n' \
        "$upstream_port" "$(case "$1" in tgt0) echo 0.0 ;; tgt1) echo 0.01 ;; *) echo 1.0 ;; esac)" >>"$dir/trustgate.toml"
      echo "$dir/trustgate.toml"
      ;;
  esac
}

validate() { # SYSTEM FILE
  case "$1" in
    hj | hp | hps) haproxy -c -q -f "$2" ;;
    ap) apache2 -t -f "$2" 2>&1 | grep -v -e 'Syntax OK' -e 'deprecated' >&2 || true
      apache2 -t -f "$2" >/dev/null 2>&1 ;;
    tg | tgnc | tgb | tgr | tgt0 | tgt1 | tgt100 | tgs) "$(tg_bin "$1")" check -c "$2" >/dev/null ;;
  esac
}

port_free() { ! ss -ltnH "sport = :$1" | grep -q .; }

wait_port() { # PORT PID [URL]
  local _
  for _ in $(seq 1 100); do
    kill -0 "$2" 2>/dev/null || return 1
    curl -s -o /dev/null --max-time 1 "${curl_tls[@]}" "${3:-http://127.0.0.1:$1}/" && return 0
    sleep 0.1
  done
  return 1
}

start_upstream() {
  local dir="$work/nginx"
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=127.0.0.1 -keyout "$dir/keys.key" -out "$dir/keys.crt" >/dev/null 2>&1 ||
    die "openssl could not make the JWKS server's certificate"
  render nginx.conf.in "$dir/nginx.conf" none none
  nginx -t -q -c "$dir/nginx.conf" || die "nginx config invalid"
  port_free "$upstream_port" || die "port $upstream_port is taken (set BENCH_PORT_BASE)"
  port_free "$keys_port" || die "port $keys_port is taken (set BENCH_PORT_BASE)"
  taskset -c "$load_cpu" nginx -c "$dir/nginx.conf" &
  up_pid=$!
  wait_port "$upstream_port" "$up_pid" || die "nginx did not start"
}

start_system() { # SYSTEM ALG
  local file port=${PORT[$1]}
  file=$(config "$1" "$2")
  validate "$1" "$file" || die "${NAME[$1]} ($2): config invalid: $file"
  port_free "$port" || die "port $port is taken (set BENCH_PORT_BASE)"
  case "$1" in
    hj | hp | hps) taskset -c "$gw_cpu" haproxy -db -f "$file" >"$file.log" 2>&1 & ;;
    ap) taskset -c "$gw_cpu" apache2 -f "$file" -DFOREGROUND >"$file.log" 2>&1 & ;;
    tg | tgnc | tgb | tgr | tgt0 | tgt1 | tgt100 | tgs) taskset -c "$gw_cpu" "$(tg_bin "$1")" serve -c "$file" >"$file.log" 2>&1 & ;;
  esac
  gw_pid=$!
  wait_port "$port" "$gw_pid" "$(base_url "$1")" || { cat "$file.log" >&2; die "${NAME[$1]} ($2) did not start"; }
}

stop_system() {
  [ -n "$gw_pid" ] || return 0
  kill "$gw_pid" 2>/dev/null || true
  wait "$gw_pid" 2>/dev/null || true
  gw_pid=
  sleep 0.3
}

# Functional checks: a valid token passes with the identity of `sub` (a forged X-User-Id is
# dropped, Authorization is removed); every bad token and a missing one get 401.
check_system() { # SYSTEM ALG
  local url cases="$work/$2/cases" out code c fail=0 want
  url="$(base_url "$1")/echo"
  out=$(curl -sS --max-time 5 "${curl_tls[@]}" -w '|%{http_code}' -H "Authorization: Bearer $(cat "$cases/valid.jwt")" \
    -H 'X-User-Id: forged' -H 'x-user-id: forged2' "$url") || out="curl failed|000"
  case "$1" in tgs | hps)
    # The edge negotiates HTTP/2 by ALPN, and the same answer comes back over it.
    code=$(curl -sS --max-time 5 "${curl_tls[@]}" --http2 -o "$work/h2.out" -w '%{http_version} %{http_code}' \
      -H "Authorization: Bearer $(cat "$cases/valid.jwt")" -H 'X-User-Id: forged' "$url") || code="curl failed"
    [ "$code" = "2 200" ] || { echo "  ${NAME[$1]}: HTTP/2 -> $code, want '2 200'" >&2; fail=1; }
    if [ "$1" = tgs ] && [ "$(tr -d '\n' <"$work/h2.out")" != "uid=case-user auth=" ]; then
      echo "  ${NAME[$1]}: HTTP/2 -> '$(cat "$work/h2.out")', want 'uid=case-user auth='" >&2
      fail=1
    fi
    ;;
  esac
  if [ "$1" = hp ] || [ "$1" = hps ]; then
    [ "${out##*|}" = 200 ] || { echo "  ${NAME[$1]}: valid token -> $out" >&2; fail=1; }
    return $fail
  fi
  want="uid=case-user auth="
  if [ "${out##*|}" != 200 ] || [ "$(printf '%s' "${out%|*}" | tr -d '\n')" != "$want" ]; then
    echo "  ${NAME[$1]} ($2): valid token -> '${out%|*}' ${out##*|}, want '$want' 200" >&2
    fail=1
  fi
  code=$(curl -s -o /dev/null --max-time 5 "${curl_tls[@]}" -w '%{http_code}' \
    -H "Authorization: Bearer $(cat "$cases/valid-aud-array.jwt")" "$url")
  [ "$code" = 200 ] || { echo "  ${NAME[$1]} ($2): aud array -> $code, want 200" >&2; fail=1; }
  code=$(curl -s -o /dev/null --max-time 5 "${curl_tls[@]}" -w '%{http_code}' "$url")
  [ "$code" = 401 ] || { echo "  ${NAME[$1]} ($2): no token -> $code, want 401" >&2; fail=1; }
  for c in "$cases"/*.jwt; do
    case "$(basename "$c")" in valid*) continue ;; esac
    code=$(curl -s -o /dev/null --max-time 5 "${curl_tls[@]}" -w '%{http_code}' \
      -H "Authorization: Bearer $(cat "$c")" -H 'X-User-Id: forged' "$url")
    [ "$code" = 401 ] || { echo "  ${NAME[$1]} ($2): $(basename "$c" .jwt) -> $code, want 401" >&2; fail=1; }
  done
  return $fail
}

# ---------------------------------------------------------------------------------------------
# TLS edge workloads. Figures land in RPS_ROUNDS like wrk's, under SYSTEM.h2 and SYSTEM.conns-full
# or SYSTEM.conns-resumed; CPU_ROUNDS holds the gateway's CPU time per new connection (µs), read
# from /proc around the run, which says what a handshake costs the server whether or not the
# one-core client saturated it.
declare -A RPS_ROUNDS CPU_ROUNDS RESUMED_SHARE

# h2_run SYSTEM: h2load, HTTP/2 over TLS (ALPN), $conns connections × 16 streams, same token.
h2_run() {
  local url out rps ok total
  url="$(base_url "$1")/"
  out=$(taskset -c "$load_cpu" h2load -c "$conns" -m 16 -D "$secs" --warm-up-time "$warm" \
    -H "authorization: Bearer $(head -1 "$work/RS256/tokens.txt")" "$url" 2>&1) ||
    { echo "$out" >&2; die "${NAME[$1]}: h2load failed"; }
  grep -q '^Application protocol: h2$' <<<"$out" || { echo "$out" >&2; die "${NAME[$1]}: h2load did not negotiate h2"; }
  rps=$(awk '/^finished in/ {gsub(/,/, "", $4); printf "%d", $4}' <<<"$out")
  read -r total ok < <(awk '/^requests:/ {t = $2} /^status codes:/ {o = $3} END {print t + 0, o + 0}' <<<"$out")
  if [ -z "$rps" ] || [ "$total" = 0 ] || [ "$ok" != "$total" ]; then
    echo "$out" >&2
    die "${NAME[$1]}: h2load: $ok of $total requests answered 2xx"
  fi
  RPS_ROUNDS[$1.h2]="${RPS_ROUNDS[$1.h2]:-} $rps"
  log "${NAME[$1]} HTTP/2: $rps req/s"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime of PID, in clock ticks

# tls_conns_run SYSTEM full|resumed: new TLS connections per second, one request each.
tls_conns_run() {
  local flags=() out t0 t1 n rps resumed failed cpu
  [ "$2" = resumed ] && flags=(--resume)
  t0=$(cpu_ticks "$gw_pid")
  out=$(taskset -c "$load_cpu" "$bin/tls-connections" --addr "127.0.0.1:${PORT[$1]}" --ca "$tls/ca.pem" \
    --secs "$secs" --warmup 1 --conns "$conns" "${flags[@]}" \
    --header "Authorization: Bearer $(head -1 "$work/RS256/tokens.txt")" 2>&1) ||
    { echo "$out" >&2; die "${NAME[$1]}: tls-connections failed"; }
  t1=$(cpu_ticks "$gw_pid")
  read -r n rps resumed failed < <(sed -n 's/.*connections=\([0-9]*\) .*per_sec=\([0-9]*\) resumed=\([0-9]*\) failed=\([0-9]*\).*/\1 \2 \3 \4/p' <<<"$out")
  [ -n "${n:-}" ] && [ "$n" -gt 0 ] || { echo "$out" >&2; die "${NAME[$1]}: tls-connections made no connection"; }
  [ "$failed" = 0 ] || { echo "$out" >&2; die "${NAME[$1]}: $failed connections failed"; }
  # The CPU time covers the warm-up second as well: per connection, it is spread over the
  # connections of both (the rate is the same in both).
  cpu=$(awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v n="$n" -v s="$secs" \
    'BEGIN {printf "%d", t / hz * 1e6 / (n * (s + 1) / s)}')
  RPS_ROUNDS[$1.conns-$2]="${RPS_ROUNDS[$1.conns-$2]:-} $rps"
  CPU_ROUNDS[$1.conns-$2]="${CPU_ROUNDS[$1.conns-$2]:-} $cpu"
  RESUMED_SHARE[$1]=$((100 * resumed / n))
  log "${NAME[$1]} new TLS connections ($2): $rps/s, ${cpu} µs of gateway CPU each, $resumed of $n resumed"
}

# ---------------------------------------------------------------------------------------------
# --check: configs, start, functional checks, no load
if [ "$mode" = check ]; then
  start_upstream
  for alg in RS256 ES256; do
    for s in $systems_all; do
      [ "$s" = hp ] && [ "$alg" = ES256 ] && continue
      start_system "$s" "$alg"
      check_system "$s" "$alg" || { stop_system; die "functional check failed: ${NAME[$s]} ($alg)"; }
      stop_system
      log "ok: ${NAME[$s]} ($alg)"
    done
  done
  for s in $systems_tls; do
    start_system "$s" RS256
    check_system "$s" RS256 || { stop_system; die "functional check failed: ${NAME[$s]}"; }
    # One short run of each TLS load tool, parsed as the full run parses it (figures not judged).
    secs=1 warm=0 conns=4 h2_run "$s" >/dev/null
    secs=1 conns=4 tls_conns_run "$s" full >/dev/null
    secs=1 conns=4 tls_conns_run "$s" resumed >/dev/null
    [ "${RESUMED_SHARE[$s]}" = 100 ] || die "${NAME[$s]}: ${RESUMED_SHARE[$s]} % of the offered sessions resumed, want 100"
    stop_system
    log "ok: ${NAME[$s]} (HTTPS, HTTP/2, full and resumed handshakes)"
  done
  log "bench/peers --check: every config valid, every system passed the functional checks"
  stop_system
  "$root/bench/grpc/run.sh" --check
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Full run
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# RPS and P99 hold the median over the rounds; RPS_ROUNDS and P99_ROUNDS each round's figure.
# Q50, Q99 and Q999 (oha at the fixed rate) likewise, with Q*_ROUNDS.
declare -A RPS P99 P99_ROUNDS Q50 Q99 Q999 Q50_ROUNDS Q99_ROUNDS Q999_ROUNDS RSS HELD

to_ms() { # wrk latency like 812.00us, 1.23ms, 2.01s -> ms
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
    printf "%.2f", n }'
}

# wrk_run SYSTEM WORKLOAD ALG: WORKLOAD is same, distinct.
wrk_run() {
  local url args out non2xx
  url="$(base_url "$1")/"
  if [ "$2" = same ]; then
    args=(-H "Authorization: Bearer $(head -1 "$work/$3/tokens.txt")" "$url")
  else
    args=(-s "$here/rotate-tokens.lua" "$url" -- "$work/$3/tokens.txt")
  fi
  taskset -c "$load_cpu" wrk -t1 -c"$conns" -d"${warm}s" "${args[@]}" >/dev/null
  out=$(taskset -c "$load_cpu" wrk -t1 -c"$conns" -d"${secs}s" --latency "${args[@]}")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  [ -z "$non2xx" ] || { echo "$out" >&2; die "${NAME[$1]} $2 $3: $non2xx non-2xx responses"; }
  local key="$1.$2.$3" rps p99
  rps=$(awk '/Requests\/sec/ {printf "%d", $2}' <<<"$out")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  RPS_ROUNDS[$key]="${RPS_ROUNDS[$key]:-} $rps"
  P99_ROUNDS[$key]="${P99_ROUNDS[$key]:-} $p99"
  log "${NAME[$1]} $2 $3: $rps req/s, p99 $p99 ms"
}

words() { # words, single-spaced, without leading or trailing space
  tr -s ' ' '\n' <<<"$1" | sed '/^$/d' | paste -sd ' '
}

reversed() { # words, last first
  tr -s ' ' '\n' <<<"$1" | sed '/^$/d' | tac | tr '\n' ' '
}

median() { # numbers as words
  tr -s ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{v[NR] = $1} END {
    if (NR == 0) exit
    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
median_int() { median "$1" | awk '{printf "%d", $1}'; } # for a %d: an even count's median is x.5

oha_json_flag=--json
oha --help 2>&1 | grep -q -- '--output-format' && oha_json_flag="--output-format json"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "–"; else printf "%.2f×", a / b }'; }
cmp_ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }
metmiss() { if cmp_ge "$1" "$2"; then echo met; else echo missed; fi; }
num() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print 0; else printf "%.2f", a / b }'; }
val() { if [ -n "${1:-}" ]; then echo "$1"; else echo "–"; fi; }
# Ratios of two systems pair their figures round by round: the two figures of one round were
# measured at most a minute apart (seconds, for the pairs a target compares), while each system's
# median may come from a different round, and the machine's speed drifts between rounds by more
# than some margins measured here.
round_ratios() { # KEY BASE_KEY: each round's ratio of KEY to BASE_KEY, as words
  paste -d' ' <(tr -s ' ' '\n' <<<"${RPS_ROUNDS[$1]:-}" | sed '/^$/d') \
    <(tr -s ' ' '\n' <<<"${RPS_ROUNDS[$2]:-}" | sed '/^$/d') |
    awk 'NF == 2 && $2 + 0 > 0 {printf "%.4f ", $1 / $2}'
}
per_round() { # KEY BASE_KEY: each round's ratio, for reading
  round_ratios "$1" "$2" | tr -s ' ' '\n' | sed '/^$/d' | awk '{printf "%s%.2f×", (NR > 1 ? ", " : ""), $1}'
}
paired() { # KEY BASE_KEY: the median of the round-by-round ratios (two decimals), or nothing
  local m
  m=$(median "$(round_ratios "$1" "$2")")
  [ -z "$m" ] || awk -v m="$m" 'BEGIN {printf "%.2f", m}'
}
paired_ratio() { # KEY BASE_KEY: paired, as a table cell
  local r
  r=$(paired "$1" "$2")
  if [ -n "$r" ]; then echo "${r}×"; else echo "–"; fi
}
worst_round() { # KEY BASE_KEY: the lowest round-by-round ratio (two decimals)
  round_ratios "$1" "$2" | tr -s ' ' '\n' | sed '/^$/d' | sort -g | head -1 | awk '{printf "%.2f", $1}'
}

oha_run() { # SYSTEM
  local url="http://127.0.0.1:${PORT[$1]}/" json
  # shellcheck disable=SC2086 # the flag may be two words
  json=$(taskset -c "$load_cpu" oha -z "${secs}s" -q "$rate" --latency-correction --no-tui \
    $oha_json_flag -c "$conns" -H "Authorization: Bearer $(head -1 "$work/RS256/tokens.txt")" "$url")
  local p50 p99 p999
  read -r p50 p99 p999 < <(python3 -c '
import json, sys
d = json.load(sys.stdin)
codes = {str(k): v for k, v in d.get("statusCodeDistribution", {}).items()}
bad = sum(v for k, v in codes.items() if k != "200")
if bad or not codes:
    sys.exit("oha: non-200 answers: %r" % codes)
p = d["latencyPercentiles"]
print(" ".join("%.2f" % (p[k] * 1000) for k in ("p50", "p99", "p99.9")))
' <<<"$json") || die "${NAME[$1]}: oha run failed"
  Q50_ROUNDS[$1]="${Q50_ROUNDS[$1]:-} $p50"
  Q99_ROUNDS[$1]="${Q99_ROUNDS[$1]:-} $p99"
  Q999_ROUNDS[$1]="${Q999_ROUNDS[$1]:-} $p999"
  log "${NAME[$1]} at $rate req/s: p50 $p50 ms, p99 $p99 ms, p99.9 $p999 ms"
}

rss_kib() { # PID: the process and its children (Apache's workers)
  local p total=0 v
  for p in "$1" $(pgrep -P "$1" || true); do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

rss_run() { # SYSTEM: hold BENCH_RSS_CONNS keep-alive connections under light load, sample RSS
  local port=${PORT[$1]} max=0 held=0 r h
  taskset -c "$load_cpu" oha -z "$((secs + 2))s" -c "$rss_conns" -q "$rate" --no-tui \
    --output-format quiet -H "Authorization: Bearer $(head -1 "$work/RS256/tokens.txt")" \
    "http://127.0.0.1:$port/" >"$work/rss-oha.log" 2>&1 &
  load_pid=$!
  sleep 2
  for _ in $(seq 1 "$secs"); do
    r=$(rss_kib "$gw_pid")
    h=$(ss -tnH state established "( sport = :$port )" | wc -l)
    [ "$r" -gt "$max" ] && max=$r
    [ "$h" -gt "$held" ] && held=$h
    sleep 1
  done
  wait "$load_pid" 2>/dev/null || true
  load_pid=
  RSS[$1]=$(awk -v k="$max" 'BEGIN {printf "%.1f", k / 1024}')
  HELD[$1]=$held
  log "${NAME[$1]}: ${RSS[$1]} MiB with $held connections"
}

# in_rounds WHAT WORKLOAD SYSTEM...: WORKLOAD SYSTEM (a function) for each system, the systems
# taking turns in each round (in reverse order every other round); each is checked once, in the
# first round.
in_rounds() {
  local what=$1 workload=$2 round s
  shift 2
  local order="$*"
  for round in $(seq 1 "$rounds"); do
    log "$what: round $round of $rounds"
    for s in $order; do
      start_system "$s" RS256
      if [ "$round" = 1 ]; then
        check_system "$s" RS256 || die "functional check failed: ${NAME[$s]}: not benchmarked"
      fi
      "$workload" "$s"
      stop_system
    done
    order=$(reversed "$order")
  done
}
same_token() { wrk_run "$1" same RS256; }
same_token_rounds() { in_rounds "same token" same_token "$@"; }

# in_steps WHAT STEP...: each STEP is SYSTEM:ALG:WORKLOAD, run in $rounds rounds, the whole
# sequence reversed every other round (so a pair of neighbouring steps is measured in both orders).
# A system is started when a step's system or algorithm differs from the step before's, and
# checked the first time. WORKLOAD: same or distinct (wrk; over TLS for tgs and hps, same is
# HTTPS keep-alive), h2 (h2load), full or resumed (new TLS connections).
in_steps() {
  local what=$1 round step s alg workload current
  shift
  local order="$*"
  local -A checked=()
  for round in $(seq 1 "$rounds"); do
    log "$what: round $round of $rounds"
    current=
    for step in $order; do
      IFS=: read -r s alg workload <<<"$step"
      if [ "$current" != "$s:$alg" ]; then
        stop_system
        start_system "$s" "$alg"
        current=$s:$alg
        if [ -z "${checked[$current]:-}" ]; then
          check_system "$s" "$alg" || die "functional check failed: ${NAME[$s]} ($alg): not benchmarked"
          checked[$current]=1
        fi
      fi
      case "$workload" in
        same | distinct) wrk_run "$s" "$workload" "$alg" ;;
        h2) h2_run "$s" ;;
        full | resumed) tls_conns_run "$s" "$workload" ;;
        *) die "in_steps: unknown workload $workload" ;;
      esac
    done
    stop_system
    order=$(reversed "$order")
  done
}

# ---------------------------------------------------------------------------------------------
# --compare: this tree's trustgate against an older build, same token, interleaved rounds
if [ "$mode" = compare ]; then
  start_upstream
  same_token_rounds tgb tg hp
  printf '\n| system | same token, req/s (median of %s rounds) | per round | ratio to plain HAProxy (median of the rounds) | per round |\n|---|---:|---|---:|---|\n' "$rounds"
  for s in tgb tg hp; do
    printf '| %s | %d | %s | %s | %s |\n' "${NAME[$s]}" "$(median_int "${RPS_ROUNDS[$s.same.RS256]}")" \
      "$(words "${RPS_ROUNDS[$s.same.RS256]}")" "$(paired_ratio "$s.same.RS256" hp.same.RS256)" \
      "$(per_round "$s.same.RS256" hp.same.RS256)"
  done
  printf '\nthis tree / the baseline: %s (%s by round)\n' "$(paired_ratio tg.same.RS256 tgb.same.RS256)" \
    "$(per_round tg.same.RS256 tgb.same.RS256)"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# --store: the memory store against the Redis store with revocation checks, same token,
# interleaved rounds. Revocation is checked on every request from a local copy of the list, so
# the Redis store should cost nothing per request; this measures that.
if [ "$mode" = store ]; then
  command -v redis-server >/dev/null || die "redis-server is missing; run scripts/install-test-deps.sh"
  port_free "$redis_port" || die "port $redis_port is taken (set BENCH_PORT_BASE)"
  taskset -c "$load_cpu" redis-server --port "$redis_port" --bind 127.0.0.1 --save "" \
    --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
  redis_pid=$!
  trap 'kill $redis_pid 2>/dev/null || true; cleanup' EXIT
  for _ in $(seq 1 50); do
    [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] && break
    sleep 0.1
  done
  start_upstream
  same_token_rounds tg tgr
  # The median of the round-by-round ratios, and the rounds' ratios.
  ratio_store="$(paired_ratio tgr.same.RS256 tg.same.RS256) ($(per_round tgr.same.RS256 tg.same.RS256) by round)"
  table=$(
    printf '| system | same token, req/s (median of %s rounds) | per round | p99 ms (median) |\n|---|---:|---|---:|\n' "$rounds"
    for s in tg tgr; do
      printf '| %s | %d | %s | %s |\n' "${NAME[$s]}" "$(median_int "${RPS_ROUNDS[$s.same.RS256]}")" \
        "$(words "${RPS_ROUNDS[$s.same.RS256]}")" "$(median "${P99_ROUNDS[$s.same.RS256]}")"
    done
  )
  printf '\n%s\n\nRedis store / memory store: %s\n' "$table" "$ratio_store"
  [ "${BENCH_NO_DOCS:-}" = 1 ] && exit 0
  commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
  dirty=
  if [ -n "$(git -C "$root" status --porcelain -- . ':!docs/benchmarks-fleet.md' 2>/dev/null)" ]; then
    dirty=", with uncommitted changes"
  fi
  cat >"$root/docs/benchmarks-fleet.md" <<MD
# Benchmark: the fleet store on the hot path

Generated by \`bench/peers/run.sh --store\` (overwritten on each run). The same-token workload
of [benchmarks.md](benchmarks.md) (pattern 3, RS256, one gateway core, \`wrk -c$conns\`, ${secs} s
after ${warm} s of warm-up), run by this tree's trustgate twice: with the default memory store,
and with \`[store] backend = "redis"\` (a local \`redis-server\`, no persistence) and
\`[revocation]\`, so every request checks the revocation list. The two take turns in $rounds
rounds (every other round in reverse order); each figure is the median of its rounds, and the
ratio the median of the round-by-round ratios.

- **Date:** $(date -u '+%Y-%m-%d %H:%M UTC')
- **Commit:** $commit$dirty
- **Machine:** $(nproc) CPUs; gateway on CPU $gw_cpu, wrk, nginx and redis-server on CPU $load_cpu

$table

**Redis store with revocation checks / memory store: $ratio_store.** The request path makes no
Redis call for revocation (a local copy of the list, an atomic freshness check); only routes with
\`rate_limit\` make one call per request, and this workload has none.

For scale: two identical builds, measured the same way on this 2-CPU VM, differ by 0.87× to 1.24×
round by round ([profile.md](profile.md#how-much-of-a-round-is-noise)). A ratio and rounds
within that spread show no cost of the store, and no gain either.
MD
  log "wrote docs/benchmarks-fleet.md"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# --tracing: telemetry off, 1 % and 100 % against a build without it, same token, interleaved
# callgrind_ipr SYSTEM: instructions per request, deterministic where wall-clock figures are not
# on a shared machine: the gateway under callgrind, 500 and then 2,500 same-token requests on
# one keep-alive connection, the difference of the totals divided by 2,000 (start-up cancels).
declare -A IPR
callgrind_ipr() {
  local file n total=() out
  file=$(config "$1" RS256)
  for n in 500 2500; do
    out="$work/callgrind.$1.$n"
    taskset -c "$gw_cpu" valgrind --tool=callgrind --callgrind-out-file="$out" \
      "$(tg_bin "$1")" serve -c "$file" >"$file.cg.log" 2>&1 &
    gw_pid=$!
    wait_port "${PORT[$1]}" "$gw_pid" || { cat "$file.cg.log" >&2; die "${NAME[$1]} under callgrind did not start"; }
    curl -s -o /dev/null -H "Authorization: Bearer $(head -1 "$work/RS256/tokens.txt")" \
      "http://127.0.0.1:${PORT[$1]}/?[1-$n]"
    sleep 1
    stop_system
    total+=("$(awk '/^summary:/ {print $2}' "$out")")
    [ -z "${BENCH_CALLGRIND_DIR:-}" ] || cp "$out" "$BENCH_CALLGRIND_DIR/"
  done
  IPR[$1]=$(( (total[1] - total[0]) / 2000 ))
  log "${NAME[$1]}: ${IPR[$1]} instructions per request (callgrind)"
}

if [ "$mode" = tracing ]; then
  start_upstream
  if command -v valgrind >/dev/null; then
    # tgt0 (on, nothing sampled) splits the 1 % cost: what every request pays, and the rest.
    for s in tgb tg tgt0 tgt1 tgt100; do callgrind_ipr "$s"; done
  else
    log "valgrind is not installed: no instruction counts (apt-get install valgrind)"
  fi
  instructions=$(
    [ -n "${IPR[tgb]:-}" ] || exit 0
    printf '| system | instructions per request | ratio to the baseline |\n|---|---:|---:|\n'
    for s in tgb tg tgt0 tgt1 tgt100; do
      printf '| %s | %d | %.3f |\n' "${NAME[$s]}" "${IPR[$s]}" \
        "$(awk -v a="${IPR[$s]}" -v b="${IPR[tgb]}" 'BEGIN {print b / a}')"
    done
    # The 1 % run's count depends on how many of its 2,000 requests the draw sampled (20 on
    # average, give or take 4.5) and, valgrind being slow, on how many scheduled exports of a
    # few spans fall in it: the expected count is what every request pays plus a hundredth of
    # what a sampled one adds (both deterministic).
    expected=$(awk -v u="${IPR[tgt0]}" -v a="${IPR[tgt100]}" 'BEGIN {printf "%d", u + (a - u) / 100}')
    printf '| trustgate, tracing 1 %%, expected (nothing sampled + 1 %% of the sampled cost) | %d | %.3f |\n' \
      "$expected" "$(awk -v a="$expected" -v b="${IPR[tgb]}" 'BEGIN {print b / a}')"
  )
  if [ -n "${BENCH_CALLGRIND_ONLY:-}" ]; then
    printf '\n%s\n' "$instructions"
    exit 0
  fi
  same_token_rounds tgb tg tgt1 tgt100
  table=$(
  printf '| system | same token, req/s (median of %s rounds) | per round | ratio to the baseline (medians) | per-round ratios |\n|---|---:|---|---:|---|\n' "$rounds"
  tgb_rps=$(median "${RPS_ROUNDS[tgb.same.RS256]}")
  for s in tgb tg tgt1 tgt100; do
    m=$(median_int "${RPS_ROUNDS[$s.same.RS256]}")
    per=$(paste -d' ' <(tr -s ' ' '\n' <<<"${RPS_ROUNDS[$s.same.RS256]}" | sed '/^$/d') \
      <(tr -s ' ' '\n' <<<"${RPS_ROUNDS[tgb.same.RS256]}" | sed '/^$/d') |
      awk '{printf "%.3f ", $1 / $2}')
    printf '| %s | %d | %s | %.3f | %s |\n' "${NAME[$s]}" "$m" "$(words "${RPS_ROUNDS[$s.same.RS256]}")" \
      "$(awk -v a="$m" -v b="$tgb_rps" 'BEGIN {print a / b}')" "$(words "$per")"
  done
  )
  printf '\n%s\n\n%s\n' "$instructions" "$table"
  [ -n "${BENCH_NO_DOCS:-}" ] && exit 0
  commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
  [ -z "$(git -C "$root" status --porcelain -- . ':!docs/benchmarks.md' 2>/dev/null)" ] ||
    commit="$commit, with uncommitted changes"
  section=$(cat <<MD
$tracing_begin
## Tracing overhead

Generated by \`bench/peers/run.sh --tracing BASELINE\` (this section only; a full run keeps it).

- **Date:** $(date -u '+%Y-%m-%d %H:%M UTC')
- **Command:** \`BENCH_ROUNDS=$rounds bench/peers/run.sh --tracing BASELINE\`, BASELINE being
  trustgate built from the commit before \`[telemetry]\` existed
- **Commit:** $commit (release build)
- **Machine:** $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r)

The same-token workload of the table above (wrk, $conns connections, $rounds rounds of ${secs} s
after ${warm} s of warm-up, the gateway alone on core $gw_cpu with one worker thread), on four
builds or configurations taking turns in every round (in reverse order every other round): the
baseline build; this tree with \`[telemetry]\` off; on with \`sample_ratio = 0.01\`; on with
\`sample_ratio = 1.0\`. With telemetry on, spans are exported over OTLP/HTTP to the nginx
upstream's \`/v1/traces\`, which answers 200 and discards them (nginx runs on the load core).

**Instructions per request (callgrind).** Deterministic, so it holds on a shared machine: each
system under \`valgrind --tool=callgrind\`, 500 and then 2,500 same-token requests on one
keep-alive connection (curl), the difference of the totals divided by 2,000 (start-up cancels).
The ratio is the baseline's count over the system's, so that, like a throughput ratio, below 1
is slower. It counts every thread, the span exporter's included. "Nothing sampled" is telemetry
on with \`sample_ratio = 0.0\`: what every request pays (its \`traceparent\` included).

$instructions

**Throughput (wrk).** Ratios are to the baseline, from the medians and round by round.

$table

Targets (issue 22): off ≥ 0.99× the baseline, 1 % ≥ 0.95×.
$tracing_end
MD
)
  python3 - "$root/docs/benchmarks.md" "$section" <<'PY'
import sys
path, section = sys.argv[1], sys.argv[2]
text = open(path).read()
begin, end = section.splitlines()[0], section.splitlines()[-1]
if begin in text and end in text:
    head, rest = text.split(begin, 1)
    text = head + section + rest.split(end, 1)[1]
else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
open(path, "w").write(text)
PY
  log "wrote the tracing overhead section of docs/benchmarks.md"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
start_upstream
# The machine's speed drifts (other tenants, frequency), by more than the differences measured
# here: one long run per system, one after the other, can hand one system a slow minute. So the
# systems take turns, in several short rounds (the whole sequence reversed every other round), and
# each figure is the median of its rounds. The two runs each target compares are next to each
# other in the sequence, seconds apart rather than a minute: trustgate's same token and plain
# HAProxy's; trustgate with its cache off and HAProxy + jwt_verify, 2,000 RS256 tokens.
in_steps "wrk" \
  ap:RS256:same ap:RS256:distinct ap:ES256:distinct \
  hj:ES256:distinct hj:RS256:same hj:RS256:distinct \
  tgnc:RS256:distinct tgnc:RS256:same tgnc:ES256:distinct \
  tg:ES256:distinct tg:RS256:distinct tg:RS256:same \
  hp:RS256:same
for key in "${!RPS_ROUNDS[@]}"; do
  RPS[$key]=$(median_int "${RPS_ROUNDS[$key]}")
  P99[$key]=$(median "${P99_ROUNDS[$key]}")
done

if [ -z "$rate" ]; then
  slowest=
  for s in $systems_jwt; do
    r=${RPS[$s.same.RS256]}
    if [ -z "$slowest" ] || [ "$r" -lt "$slowest" ]; then slowest=$r; fi
  done
  rate=$(awk -v r="$slowest" -v f="$rate_fraction" 'BEGIN {x = int(r * f / 100) * 100; if (x < 100) x = 100; print x}')
fi
log "fixed rate for oha: $rate req/s"

# Tail latency suffers from the same drift (a stalled vCPU shows up as a p99 of milliseconds
# even for plain HAProxy), so the fixed-rate runs take turns in rounds as well. Memory is read
# once, in the first round. trustgate's runs are next to plain HAProxy's, whose p99 is its target.
order="ap hj tgnc tg hp"
for round in $(seq 1 "$rounds"); do
  log "fixed rate, round $round of $rounds"
  for s in $order; do
    start_system "$s" RS256
    oha_run "$s"
    [ "$round" = 1 ] && rss_run "$s"
    stop_system
  done
  order=$(reversed "$order")
done
# The TLS edge, in rounds as well: HTTP/2 runs next to each other, keep-alive one run apart.
in_steps "TLS edge" \
  tgs:RS256:full tgs:RS256:resumed tgs:RS256:same tgs:RS256:h2 \
  hps:RS256:h2 hps:RS256:same hps:RS256:full hps:RS256:resumed
declare -A CPU
for key in "${!RPS_ROUNDS[@]}"; do
  RPS[$key]=$(median_int "${RPS_ROUNDS[$key]}")
  [ -z "${P99_ROUNDS[$key]:-}" ] || P99[$key]=$(median "${P99_ROUNDS[$key]}")
done
for key in "${!CPU_ROUNDS[@]}"; do
  CPU[$key]=$(median "${CPU_ROUNDS[$key]}" | awk '{printf "%d", $1}')
done

for s in $systems_all; do
  Q50[$s]=$(median "${Q50_ROUNDS[$s]}")
  Q99[$s]=$(median "${Q99_ROUNDS[$s]}")
  Q999[$s]=$(median "${Q999_ROUNDS[$s]}")
done

# ---------------------------------------------------------------------------------------------
# Report
tables() {
  echo "### Throughput (wrk, $conns connections, median of $rounds rounds of ${secs} s, each after ${warm} s warm-up)"
  echo
  echo "| system | same token req/s | p99 ms | 2,000 RS256 req/s | p99 ms | 2,000 ES256 req/s | p99 ms |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  local s
  for s in $systems_all; do
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "${NAME[$s]}" \
      "$(val "${RPS[$s.same.RS256]:-}")" "$(val "${P99[$s.same.RS256]:-}")" \
      "$(val "${RPS[$s.distinct.RS256]:-}")" "$(val "${P99[$s.distinct.RS256]:-}")" \
      "$(val "${RPS[$s.distinct.ES256]:-}")" "$(val "${P99[$s.distinct.ES256]:-}")"
  done
  echo
  echo "### Throughput relative to HAProxy + jwt_verify"
  echo
  echo "| system | same token | 2,000 RS256 | 2,000 ES256 |"
  echo "|---|---:|---:|---:|"
  for s in $systems_all; do
    printf '| %s | %s | %s | %s |\n' "${NAME[$s]}" \
      "$(paired_ratio "$s.same.RS256" hj.same.RS256)" \
      "$(paired_ratio "$s.distinct.RS256" hj.distinct.RS256)" \
      "$(paired_ratio "$s.distinct.ES256" hj.distinct.ES256)"
  done
  echo
  echo "trustgate, same token, relative to plain HAProxy: $(paired_ratio tg.same.RS256 hp.same.RS256)"
  echo
  echo "Each req/s figure is the median of $rounds rounds, and each ratio the median of the"
  echo "round-by-round ratios. The same-token ratios round by round:"
  echo "trustgate to HAProxy + jwt_verify $(per_round tg.same.RS256 hj.same.RS256);"
  echo "trustgate to plain HAProxy $(per_round tg.same.RS256 hp.same.RS256)."
  echo "The ratio of the medians, which may pair one system's fast round with another's slow one:"
  echo "$(ratio "${RPS[tg.same.RS256]}" "${RPS[hj.same.RS256]}") and $(ratio "${RPS[tg.same.RS256]}" "${RPS[hp.same.RS256]}")."
  echo
  echo "### Latency at a fixed rate (oha, $rate req/s, $conns connections, median of $rounds rounds of ${secs} s, latency correction, same token)"
  echo
  echo "| system | p50 ms | p99 ms | p99.9 ms | p99 relative to HAProxy + jwt_verify |"
  echo "|---|---:|---:|---:|---:|"
  for s in $systems_all; do
    printf '| %s | %s | %s | %s | %s |\n' "${NAME[$s]}" "${Q50[$s]}" "${Q99[$s]}" "${Q999[$s]}" \
      "$(ratio "${Q99[$s]}" "${Q99[hj]}")"
  done
  echo
  echo "p99 round by round (ms): trustgate $(words "${Q99_ROUNDS[tg]}");" \
    "HAProxy + jwt_verify $(words "${Q99_ROUNDS[hj]}");" \
    "plain HAProxy $(words "${Q99_ROUNDS[hp]}")."
  echo
  echo "### Memory with $rss_conns concurrent keep-alive connections (oha -c $rss_conns -q $rate, same token)"
  echo
  echo "| system | connections held (max seen) | RSS MiB (max seen) |"
  echo "|---|---:|---:|"
  for s in $systems_all; do
    printf '| %s | %s | %s |\n' "${NAME[$s]}" "${HELD[$s]}" "${RSS[$s]}"
  done
  echo
  echo "### The TLS edge (same token, median of $rounds rounds of ${secs} s)"
  echo
  echo "| system | HTTPS keep-alive req/s (wrk -c$conns) | p99 ms | HTTP/2 req/s (h2load, $conns connections × 16 streams) | new connections/s, full handshakes | gateway CPU µs per connection | new connections/s, resumed | gateway CPU µs per connection |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for s in $systems_tls; do
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "${NAME[$s]}" \
      "$(val "${RPS[$s.same.RS256]:-}")" "$(val "${P99[$s.same.RS256]:-}")" "$(val "${RPS[$s.h2]:-}")" \
      "$(val "${RPS[$s.conns-full]:-}")" "$(val "${CPU[$s.conns-full]:-}")" \
      "$(val "${RPS[$s.conns-resumed]:-}")" "$(val "${CPU[$s.conns-resumed]:-}")"
  done
  echo
  echo "trustgate relative to HAProxy with TLS (medians of the round-by-round ratios): HTTPS" \
    "keep-alive $(paired_ratio tgs.same.RS256 hps.same.RS256)" \
    "($(per_round tgs.same.RS256 hps.same.RS256) by round); HTTP/2 $(paired_ratio tgs.h2 hps.h2)" \
    "($(per_round tgs.h2 hps.h2)); new connections, full handshakes $(paired_ratio tgs.conns-full hps.conns-full)" \
    "($(per_round tgs.conns-full hps.conns-full)); resumed $(paired_ratio tgs.conns-resumed hps.conns-resumed)" \
    "($(per_round tgs.conns-resumed hps.conns-resumed))."
}

# ratio_row TARGET KEY BASE_KEY MIN: a row of a targets table, met when the median of the
# round-by-round ratios of KEY to BASE_KEY is at least MIN.
ratio_row() {
  local r
  r=$(paired "$2" "$3")
  echo "| $1 | ${r}× ($(per_round "$2" "$3") by round) | $(metmiss "$r" "$4") |"
}

targets_now() {
  local r
  echo "| target | measured | result |"
  echo "|---|---:|---|"
  # "Every round": judged on the worst round, not on the median.
  r=$(paired tg.same.RS256 hp.same.RS256)
  echo "| same token: req/s ≥ 1.0× plain HAProxy, every round | ${r}× ($(per_round tg.same.RS256 hp.same.RS256) by round) | $(metmiss "$(worst_round tg.same.RS256 hp.same.RS256)" 1.0) |"
  ratio_row "cache off, 2,000 RS256 tokens: req/s ≥ 1.9× HAProxy + jwt_verify" tgnc.distinct.RS256 hj.distinct.RS256 1.9
  echo "| p99 at $rate req/s ≤ plain HAProxy's | ${Q99[tg]} ms vs ${Q99[hp]} ms | $(metmiss "${Q99[hp]}" "${Q99[tg]}") |"
  ratio_row "TLS edge, HTTPS keep-alive: req/s ≥ 1.0× HAProxy with TLS" tgs.same.RS256 hps.same.RS256 1.0
  ratio_row "TLS edge, new connections/s (full handshakes, ECDSA P-256) ≥ HAProxy's" tgs.conns-full hps.conns-full 1.0
  ratio_row "HTTP/2 edge ($conns × 16 streams, TLS): req/s ≥ 1.0× HAProxy's h2 frontend" tgs.h2 hps.h2 1.0
  r=$(num "${RSS[tg]}" "${RSS[hp]}")
  echo "| RSS with $rss_conns keep-alive connections ≤ 2× plain HAProxy's | ${RSS[tg]} MiB vs ${RSS[hp]} MiB (${r}×) | $(metmiss 2 "$r") |"
  echo "| Pattern 1 in a service (criterion) | not measured by this script | see [benchmarks-service.md](benchmarks-service.md) (\`bench/service.sh\`) |"
}

targets() {
  local r
  echo "| target | measured | result |"
  echo "|---|---:|---|"
  ratio_row "same-token req/s ≥ 2.0× HAProxy + jwt_verify" tg.same.RS256 hj.same.RS256 2.0
  ratio_row "same-token req/s ≥ 0.8× plain HAProxy" tg.same.RS256 hp.same.RS256 0.8
  ratio_row "2,000 RS256 tokens req/s ≥ 1.5× HAProxy + jwt_verify" tg.distinct.RS256 hj.distinct.RS256 1.5
  ratio_row "2,000 ES256 tokens req/s ≥ 1.5× HAProxy + jwt_verify" tg.distinct.ES256 hj.distinct.ES256 1.5
  echo "| p99 at $rate req/s ≤ HAProxy + jwt_verify's | ${Q99[tg]} ms vs ${Q99[hj]} ms | $(metmiss "${Q99[hj]}" "${Q99[tg]}") |"
  echo "| RSS ≤ 50 MiB with $rss_conns keep-alive connections | ${RSS[tg]} MiB (${HELD[tg]} held) | $(metmiss 50 "${RSS[tg]}") |"
  echo "| Criterion: a cache hit ≤ 1 µs | not measured by this script | see [microbenchmarks.md](microbenchmarks.md) (\`bench/validate.sh\`) |"
  echo "| Criterion: RS256 full validation ≤ 1.15× a raw aws-lc-rs verify | not measured by this script | see [microbenchmarks.md](microbenchmarks.md) (\`bench/validate.sh\`) |"
}

out_tables=$(tables)
out_targets=$(targets)
out_targets_now=$(targets_now)
printf '\n%s\n\n### Targets (issue 24)\n\n%s\n\n### Targets (issue 6)\n\n%s\n' "$out_tables" "$out_targets_now" "$out_targets"
# The gRPC workload, after the HTTP/1 systems have stopped; its table goes into the same page.
stop_system
out_grpc=$(BENCH_NO_DOCS=1 "$root/bench/grpc/run.sh")
printf '\n%s\n' "$out_grpc"

[ "${BENCH_NO_DOCS:-}" = 1 ] && exit 0

# Chart: grouped bars of req/s per workload per system.
dat="$work/chart.dat"
{
  printf 'workload'
  for s in $systems_all; do printf '\t"%s"' "${NAME[$s]}"; done
  printf '\n'
  for w in same.RS256:"same token" distinct.RS256:"2,000 RS256" distinct.ES256:"2,000 ES256"; do
    printf '"%s"' "${w#*:}"
    for s in $systems_all; do printf '\t%s' "${RPS[$s.${w%%:*}]:--}"; done
    printf '\n'
  done
} >"$dat"
gnuplot <<GNUPLOT || die "gnuplot failed"
set terminal pngcairo size 1000,560 font "sans,11" noenhanced
set output "$root/docs/benchmarks.png"
set title "Requests per second, one gateway core, pattern 3 ($(date -u +%Y-%m-%d))"
set ylabel "req/s (higher is better)"
set datafile missing "-"
set datafile separator "\t"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key top right
set grid ytics
set yrange [0:*]
plot for [i=2:6] "$dat" using i:xtic(1) title columnheader(i)
GNUPLOT

ver_haproxy=$(haproxy -v 2>&1 | head -1 || true)
ver_apache=$(apache2 -v 2>&1 | awk -F': *' '/Server version/ {print $2}' || true)
ver_nginx=$(nginx -v 2>&1 | sed 's/^nginx version: //' || true)
ver_wrk=$(wrk -v 2>&1 | head -1 | awk '{print $1, $2}' || true) # wrk -v exits 1
ver_oha=$(oha --version 2>&1 | head -1 || true)
ver_tg=$("$bin/trustgate" --version 2>/dev/null | head -1 || echo trustgate)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=
# This run's own output (the page and the chart, written by now) does not count as a change.
if [ -n "$(git -C "$root" status --porcelain -- . ':!docs/benchmarks.md' ':!docs/benchmarks.png' 2>/dev/null)" ]; then
  dirty=", with uncommitted changes"
fi
cmd="bench/peers/run.sh"
for v in BENCH_ROUNDS BENCH_SECS BENCH_WARMUP BENCH_CONNS BENCH_RATE BENCH_RATE_FRACTION BENCH_RSS_CONNS BENCH_TOKENS; do
  [ -n "${!v:-}" ] && cmd="$v=${!v} $cmd"
done

# The --tracing section is its own run's: kept as it is.
kept_tracing=$(sed -n "/^$tracing_begin\$/,/^$tracing_end\$/p" "$root/docs/benchmarks.md" 2>/dev/null || true)
cat >"$root/docs/benchmarks.md" <<MD
# Benchmarks: trustgate side by side with HAProxy and Apache mod_auth_openidc

Generated by \`bench/peers/run.sh\`; rerun it to regenerate this page and
[benchmarks.png](benchmarks.png) (both are overwritten). Figures from one run on one machine:
compare the ratios, not the absolute numbers, and rerun on a quiet machine before quoting them.
The decision endpoint behind nginx, and the before/after of the decision-engine reshaping, are
in [benchmarks-decisions.md](benchmarks-decisions.md); the Redis store against the memory store
(\`run.sh --store\`) in [benchmarks-fleet.md](benchmarks-fleet.md). Where a request's time and memory go,
measured, is in [profile.md](profile.md); trustgate-service against the axum JWT crates in
[benchmarks-service.md](benchmarks-service.md) (\`bench/service.sh\`).

- **Date:** $(date -u '+%Y-%m-%d %H:%M UTC')
- **Command:** \`$cmd\`
- **Machine:** $(nproc) CPUs, $(lscpu | awk -F': *' '/^Model name/ {print $2; exit}'), Linux $(uname -r)
- **Versions:** trustgate: $ver_tg (commit $commit$dirty, release build); $ver_haproxy;
  $ver_apache with mod_auth_openidc $modver (libapache2-mod-auth-openidc); $ver_nginx
  (upstream); $ver_wrk; $ver_oha.

## What runs

Every system does "pattern 3" in front of the same nginx upstream (\`return 200\`): remove client
identity headers (at least \`X-User-Id\`, in any case and spelling with \`_\`), verify the bearer
token with the algorithm pinned, check \`iss\`, \`aud\` (a string or an array), \`exp\` (required)
and \`nbf\`, set \`X-User-Id\` from \`sub\`, remove \`Authorization\`. Before any load, the script
checks each system with curl: a valid token passes and the upstream sees \`X-User-Id: case-user\`
(not the forged value sent along) and no \`Authorization\`; an expired token, one not yet valid,
one without \`exp\`, a wrong \`iss\`, a wrong \`aud\`, a bad signature, \`alg: none\`, HS256 keyed
with the public key and (RS256) PS256 with the right key all get 401. A system that fails is not
benchmarked.

| system | configuration (templates in \`bench/peers/\`) |
|---|---|
| HAProxy + jwt_verify | \`haproxy-jwt.cfg.in\`, \`nbthread 1\`. \`jwt_verify\` checks only the signature, so the config pins \`alg\` with \`jwt_header_query\` and checks \`iss\`, \`aud\` (string or one of the first three array entries), \`exp\` (present and \`> date()\`), \`nbf\` and \`sub\` with \`jwt_payload_query\`. No verified-token cache exists: every request is verified. |
| Apache + mod_auth_openidc | \`apache-oidc.conf.in\`, OAuth 2.0 resource-server mode (\`AuthType oauth20\`) with \`OIDCOAuthVerifyJwksUri\` (the JWK Set, served over HTTPS by the nginx upstream, since it refuses an http URL; \`OIDCOAuthVerifyCertFiles\` crashes mod_auth_openidc $modver at startup with an EC key), \`Require claim iss:…\` and \`Require claim aud:…\`, \`RequestHeader unset … early\`, \`X-User-Id\` from \`REMOTE_USER\` (\`OIDCOAuthRemoteUserClaim sub\`). mod_auth_openidc $modver treats \`exp\` as optional for access tokens, never reads \`nbf\`, and accepts any algorithm the key can verify (it accepted a PS256 token signed with the RS256 key), so a small mod_lua fixup (\`apache-claims.lua.in\`) requires \`exp\`, checks \`nbf\` and pins \`alg\`. No cache for locally validated JWTs: every request is verified. **Threads:** Apache cannot serve connections on one thread the way an event loop does (a request occupies a thread while it runs), so it runs one mpm_event process (\`ServerLimit 1\`, \`ThreadsPerChild 64\`, \`AsyncRequestWorkerFactor 20\` so that 1,000 idle keep-alive connections fit) confined to the same single core as the others. |
| trustgate | \`trustgate.toml.in\`: \`worker_threads = 1\`, access log off, level \`error\`, one issuer with \`jwks_file\` and \`algorithms\` pinned, one \`identity-headers\` route injecting only \`X-User-Id\`. Default verified-token cache (10,000 entries). |
| trustgate, cache off | the same with \`[cache] enabled = false\`: every request is verified, like the two peers. Not part of the targets; it shows the cost of verification itself. |
| HAProxy, no JWT | \`haproxy-plain.cfg.in\`: a plain reverse proxy, the cost of proxying alone. Same-token workload only (the token is sent and ignored). |

**Fairness.** Each gateway runs alone, pinned with \`taskset\` to core $gw_cpu with one worker thread
(Apache: one process, see above). wrk, oha and nginx are pinned to core $load_cpu. One keep-alive
connection pool from wrk ($conns connections, one wrk thread).

**Workloads.** *Same token*: one RS256 token on every request (a user journey). *2,000 RS256* and
*2,000 ES256*: a wrk Lua script (\`rotate-tokens.lua\`) cycles through $ntokens distinct tokens
(distinct \`sub\`). They fit trustgate's verified-token cache, so after the first pass trustgate
serves them from the cache, as it would a population of $ntokens active users; HAProxy and Apache
have no such cache. The "cache off" row shows trustgate verifying every request.

**Rounds.** Each workload runs in $rounds rounds of ${secs} s. The systems take turns in every round
(the whole sequence reversed every other round), so that a slow stretch of the machine falls on
all of them, and each figure is the median of its rounds. A ratio of two systems is the median of
their round-by-round ratios (two medians may come from different rounds), and a target set for
"every round" is judged on the worst one. The two runs a target compares follow each other,
seconds apart, one first in one round and second in the next: trustgate's same token and plain
HAProxy's (throughput and fixed-rate latency); trustgate with its cache off and HAProxy +
jwt_verify on 2,000 RS256 tokens; over TLS, the two HTTP/2 runs (the two keep-alive runs are one
run apart).

**Fixed rate.** \`oha -q $rate --latency-correction\`, the same rate for every system: by default
$rate_fraction of the slowest JWT system's same-token throughput, so that every system sustains it.
These runs take turns in $rounds rounds too, and each percentile is the median of its rounds.
With latency correction, latency counts from when a request should have been sent, so a stall
is not hidden by the load generator waiting (coordinated omission).

**The TLS edge.** trustgate terminating TLS itself (\`[server] tls\`, rustls on aws-lc-rs, session
tickets on) against HAProxy terminating TLS (\`bind … ssl crt … alpn h2,http/1.1\`, OpenSSL, its
default session cache and tickets) and proxying plainly, both on the gateway core, both with the
same certificate: ECDSA P-256, issued by a private CA (made by the script with openssl). The
same-token request in three shapes: *HTTPS keep-alive*, wrk over TLS ($conns connections, HTTP/1.1);
*HTTP/2*, \`h2load -c $conns -m 16\` (ALPN h2, ${secs} s after ${warm} s of warm-up; h2load's HPACK
encoder, like nghttp2's, never indexes \`authorization\`, so the token is sent, and decoded,
on every request); *new connections*, test-support's \`tls-connections\` ($conns clients on one
thread, rustls on aws-lc-rs, each connection one request with \`Connection: close\`), with full
handshakes (no session kept) and with resumed ones (each client keeps its sessions and offers
them again). Beside the rate, the gateway's own CPU time per new connection (from /proc), which
says what a connection costs the server whether or not the one-core client saturated it.

**Memory.** oha holds $rss_conns keep-alive connections open for ${secs} s under light load (the
fixed rate above, same token); the gateway's VmRSS
(summed over Apache's processes) is sampled every second from /proc, and the maximum is kept.

## Results

$out_tables

![Requests per second per workload and system](benchmarks.png)

## gRPC

$out_grpc

## Targets (issue 24)

$out_targets_now

## Targets (issue 6)

$out_targets

"Met" and "missed" are computed from the figures above, from this one run. On a shared VM the
run-to-run spread can be as large as some margins: rerun before quoting a target near its
threshold.
MD
[ -z "$kept_tracing" ] || printf '\n%s\n' "$kept_tracing" >>"$root/docs/benchmarks.md"
log "wrote docs/benchmarks.md and docs/benchmarks.png"
