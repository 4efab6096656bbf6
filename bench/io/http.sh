#!/usr/bin/env bash
# HTTP benchmark: `GET /` with a small body, keep-alive, 100 connections,
# driven by wrk: weft's HTTP server (one loop thread) against nginx with one
# worker and `return 200`. Servers pinned to core 0, wrk to core 1.
#   bash bench/io/http.sh [SECONDS] [ROUNDS]   (default 10 s per run, 1 round)
# Installs wrk and nginx (Debian) if missing, starts everything on loopback,
# stops what it started, prints a line per round (weft, then nginx, each with
# the CPU shares of server and client; a round where another process took a
# core is run again, see common.sh) and writes build/bench-io-http.json: the
# round with the median ratio, and every round's figures ("rounds").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
seconds="${1:-10}"
rounds="${2:-1}"

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

nginx_worker=$(pgrep -P "${pids[1]}" | head -1)
run_wrk() { # port server_pid -> "requests/s p99_ms server_cpu_percent client_cpu_percent"
  local out t0 t1
  t0=$(cpu_ticks "$2")
  out=$(client_timed "$work/wrk-cpu" 1 wrk -t1 -c100 -d"${seconds}s" --latency "http://127.0.0.1:$1/")
  t1=$(cpu_ticks "$2")
  local rps p99
  rps=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
  p99=$(awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }; print v }' <<<"$out")
  echo "$rps $p99 $(cpu_share "$t0" "$t1" "$seconds") $(client_share "$work/wrk-cpu" "$seconds")"
}
(pin 1 wrk -t1 -c100 -d1s "http://127.0.0.1:7811/" >/dev/null)   # warm-up
(pin 1 wrk -t1 -c100 -d1s "http://127.0.0.1:7812/" >/dev/null)
# cpu %: the shares of core 0 (server) + core 1 (wrk) used during the run
# (see common.sh). A round in which one of the two runs had clearly less than
# both cores was disturbed by another process: it is shown, left out and run
# again, up to 4 times the rounds in all.
printf '%-6s %12s %7s %7s %12s %7s %7s %7s %s\n' round "weft req/s" "p99 ms" "cpu%" "nginx req/s" "p99 ms" "cpu%" ratio "goal >= 1.0x, p99 no worse"
max_attempts=$((rounds * 4))
lines=""
skipped=0
attempts=0
round=0
while ((round < rounds && attempts < max_attempts)); do
  attempts=$((attempts + 1))
  read -r w_rps w_p99 w_cpu w_client < <(run_wrk 7811 "${pids[0]}")
  read -r n_rps n_p99 n_cpu n_client < <(run_wrk 7812 "$nginx_worker")
  if ! undisturbed "$w_cpu" "$w_client" || ! undisturbed "$n_cpu" "$n_client"; then
    printf '%-6s %12s %7s %7s %12s %7s %7s  (disturbed: run again)\n' "-" "$w_rps" "$w_p99" "$w_cpu+$w_client" "$n_rps" "$n_p99" "$n_cpu+$n_client"
    skipped=$((skipped + 1))
    continue
  fi
  round=$((round + 1))
  ratio=$(awk -v w="$w_rps" -v n="$n_rps" 'BEGIN { printf "%.2f", w / n }')
  met=$(awk -v r="$ratio" -v a="$w_p99" -v b="$n_p99" 'BEGIN { print (r >= 1.0 && a <= b ? "yes" : "NO") }')
  printf '%-6s %12s %7s %7s %12s %7s %7s %6sx %s\n' "$round" "$w_rps" "$w_p99" "$w_cpu+$w_client" "$n_rps" "$n_p99" "$n_cpu+$n_client" "$ratio" "$met"
  lines+="$ratio {\"weft\": {\"requests_per_s\": $w_rps, \"p99_ms\": $w_p99, \"server_cpu_percent\": $w_cpu, \"client_cpu_percent\": $w_client}, \"nginx\": {\"requests_per_s\": $n_rps, \"p99_ms\": $n_p99, \"server_cpu_percent\": $n_cpu, \"client_cpu_percent\": $n_client}, \"ratio\": $ratio}"$'\n'
done
# The round with the median ratio stands for the run; all rounds are kept.
if ((round == 0)); then
  echo "every round was disturbed by other processes: no result" >&2
  exit 1
fi
median=$(sort -n <<<"${lines%$'\n'}" | awk -v n="$round" 'NR == int((n + 1) / 2) { $1 = ""; print substr($0, 2) }')
all=$(cut -d' ' -f2- <<<"${lines%$'\n'}" | paste -sd, -)
printf 'median of %s round(s) (%s disturbed round(s) left out): %s\n' "$round" "$skipped" "$median"
printf '%s, "rounds": [%s], "disturbed_rounds_left_out": %s}\n' "${median%\}}" "$all" "$skipped" > build/bench-io-http.json
echo "results written to build/bench-io-http.json"
