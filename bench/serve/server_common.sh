# Shared by bench/serve/goals.sh and prefix.sh (sourced): builds weft-serve
# and weft-loadgen (release preset) and starts and stops one server at a
# time. Sets $serve, $loadgen; stops the server on exit.
cmake --preset release >/dev/null
cmake --build --preset release -j2 --target weft_serve_bin weft_loadgen >/dev/null

serve=build/release/modules/serve/tools/weft-serve
loadgen=build/release/bench/serve/weft-loadgen
server_pid=""

stop_server() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT

# start_server PORT LOG ARGS...: starts weft-serve and waits for /health 200.
start_server() {
  local port="$1" log="$2"
  shift 2
  "$serve" --port "$port" --no-request-log "$@" >"$log" 2>&1 &
  server_pid=$!
  for _ in $(seq 600); do
    if curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then cat "$log"; echo "weft-serve exited" >&2; exit 1; fi
    sleep 0.1
  done
  echo "weft-serve did not become ready on port $port" >&2
  exit 1
}

# model_name PORT: the id the server answers to.
model_name() { curl -fs "http://127.0.0.1:$1/v1/models" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])'; }

# engine_counters PORT: the engine's step counters from /metrics, as JSON
# (steps, their backend seconds and tokens); engine_steps reads the
# difference of two calls.
engine_counters() {
  curl -fs "http://127.0.0.1:$1/metrics" | python3 -c '
import json, sys
names = {"weft_engine_step_compute_seconds_sum": "compute_s", "weft_engine_step_compute_seconds_count": "steps",
         "weft_engine_step_tokens_sum": "tokens"}
out = {}
for line in sys.stdin:
    if line.startswith("#") or not line.strip():
        continue
    name = line.split("{")[0].split(" ")[0]
    if name in names:
        out[names[name]] = float(line.rsplit(" ", 1)[1])
print(json.dumps(out))'
}

# engine_steps PREFIX: what the engine's steps between PREFIX.engine-before.json
# and PREFIX.engine-after.json (two engine_counters calls around a run) cost,
# as JSON: their number, the backend's seconds, milliseconds and tokens per step.
engine_steps() {
  python3 - "$1" <<'PY'
import json, sys
a, b = (json.load(open(f"{sys.argv[1]}.engine-{w}.json")) for w in ("before", "after"))
steps = b["steps"] - a["steps"]
compute_s = b["compute_s"] - a["compute_s"]
print(json.dumps({"steps": steps, "compute_s": compute_s, "step_ms": 1e3 * compute_s / max(1.0, steps),
                  "tokens_per_step": (b["tokens"] - a["tokens"]) / max(1.0, steps)}))
PY
}
