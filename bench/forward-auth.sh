#!/usr/bin/env bash
# Decisions per second of the decision endpoint ([forward_auth]), and what nginx `auth_request`
# in front of trustgate costs next to nginx proxying alone. Release build, loopback, wrk with 32
# connections; trustgate on core 0, nginx and wrk on core 1. The systems take turns in rounds and
# each figure is the median. Usage: bench/forward-auth.sh [rounds] [seconds]
#
#   decisions, same token      wrk against the endpoint with one token (verified-token cache hit)
#   decisions, 2,000 tokens    a different token per request, cache on
#   decisions, cache off       2,000 tokens, [cache] enabled = false: every check verifies RS256
#   nginx + trustgate          nginx `auth_request` (the `trustgate snippet nginx` configuration)
#                              in front of an nginx upstream, same token
#   nginx alone                the same nginx proxying to the same upstream, no auth
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
secs=${2:-5}
conns=32
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

command -v wrk >/dev/null && command -v nginx >/dev/null || {
  apt-get update -qq && apt-get install -y -qq wrk nginx >/dev/null; }
cargo build --release --locked -p trustgate -p test-support >/dev/null 2>&1
bin=${CARGO_TARGET_DIR:-target}/release

./"$bin"/forge-tokens --alg RS256 --count 2000 --iss https://idp.bench --aud bench-api \
  --out "$work" >/dev/null
token=$(head -1 "$work/tokens.txt")

# The upstream (18391) and the front nginx (18392), one process, core 1.
front() { # with_auth: 1 or 0
  mkdir -p "$work/front"
  local protect="" auth=""
  if [ "$1" = 1 ]; then
    auth="include $work/snippet/auth.conf;"
    protect="include $work/snippet/protect.conf;"
  fi
  cat > "$work/front/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/front/nginx.pid;
error_log $work/front/error.log error;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream backend { server 127.0.0.1:18391; keepalive 64; }
  $([ "$1" = 1 ] && echo "include $work/snippet/upstream.conf;")
  server { listen 127.0.0.1:18391; location / { return 200 "ok\n"; } }
  server {
    listen 127.0.0.1:18392;
    $auth
    location / {
      $protect
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://backend;
    }
  }
}
NGINX
}

config() { # cache: true or false; convention: nginx for the front nginx, else forwarded-headers
  cat > "$work/gw.toml" <<TOML
[server]
listen = "127.0.0.1:18390"
worker_threads = 1
[admin]
listen = "127.0.0.1:18399"
[log]
access = false
level = "error"
[cache]
enabled = $1
[forward_auth]
listen = "127.0.0.1:18393"
convention = "${2:-forwarded-headers}"
trusted_proxies = ["127.0.0.1"]
[[issuer]]
id = "bench"
issuer = "https://idp.bench"
audiences = ["bench-api"]
algorithms = ["RS256"]
jwks_file = "$work/jwks.json"
[[upstream]]
id = "nginx"
url = "http://127.0.0.1:18391"
[[route]]
name = "all"
prefix = "/"
upstream = "nginx"
pattern = "identity-headers"
TOML
}

wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

gateway() { # cache, convention
  config "$1" "${2:-}"
  taskset -c 0 ./"$bin"/trustgate serve -c "$work/gw.toml" >"$work/gw.log" 2>&1 &
  gw=$!
  wait_port 18393 || { cat "$work/gw.log"; exit 1; }
}

nginx_up() { # with_auth
  front "$1"
  taskset -c 1 nginx -c "$work/front/nginx.conf" &
  ng=$!
  wait_port 18392
}

stop() { kill "$@" 2>/dev/null || true; wait "$@" 2>/dev/null || true; sleep 0.2; }

measure() { # name, then wrk arguments
  local name=$1 out rps
  shift
  out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" "$@")
  if grep -q "Non-2xx" <<<"$out"; then echo "$out" >&2; echo "$name: non-2xx answers" >&2; exit 1; fi
  rps=$(awk '/Requests\/sec/ {printf "%d", $2}' <<<"$out")
  ROUNDS[$name]="${ROUNDS[$name]:-} $rps"
  echo "== $name: $rps req/s" >&2
}

described=(-H "X-Forwarded-Method: GET" -H "X-Forwarded-Uri: /users/1" -H "X-Forwarded-Host: api.example")
mkdir -p "$work/snippet"
config true nginx
./"$bin"/trustgate snippet nginx -c "$work/gw.toml" --dir "$work/snippet" >/dev/null

declare -A ROUNDS
for round in $(seq 1 "$rounds"); do
  echo "== round $round of $rounds" >&2
  gateway true
  measure "decisions, same token" "${described[@]}" -H "Authorization: Bearer $token" http://127.0.0.1:18393/
  measure "decisions, 2,000 tokens" "${described[@]}" -s bench/peers/rotate-tokens.lua http://127.0.0.1:18393/ -- "$work/tokens.txt"
  stop "$gw"
  gateway true nginx
  nginx_up 1
  measure "nginx + trustgate auth_request" -H "Authorization: Bearer $token" http://127.0.0.1:18392/users/1
  stop "$ng"
  stop "$gw"
  gateway false
  measure "decisions, cache off" "${described[@]}" -s bench/peers/rotate-tokens.lua http://127.0.0.1:18393/ -- "$work/tokens.txt"
  stop "$gw"
  nginx_up 0
  measure "nginx alone" -H "Authorization: Bearer $token" http://127.0.0.1:18392/users/1
  stop "$ng"
done

median() { tr -s ' ' '\n' <<<"$1" | sed '/^$/d' | sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : int((v[NR/2]+v[NR/2+1])/2)}'; }
alone=$(median "${ROUNDS[nginx alone]}")
printf '\n| workload | req/s (median of %s rounds) | per round |\n|---|---:|---|\n' "$rounds"
for name in "decisions, same token" "decisions, 2,000 tokens" "decisions, cache off" "nginx + trustgate auth_request" "nginx alone"; do
  printf '| %s | %s | %s |\n' "$name" "$(median "${ROUNDS[$name]}")" "$(echo ${ROUNDS[$name]})"
done
printf '\nnginx + trustgate auth_request / nginx alone: %s\n' \
  "$(awk -v a="$(median "${ROUNDS[nginx + trustgate auth_request]}")" -v b="$alone" 'BEGIN {printf "%.2f", a / b}')"
