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

# thread_cpu PID SECONDS OUT [CLIENT_PID]: the CPU that each of PID's threads
# (by name: weft-step, weft-http-0, ...) and the client process used over the
# next SECONDS, in cores, as JSON. Which thread is near a whole core says
# what bounds a saturated run (docs/pitfalls.md §24).
thread_cpu() {
  python3 - "$@" <<'PY'
import json, os, sys, time
pid, secs, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
client = int(sys.argv[4]) if len(sys.argv) > 4 else None
tick = os.sysconf("SC_CLK_TCK")
def ticks(path):
    s = open(path).read()
    fields = s[s.rindex(")") + 2:].split()  # from field 3 (state) on
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)
def sample():
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            threads[tid] = (open(f"/proc/{pid}/task/{tid}/comm").read().strip(), ticks(f"/proc/{pid}/task/{tid}/stat"))
        except OSError:
            pass  # a thread that ended between the listing and the read
    try:
        c = ticks(f"/proc/{client}/stat") if client else None  # the whole process
    except OSError:
        c = None
    return threads, c, time.monotonic()
a, ca, t0 = sample()
time.sleep(secs)
b, cb, t1 = sample()
dt = t1 - t0
cores = {}
for tid, (name, t) in b.items():
    if tid in a:
        cores[name] = cores.get(name, 0.0) + (t - a[tid][1]) / tick / dt
res = {"seconds": round(dt, 2),
       "server_threads": {k: round(v, 3) for k, v in sorted(cores.items(), key=lambda kv: -kv[1]) if v >= 0.005}}
if ca is not None and cb is not None:
    res["client"] = round((cb - ca) / tick / dt, 3)
json.dump(res, open(out, "w"), indent=2)
PY
}

# machine_json: what the machine is, as JSON: the CPU, its logical CPUs, the
# L2 and L3 sizes, and whether it has AVX-512 (the kernels' fastest paths).
machine_json() {
  python3 - <<'PY'
import json, os
info = {}
for line in open("/proc/cpuinfo"):
    if ":" in line:
        k, v = (x.strip() for x in line.split(":", 1))
        info.setdefault(k, v)
def cache(level):
    base = "/sys/devices/system/cpu/cpu0/cache"
    for d in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        try:
            if open(f"{base}/{d}/level").read().strip() == str(level) and open(f"{base}/{d}/type").read().strip() != "Instruction":
                return open(f"{base}/{d}/size").read().strip()
        except OSError:
            pass
    return None
flags = info.get("flags", "").split()
print(json.dumps({"cpu": info.get("model name"), "vendor": info.get("vendor_id"), "family": info.get("cpu family"),
                  "model": info.get("model"), "logical_cpus": os.cpu_count(), "l2_per_core": cache(2),
                  "l3": cache(3), "avx512f": "avx512f" in flags, "avx2": "avx2" in flags}))
PY
}
