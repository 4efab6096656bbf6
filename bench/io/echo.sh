#!/usr/bin/env bash
# Echo benchmark: weft's echo server (io_uring, one loop thread) against an
# asio C++20-coroutine echo server (one io_context thread), both pinned to
# core 0, driven by the same load generator pinned to core 1.
#   bash bench/io/echo.sh [SECONDS]      (default 5 per run)
# Prints a table with the ratio and writes build/bench-io-echo.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
seconds="${1:-5}"

bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j2 --target example_06_echo_server weft_bench_asio_echo_server weft_bench_echo_load >/dev/null

bin=build/release
weft_server="$bin/examples/06_echo_server"
asio_server="$bin/bench/weft_bench_asio_echo_server"
load="$bin/bench/weft_bench_echo_load"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT


source bench/io/common.sh

pin 0 "$weft_server" 7801 >/dev/null & pids+=($!)
pin 0 "$asio_server" 7802 >/dev/null & pids+=($!)
wait_port 7801; wait_port 7802

results=()
printf '%-28s %14s %14s %8s %s\n' "run" "weft msg/s" "asio msg/s" "ratio" "goal >= 1.2x"
for size in 64 4096; do
  w=$(pin 1 "$load" 127.0.0.1 7801 64 "$size" "$seconds")
  a=$(pin 1 "$load" 127.0.0.1 7802 64 "$size" "$seconds")
  wr=$(sed -E 's/.*"messages_per_s": ([0-9.]+).*/\1/' <<<"$w")
  ar=$(sed -E 's/.*"messages_per_s": ([0-9.]+).*/\1/' <<<"$a")
  ratio=$(awk -v w="$wr" -v a="$ar" 'BEGIN { printf "%.2f", (a > 0 ? w / a : 0) }')
  met=$(awk -v r="$ratio" 'BEGIN { print (r >= 1.2 ? "yes" : "NO") }')
  printf '%-28s %14s %14s %7sx %s\n' "64 conns, $size-byte messages" "$wr" "$ar" "$ratio" "$met"
  results+=("{\"message_bytes\": $size, \"weft\": $w, \"asio\": $a, \"ratio\": $ratio}")
done
(IFS=,; echo "[${results[*]}]") > build/bench-io-echo.json
echo "results written to build/bench-io-echo.json"
