#!/usr/bin/env bash
# Builds the release preset and runs the micro-benchmarks (weft vs asio).
#   bash scripts/bench.sh [google-benchmark flags, e.g. --benchmark_filter=chain]
# Writes build/bench-micro.json (Google Benchmark JSON) and
# build/bench-micro-summary.json (the comparison table; override the path with
# WEFT_BENCH_SUMMARY). Missed goals are reported but do not fail the script
# unless WEFT_BENCH_STRICT=1. Takes about 1.5 minutes on 2 cores; run it on an
# otherwise idle machine, the numbers are wall-clock.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

cmake --preset release >/dev/null
cmake --build --preset release --target weft_bench_micro -j2

mkdir -p build
export WEFT_BENCH_SUMMARY="${WEFT_BENCH_SUMMARY:-build/bench-micro-summary.json}"
exec build/release/bench/weft_bench_micro \
  --benchmark_out=build/bench-micro.json --benchmark_out_format=json "$@"
