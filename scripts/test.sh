#!/usr/bin/env bash
# The project's test command: install deps, build the release preset, run ctest.
#   bash scripts/test.sh
# Exits non-zero on any failure; ends with ctest's summary line.
#
# TSan note (checked on the dev machine, kernel 6.18, vm.mmap_rnd_bits=28): g++ 12
# and clang 14 TSan binaries start fine with ASLR on. On kernels with
# vm.mmap_rnd_bits=32 gcc 12's libtsan dies with "unexpected memory mapping"; the
# tsan preset therefore runs test binaries under `setarch -R` automatically (see
# WEFT_TEST_LAUNCHER in tests/CMakeLists.txt). This script uses the release preset.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

cmake --preset release
cmake --build --preset release -j2

log="build/release/ctest.log"
status=0
ctest --preset release 2>&1 | tee "$log" || status=$?
summary="$(grep -E 'tests passed|tests failed' "$log" | tail -n 1 || true)"
echo
echo "ctest summary: ${summary:-<no summary line: ctest did not run tests>}"
exit "$status"
