#!/usr/bin/env bash
# Echo benchmark: weft's echo server (io_uring, one loop thread) against an
# asio C++20-coroutine echo server (one io_context thread), both pinned to
# core 0, driven by the same load generator pinned to core 1.
#   bash bench/io/echo.sh [SECONDS] [ROUNDS]   (default 5 s per run, 1 round)
# Each round runs weft then asio at each message size. Prints a table per
# round (with the CPU shares of server and client; a run where another
# process took a core is run again, see common.sh) and writes build/bench-io-echo.json: per size, the round with
# the median ratio (weft, asio, ratio) and every round's figures ("rounds").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
seconds="${1:-5}"
rounds="${2:-1}"

bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j2 --target example_06_echo_server weft_bench_asio_echo_server weft_bench_echo_load >/dev/null

bin=build/release
weft_server="$bin/examples/06_echo_server"
asio_server="$bin/bench/weft_bench_asio_echo_server"
load="$bin/bench/weft_bench_echo_load"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -f "${cpu_file:-}"; }
trap cleanup EXIT


source bench/io/common.sh

pin 0 "$weft_server" 7801 >/dev/null & pids+=($!)
pin 0 "$asio_server" 7802 >/dev/null & pids+=($!)
wait_port 7801; wait_port 7802

# Runs the load against PORT; the load's JSON with the server's share of
# core 0 added ("server_cpu_percent", see common.sh).
measure() { # port server_pid size
  local t0 t1 out span
  t0=$(cpu_ticks "$2")
  out=$(client_timed "$cpu_file" 1 "$load" 127.0.0.1 "$1" 64 "$3" "$seconds")
  t1=$(cpu_ticks "$2")
  # The load's figures cover $seconds after a 0.5 s warm-up.
  span=$(awk -v s="$seconds" 'BEGIN { print s + 0.5 }')
  echo "${out%\}}, \"server_cpu_percent\": $(cpu_share "$t0" "$t1" "$span"), \"client_cpu_percent\": $(client_share "$cpu_file" "$span")}"
}
cpu_file=$(mktemp)
# cpu %: the shares of core 0 (server) + core 1 (load) used during the run
# (see common.sh). A run in which they had clearly less than both cores was
# disturbed by another process: it is shown, left out and run again (up to
# 3 times; the 4th stands).
printf '%-6s %-28s %12s %7s %12s %7s %7s %s\n' "round" "run" "weft msg/s" "cpu%" "asio msg/s" "cpu%" "ratio" "goal >= 1.2x"
declare -A runs
declare -A skipped=([64]=0 [4096]=0)
for round in $(seq "$rounds"); do
  for size in 64 4096; do
    for attempt in 1 2 3 4; do
      w=$(measure 7801 "${pids[0]}" "$size")
      a=$(measure 7802 "${pids[1]}" "$size")
      wr=$(sed -E 's/.*"messages_per_s": ([0-9.]+).*/\1/' <<<"$w")
      ar=$(sed -E 's/.*"messages_per_s": ([0-9.]+).*/\1/' <<<"$a")
      wc=$(sed -E 's/.*"server_cpu_percent": ([0-9.]+).*"client_cpu_percent": ([0-9.]+).*/\1+\2/' <<<"$w")
      ac=$(sed -E 's/.*"server_cpu_percent": ([0-9.]+).*"client_cpu_percent": ([0-9.]+).*/\1+\2/' <<<"$a")
      if (undisturbed ${wc/+/ } && undisturbed ${ac/+/ }) || ((attempt == 4)); then break; fi
      printf '%-6s %-28s %12s %7s %12s %7s  (disturbed: run again)\n' "-" "64 conns, $size-byte messages" "$wr" "$wc" "$ar" "$ac"
      skipped[$size]=$((skipped[$size] + 1))
    done
    ratio=$(awk -v w="$wr" -v a="$ar" 'BEGIN { printf "%.2f", (a > 0 ? w / a : 0) }')
    met=$(awk -v r="$ratio" 'BEGIN { print (r >= 1.2 ? "yes" : "NO") }')
    printf '%-6s %-28s %12s %7s %12s %7s %6sx %s\n' "$round" "64 conns, $size-byte messages" "$wr" "$wc" "$ar" "$ac" "$ratio" "$met"
    runs[$size]+="$ratio {\"weft\": $w, \"asio\": $a, \"ratio\": $ratio}"$'\n'
  done
done
results=()
for size in 64 4096; do
  # The round with the median ratio stands for the size; all rounds are kept.
  median=$(sort -n <<<"${runs[$size]%$'\n'}" | awk -v n="$rounds" 'NR == int((n + 1) / 2) { $1 = ""; print substr($0, 2) }')
  all=$(cut -d' ' -f2- <<<"${runs[$size]%$'\n'}" | paste -sd, -)
  body=${median#\{}
  results+=("{\"message_bytes\": $size, ${body%\}}, \"rounds\": [$all], \"disturbed_rounds_left_out\": ${skipped[$size]}}")
  printf 'median of %s round(s), %s-byte messages (%s disturbed run(s) left out): ratio %s\n' "$rounds" "$size" "${skipped[$size]}" "$(sed -E 's/.*"ratio": ([0-9.]+).*/\1/' <<<"$median")"
done
(IFS=,; echo "[${results[*]}]") > build/bench-io-echo.json
echo "results written to build/bench-io-echo.json"
