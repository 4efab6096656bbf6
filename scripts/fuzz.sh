#!/usr/bin/env bash
# Fuzzes weft::http::request_parser with libFuzzer (clang++, ASan + UBSan).
#
#   bash scripts/fuzz.sh [SECONDS] [extra libFuzzer args...]   (default 60 s)
#
# Compiles tests/http/fuzz/request_parser_fuzz.cpp with the parser sources
# directly (no CMake) into build/fuzz/, copies the seed corpus there (the seeds
# in the repository are never modified) and runs for a bounded time. Exits
# non-zero if the fuzzer finds a crash or an invariant violation; the
# reproducer is left in build/fuzz/ (crash-*). Needs clang++ with libFuzzer
# (Debian: clang and libclang-rt-<version>-dev).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-60}"
shift || true
cxx="${CXX_FUZZ:-clang++}"
out=build/fuzz
mkdir -p "$out"

if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "fuzz.sh: $cxx not found (set CXX_FUZZ or install clang)" >&2
  exit 2
fi

echo "fuzz.sh: building $out/request_parser_fuzz with $cxx"
"$cxx" -std=c++20 -O1 -g -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -Iinclude -Imodules/http/include \
  tests/http/fuzz/request_parser_fuzz.cpp \
  modules/http/src/request_parser.cpp modules/http/src/message.cpp \
  -o "$out/request_parser_fuzz"

rm -rf "$out/corpus"
cp -r tests/http/fuzz/corpus "$out/corpus"

echo "fuzz.sh: running for ${seconds}s on a copy of the seed corpus"
cd "$out"
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
./request_parser_fuzz -max_total_time="$seconds" -max_len=4096 -timeout=10 \
  -print_final_stats=1 "$@" corpus
