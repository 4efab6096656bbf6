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

source "$here/../npm_env.sh"
require_tools npm node

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cp "$here/package.json" "$here/validate.mjs" "$work/"
npm_install "$work" ajv

"$walker" --walks "$walks" --seed 20261207 "$here"/schemas/*.json >"$work/docs.jsonl"
# A schema with fewer than a third of its walks completed and accepted fails:
# the walks head for the end, so nearly all of them complete.
node "$work/validate.mjs" "$here/schemas" "$work/docs.jsonl" $((walks / 3))
