#!/usr/bin/env bash
# Structured outputs judged from outside: weft_schema_walk writes documents
# that json_matcher completes under each schema in schemas/, and Ajv (the
# `ajv` npm package with `ajv-formats`, installed into a temporary
# directory) must accept every one of them.
#
#   tests/serve/conformance/run.sh path/to/weft_schema_walk [WALKS]
#
# Exits 0 when every document passes, 77 (skip) when npm or node is missing
# or the npm registry cannot be reached, 1 otherwise.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
walker="${1:?usage: run.sh path/to/weft_schema_walk [WALKS]}"
walks="${2:-1000}"

for tool in npm node; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "SKIP: $tool is not installed"
    exit 77
  fi
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cp "$here/package.json" "$here/validate.mjs" "$work/"
if ! (cd "$work" && npm install --no-audit --no-fund --loglevel=error >"$work/npm.log" 2>&1); then
  cat "$work/npm.log"
  echo "SKIP: npm install of ajv failed (no registry access?)"
  exit 77
fi

"$walker" --walks "$walks" --seed 20261207 "$here"/schemas/*.json >"$work/docs.jsonl"
# A schema with fewer than a third of its walks completed and accepted fails:
# the walks head for the end, so nearly all of them complete.
node "$work/validate.mjs" "$here/schemas" "$work/docs.jsonl" $((walks / 3))
