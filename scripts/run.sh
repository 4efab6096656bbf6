#!/usr/bin/env bash
# The project's main job: install deps, build the release preset, run the
# hello-task example.   bash scripts/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

cmake --preset release >/dev/null
cmake --build --preset release -j2

example="build/release/examples/01_hello_task"
if [[ ! -x "$example" ]]; then
  echo "run.sh: $example was not built (is examples/01_hello_task.cpp missing?)" >&2
  exit 1
fi
exec "$example" "$@"
