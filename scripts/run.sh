#!/usr/bin/env bash
# The project's main job: install deps, build the release preset, start the
# OpenAI-compatible server on the built-in demo model (made on first run).
#   bash scripts/run.sh [weft-serve flags, e.g. --port 8081 --demo-size small]
# Then: curl http://127.0.0.1:8080/v1/completions -H 'Content-Type: application/json' \
#         -d '{"prompt": "Once upon a time", "max_tokens": 32}'
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

cmake --preset release >/dev/null
cmake --build --preset release -j2

server="build/release/modules/serve/tools/weft-serve"
if [[ ! -x "$server" ]]; then
  echo "run.sh: $server was not built" >&2
  exit 1
fi
exec "$server" "$@"
