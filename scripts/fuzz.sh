#!/usr/bin/env bash
# Fuzzes weft's parsers with libFuzzer (clang++, ASan + UBSan).
#
#   bash scripts/fuzz.sh [--target http|gguf] [SECONDS] [extra libFuzzer args...]
#
# Targets (default http, 60 s):
#   http  weft::http::request_parser: tests/http/fuzz/request_parser_fuzz.cpp
#         with the parser sources, in build/fuzz/ (seeds: tests/http/fuzz/corpus)
#   gguf  weft::serve::gguf_file: tests/serve/fuzz/gguf_fuzz.cpp with
#         modules/serve/src/gguf*.cpp, in build/fuzz/gguf/
#         (seeds: tests/serve/fuzz/gguf_corpus)
#   openai  the OpenAI request parsers, chat templates, JSON schemas and the
#         JSON matcher: tests/serve/fuzz/openai_request_fuzz.cpp with the
#         serve sources they use, in build/fuzz/openai/
#         (seeds: tests/serve/fuzz/openai_corpus)
#
# Each target is compiled directly (no CMake; its sources in parallel, one
# object each), its seed corpus is copied into
# the output directory (the seeds in the repository are never modified) and
# the fuzzer runs for a bounded time. Exits non-zero if the fuzzer finds a
# crash or an invariant violation; the reproducer is left in the output
# directory (crash-*). Needs clang++ with libFuzzer (Debian: clang and
# libclang-rt-<version>-dev).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=http
if [[ "${1:-}" == --target ]]; then
  target="${2:?fuzz.sh: --target needs a name (http, gguf or openai)}"
  shift 2
elif [[ "${1:-}" == --target=* ]]; then
  target="${1#--target=}"
  shift
fi

seconds="${1:-60}"
shift || true
cxx="${CXX_FUZZ:-clang++}"
libs=()
flags=(-std=c++20 -O1 -g -fno-omit-frame-pointer
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)

case "$target" in
  http)
    out=build/fuzz
    binary=request_parser_fuzz
    seeds=tests/http/fuzz/corpus
    includes=(-Iinclude -Imodules/http/include)
    sources=(tests/http/fuzz/request_parser_fuzz.cpp
             modules/http/src/request_parser.cpp modules/http/src/message.cpp)
    run_args=(-max_len=4096)
    ;;
  gguf)
    out=build/fuzz/gguf
    binary=gguf_fuzz
    seeds=tests/serve/fuzz/gguf_corpus
    includes=(-Imodules/serve/include -Imodules/serve/src)
    sources=(tests/serve/fuzz/gguf_fuzz.cpp modules/serve/src/gguf*.cpp)
    # The reader must never allocate much more than its input: a small
    # malloc limit turns a disproportionate allocation into a finding.
    run_args=(-max_len=8192 -malloc_limit_mb=64)
    ;;
  openai)
    out=build/fuzz/openai
    binary=openai_request_fuzz
    seeds=tests/serve/fuzz/openai_corpus
    includes=(-Iinclude -Imodules/serve/include -Imodules/serve/src)
    # The parsers and what they reach: the schema compiler (with PCRE2 for
    # patterns), the chat templates, and the tokenizer code that the
    # templates and the JSON constraint link against.
    sources=(tests/serve/fuzz/openai_request_fuzz.cpp
             modules/serve/src/openai_request.cpp modules/serve/src/openai_fields.cpp
             modules/serve/src/openai_tools.cpp modules/serve/src/openai_error.cpp
             modules/serve/src/openai_json.cpp modules/serve/src/json_*.cpp
             modules/serve/src/chat_template*.cpp modules/serve/src/tokenizer*.cpp
             modules/serve/src/gguf*.cpp)
    libs=(-lfmt -lpcre2-8)
    run_args=(-max_len=4096)
    ;;
  *)
    echo "fuzz.sh: unknown target '$target' (http, gguf or openai)" >&2
    exit 2
    ;;
esac
mkdir -p "$out"

if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "fuzz.sh: $cxx not found (set CXX_FUZZ or install clang)" >&2
  exit 2
fi

echo "fuzz.sh: building $out/$binary with $cxx"
# libFuzzer's main is linked once, at the end; the objects get its coverage
# instrumentation only.
mkdir -p "$out/obj"
rm -f "$out"/obj/*.o
export cxx out
printf '%s\n' "${sources[@]}" |
  xargs -P "$(nproc)" -I{} bash -c '"$cxx" "$@" -c "{}" -o "$out/obj/$(basename "{}" .cpp).o"' _ \
    "${flags[@]/-fsanitize=fuzzer,/-fsanitize=fuzzer-no-link,}" "${includes[@]}"
"$cxx" "${flags[@]}" "$out"/obj/*.o "${libs[@]}" -o "$out/$binary"

rm -rf "$out/corpus"
cp -r "$seeds" "$out/corpus"

echo "fuzz.sh: running for ${seconds}s on a copy of the seed corpus"
cd "$out"
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
"./$binary" -max_total_time="$seconds" "${run_args[@]}" -timeout=10 \
  -print_final_stats=1 "$@" corpus
