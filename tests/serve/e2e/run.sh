#!/usr/bin/env bash
# weft-serve end to end with real clients: the official `openai` npm package
# (installed into a temporary directory, with Ajv to judge structured
# replies) and curl.
#
#   tests/serve/e2e/run.sh [path/to/weft-serve]
#
# Exits 0 when every check passes, 77 (skip) when npm, node or curl is
# missing or the npm registry cannot be reached, 1 otherwise.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${1:-$here/../../../build/release/modules/serve/tools/weft-serve}"

source "$here/../npm_env.sh"
require_tools npm node curl
if [[ ! -x "$bin" ]]; then
  echo "FAIL: no weft-serve binary at $bin"
  exit 1
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  if [[ -f "$work/server.log" ]]; then
    echo "--- server log (last 40 lines) ---"
    tail -n 40 "$work/server.log"
  fi
  exit 1
}

cp "$here/package.json" "$here/client.mjs" "$work/"
npm_install "$work" "the openai package"

# Port 0: the server picks a free one and logs it.
WEFT_CACHE_DIR="$work/cache" "$bin" --port 0 --api-key x --served-model-name tiny --threads 1 \
  --shutdown-grace-s 5 >"$work/server.log" 2>&1 &
server_pid=$!

port=""
for _ in $(seq 1 600); do
  port="$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/server.log" | head -n 1)"
  [[ -n "$port" ]] && break
  kill -0 "$server_pid" 2>/dev/null || fail "weft-serve exited at startup"
  sleep 0.1
done
[[ -n "$port" ]] || fail "weft-serve did not log its address"
base="http://127.0.0.1:$port"

status=""
for _ in $(seq 1 1200); do
  status="$(curl -s -o /dev/null -w '%{http_code}' "$base/health" || true)"
  [[ "$status" == "200" ]] && break
  kill -0 "$server_pid" 2>/dev/null || fail "weft-serve exited while loading"
  sleep 0.1
done
[[ "$status" == "200" ]] || fail "/health never said 200 (last: $status)"
echo "ok: /health 200 on $base"

(cd "$work" && node client.mjs "$base/v1" tiny) || fail "OpenAI client checks"

# curl: the same API from the command line.
json_check() { # json_check <what> <js expression over j> <json>
  node -e 'const j = JSON.parse(process.argv[2]); if (!(eval(process.argv[1]))) process.exit(1);' "$2" "$3" \
    || fail "$1: $3"
  echo "ok: $1"
}
auth=(-H "Authorization: Bearer x")

body="$(curl -sS "${auth[@]}" "$base/v1/completions" -H 'Content-Type: application/json' \
  -d '{"prompt": "Hello", "max_tokens": 4, "ignore_eos": true}')"
json_check "curl completion" 'j.object === "text_completion" && j.usage.completion_tokens === 4' "$body"

stream="$(curl -sS -N "${auth[@]}" "$base/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stream": true}')"
[[ "$(printf '%s' "$stream" | grep -c '^data: ')" -ge 3 ]] || fail "curl chat stream has too few events: $stream"
[[ "$(printf '%s\n' "$stream" | grep '^data: ' | tail -n 1)" == "data: [DONE]" ]] || fail "curl chat stream does not end with [DONE]"
echo "ok: curl streamed chat ends with data: [DONE]"

code="$(curl -s -o "$work/out" -w '%{http_code}' "$base/v1/models")"
[[ "$code" == "401" ]] || fail "no API key: expected 401, got $code"
json_check "curl 401 without a key" 'j.error.code === "invalid_api_key"' "$(cat "$work/out")"

code="$(curl -s -o "$work/out" -w '%{http_code}' "${auth[@]}" "$base/v1/completions" \
  -H 'Content-Type: application/json' -d '{"prompt": "x", "max_tokens": "lots"}')"
[[ "$code" == "400" ]] || fail "bad max_tokens: expected 400, got $code"
json_check "curl 400 names the field" 'j.error.param === "max_tokens" && j.error.type === "invalid_request_error"' \
  "$(cat "$work/out")"

metrics="$(curl -sS "$base/metrics")"
printf '%s\n' "$metrics" | grep -q '^weft_requests_finished_total{model="tiny",reason="length"}' \
  || fail "/metrics lacks weft_requests_finished_total"
echo "ok: /metrics"

# Graceful shutdown: SIGTERM, exit status 0.
kill -TERM "$server_pid"
rc=0
wait "$server_pid" || rc=$?
server_pid=""
[[ "$rc" == "0" ]] || fail "weft-serve exited with $rc after SIGTERM"
echo "ok: SIGTERM -> exit 0"
echo "PASS"
