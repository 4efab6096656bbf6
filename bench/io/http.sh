#!/usr/bin/env bash
# HTTP benchmark: `GET /` with a small body, keep-alive, 100 connections,
# driven by wrk: weft's HTTP server (one loop thread) against nginx with one
# worker and `return 200`. Servers pinned to core 0, wrk to core 1.
#   bash bench/io/http.sh [SECONDS]      (default 10 per run)
# Installs wrk and nginx (Debian) if missing, starts everything on loopback,
# stops what it started, prints the table and writes build/bench-io-http.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
seconds="${1:-10}"

bash scripts/setup.sh
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
if ((${#missing[@]})); then
  sudo_cmd=(); [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

weft_server=build/release/examples/08_http_hello
cmake --preset release >/dev/null
cmake --build --preset release -j2 --target example_08_http_hello >/dev/null

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:7812 backlog=4096;
    location / { default_type text/plain; return 200 "hello, world\n"; }
  }
}
CONF

source bench/io/common.sh

pin 0 "$weft_server" 7811 1 >/dev/null 2>&1 & pids+=($!)
pin 0 "$nginx_bin" -c "$work/nginx.conf" -p "$work" & pids+=($!)
wait_port 7811; wait_port 7812

run_wrk() { # port -> "requests/s p99_ms"
  local out
  out=$(pin 1 wrk -t1 -c100 -d"${seconds}s" --latency "http://127.0.0.1:$1/")
  local rps p99
  rps=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
  p99=$(awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }; print v }' <<<"$out")
  echo "$rps $p99"
}
(pin 1 wrk -t1 -c100 -d1s "http://127.0.0.1:7811/" >/dev/null)   # warm-up
(pin 1 wrk -t1 -c100 -d1s "http://127.0.0.1:7812/" >/dev/null)
read -r w_rps w_p99 < <(run_wrk 7811)
read -r n_rps n_p99 < <(run_wrk 7812)
ratio=$(awk -v w="$w_rps" -v n="$n_rps" 'BEGIN { printf "%.2f", w / n }')
printf '%-8s %14s %10s\n' server "requests/s" "p99 ms"
printf '%-8s %14s %10s\n' weft "$w_rps" "$w_p99"
printf '%-8s %14s %10s\n' nginx "$n_rps" "$n_p99"
printf 'ratio weft/nginx: %sx (goal >= 1.0x, p99 no worse: %s)\n' "$ratio" \
  "$(awk -v a="$w_p99" -v b="$n_p99" 'BEGIN { print (a <= b ? "yes" : "NO") }')"
printf '{"weft": {"requests_per_s": %s, "p99_ms": %s}, "nginx": {"requests_per_s": %s, "p99_ms": %s}, "ratio": %s}\n' \
  "$w_rps" "$w_p99" "$n_rps" "$n_p99" "$ratio" > build/bench-io-http.json
echo "results written to build/bench-io-http.json"
