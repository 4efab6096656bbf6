#!/usr/bin/env bash
# Installs the system packages weft needs to build, test and benchmark.
# Idempotent and quiet: does nothing when every package is already installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  catch2 libfmt-dev libbenchmark-dev libasio-dev liburing-dev
  clang
  # weft::serve: JSON, command line, logging, the tokenizer's Unicode regexes
  nlohmann-json3-dev libcli11-dev libspdlog-dev libpcre2-dev
  # weft-serve's allocator (WEFT_SERVE_JEMALLOC)
  libjemalloc-dev
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
  if [[ "$status" != "installed" ]]; then
    missing+=("$pkg")
  fi
done

# The end-to-end test drives the server with the official `openai` npm
# client; Debian's Node.js only where none is installed already.
if ! command -v npm >/dev/null 2>&1; then
  for pkg in nodejs npm; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
    if [[ "$status" != "installed" ]]; then missing+=("$pkg"); fi
  done
fi

if ((${#missing[@]} == 0)); then
  exit 0
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  SUDO=(sudo)
fi

echo "setup.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
