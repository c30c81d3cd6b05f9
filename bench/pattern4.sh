#!/usr/bin/env bash
# Measures the per-request cost of pattern 4 (internal tokens) with the minted-token cache on and
# off, against pattern 3 (identity headers) as the baseline, through the release gateway.
# Loopback only. Usage: bench/pattern4.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

command -v wrk >/dev/null && command -v nginx >/dev/null || {
  apt-get update -qq && apt-get install -y -qq wrk nginx-light >/dev/null; }
cargo build --release --locked -p trustgate -p test-support >/dev/null 2>&1

./target/release/forge-tokens --alg ES256 --count 1 --iss https://idp.bench --aud bench-api --out "$work" >/dev/null
token=$(head -1 "$work/tokens.txt")

cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server { listen 127.0.0.1:18091; location / { return 200 "ok\n"; } }
}
NGINX
taskset -c 1 nginx -c "$work/nginx.conf" &
sleep 0.5

run() { # name cache
  cat > "$work/gw.toml" <<TOML
[server]
listen = "127.0.0.1:18090"
worker_threads = 1
[admin]
listen = "127.0.0.1:18099"
[log]
access = false
level = "error"
[internal_issuer]
cache_minted_tokens = $2
[[issuer]]
id = "bench"
issuer = "https://idp.bench"
audiences = ["bench-api"]
jwks_file = "$work/jwks.json"
[[upstream]]
id = "nginx"
url = "http://127.0.0.1:18091"
[[route]]
name = "p3"
prefix = "/p3"
upstream = "nginx"
pattern = "identity-headers"
[[route]]
name = "p4"
prefix = "/p4"
upstream = "nginx"
pattern = "internal-token"
TOML
  taskset -c 0 ./target/release/trustgate serve -c "$work/gw.toml" 2>/dev/null &
  local gw=$!
  sleep 0.7
  local path=/p4/x; [ "$1" = "pattern3" ] && path=/p3/x
  local out
  out=$(taskset -c 1 wrk -t1 -c32 -d"${secs}s" --latency -H "Authorization: Bearer $token" "http://127.0.0.1:18090$path")
  local rps p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  printf "| %-28s | %10s | %8s |\n" "$1" "$rps" "$p99"
  kill $gw; wait $gw 2>/dev/null || true
}

echo "| run | req/s | p99 |"
echo "|---|---|---|"
run pattern3 true
run "pattern4 cache on" true
run "pattern4 cache off" false
