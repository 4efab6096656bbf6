#!/usr/bin/env bash
# Everything the CUDA backend needs a GPU for, in one call (about 5-8 minutes
# on an H100/H200 with 16 cores):
#
#   bash bench/serve/cuda/run_on_device.sh [OUT_DIR]     # default: $OUT, else build/gpu-results
#
#  1. build     release preset with -DWEFT_ENABLE_CUDA=ON: weft_tests_cuda,
#               weft-cuda-bench, weft-mkmodel, weft-loadgen, weft-serve (if present)
#  2. tests     weft_tests_cuda, all cases, with each case's duration
#  3. memcheck  compute-sanitizer memcheck on the kernel, stream and [sanitize] cases
#  4. racecheck compute-sanitizer racecheck on the kernel cases
#  5. model     weft-mkmodel --size 1b --type bf16 (the ~1 B demo model)
#  6. bench     weft-cuda-bench: copy bandwidth, batch-1 step vs the floor,
#               decode tokens/s at batch 1..256, prefill, BF16 vs F32 greedy
#  7. torch     torch_peer.py: the same GGUF in plain PyTorch BF16, batch 1 and 64
#  8. serve     weft-serve --device cuda with the 1b model + weft-loadgen at
#               256 concurrent streams (skipped if weft-serve has no --device)
#  9. summary   summary.json and summary.md (the closing note's table)
#
# Every stage logs to OUT_DIR/<stage>.log and records its exit status and
# time in OUT_DIR/stages.jsonl; a failing stage does not stop the others
# (except the build). STAGES="tests bench" runs a subset; JOBS sets the
# build's parallelism (default: all cores).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."

OUT_DIR="$(realpath -m "${1:-${OUT:-build/gpu-results}}")"
mkdir -p "$OUT_DIR"
: >"$OUT_DIR/stages.jsonl"
STAGES="${STAGES:-build tests memcheck racecheck model bench torch serve summary}"
JOBS="${JOBS:-$(nproc)}"
PORT="${PORT:-18080}"
BUILD=build/release
# In the build tree, not OUT_DIR: 2 GB need not come back.
MODEL="$(realpath -m "${MODEL:-build/models/weft-demo-1b-bf16.gguf}")"
mkdir -p "$(dirname "$MODEL")"
T0=$SECONDS

want() { [[ " $STAGES " == *" $1 "* ]]; }

# stage NAME LIMIT_S COMMAND...: runs COMMAND with a time limit, output to NAME.log.
stage() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  echo "=== [$((SECONDS - T0))s] $name (limit ${limit}s)"
  timeout --kill-after=15 "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1
  local rc=$?
  printf '{"stage":"%s","rc":%d,"seconds":%d}\n' "$name" "$rc" $((SECONDS - start)) >>"$OUT_DIR/stages.jsonl"
  tail -n 6 "$OUT_DIR/$name.log"
  echo "--- $name: exit $rc after $((SECONDS - start))s"
  return $rc
}

find_sanitizer() {
  local c
  for c in "$(command -v compute-sanitizer 2>/dev/null)" /usr/local/cuda/bin/compute-sanitizer \
           /usr/local/cuda/compute-sanitizer/compute-sanitizer /opt/nvidia/compute-sanitizer/compute-sanitizer; do
    [[ -n "$c" && -x "$c" ]] && { echo "$c"; return 0; }
  done
  return 1
}

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1 || echo "nvidia-smi unavailable"
  /usr/local/cuda/bin/nvcc --version 2>&1 | tail -n 2
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1 || true
  echo "compute-sanitizer: $(find_sanitizer || echo none)"
} >"$OUT_DIR/environment.txt" 2>&1
cat "$OUT_DIR/environment.txt"

build() {
  cmake --preset release -DWEFT_ENABLE_CUDA=ON || return $?
  local targets=(weft_tests_cuda weft_cuda_bench weft_mkmodel weft_loadgen)
  # weft-serve (target weft_serve_bin) where this tree has it.
  if cmake --build --preset release --target help 2>/dev/null | grep -q '^weft_serve_bin:'; then
    targets+=(weft_serve_bin)
  fi
  cmake --build --preset release -j"$JOBS" --target "${targets[@]}"
}
export -f build
export JOBS

if want build; then
  stage build 360 bash -c build || { echo "build failed: nothing else can run"; exit 1; }
fi

TESTS="$BUILD/tests/weft_tests_cuda"
if want tests; then
  stage tests 180 "$TESTS" --durations yes
fi

SANITIZER="$(find_sanitizer || true)"
if want memcheck; then
  if [[ -n "$SANITIZER" ]]; then
    stage memcheck 150 "$SANITIZER" --tool memcheck --error-exitcode 86 --report-api-errors no \
      --target-processes application-only "$TESTS" "[kernels],[stream]~[fault],[sanitize]"
  else
    echo '{"stage":"memcheck","rc":-1,"seconds":0,"note":"compute-sanitizer not found"}' >>"$OUT_DIR/stages.jsonl"
  fi
fi
if want racecheck; then
  if [[ -n "$SANITIZER" ]]; then
    stage racecheck 120 "$SANITIZER" --tool racecheck --racecheck-report hazard --error-exitcode 86 \
      --report-api-errors no --target-processes application-only "$TESTS" "[kernels]"
  else
    echo '{"stage":"racecheck","rc":-1,"seconds":0,"note":"compute-sanitizer not found"}' >>"$OUT_DIR/stages.jsonl"
  fi
fi

if want model; then
  if [[ -s "$MODEL" ]]; then
    echo "=== model: $MODEL already there"
  else
    stage model 120 "$BUILD/modules/serve/tools/weft-mkmodel" --size 1b --type bf16 -o "$MODEL"
  fi
fi

if want bench; then
  stage bench 180 "$BUILD/bench/serve/cuda/weft-cuda-bench" --model "$MODEL" --json "$OUT_DIR/cuda_bench.json" \
    --batches 1,2,4,8,16,32,64,128,256 --steps 32 --context 64 --check-f32
fi

if want torch; then
  stage torch 180 python3 bench/serve/cuda/torch_peer.py --model "$MODEL" --batches 1,64 --steps 32 --context 64 \
    --json "$OUT_DIR/torch_peer.json"
fi

# weft-serve --device cuda (see docs/cuda.md for the flags assumed) under 256
# concurrent streaming clients.
serve_and_load() {
  local serve
  serve="$(ls "$BUILD"/modules/serve/tools/weft-serve 2>/dev/null)"
  if [[ -z "$serve" ]]; then echo "weft-serve is not built in this tree"; return 3; fi
  if ! "$serve" --help 2>&1 | grep -q -- '--device'; then echo "weft-serve has no --device option yet"; return 4; fi
  "$serve" --model "$MODEL" --device cuda --port "$PORT" --max-running 256 --max-batch-tokens 2048 \
    --kv-cache-mb 8192 --no-request-log >"$OUT_DIR/serve.server.log" 2>&1 &
  local pid=$!
  local ready=0
  for _ in $(seq 180); do
    if python3 -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:$PORT/health', timeout=1).status == 200 else 1)" 2>/dev/null; then
      ready=1
      break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if [[ $ready != 1 ]]; then
    echo "weft-serve did not become ready"; tail -n 20 "$OUT_DIR/serve.server.log"
    kill -TERM "$pid" 2>/dev/null; wait "$pid"
    return 5
  fi
  "$BUILD/bench/serve/weft-loadgen" --port "$PORT" --concurrency 256 --requests 2048 --max-tokens 64 \
    --prompt-tokens 64 --threads 4 --timeout-s 120 --warmup 4 --json "$OUT_DIR/loadgen.json" \
    --label weft-cuda-1b-bf16
  local rc=$?
  kill -TERM "$pid" 2>/dev/null
  wait "$pid"
  return $rc
}
if want serve; then
  export -f serve_and_load
  export OUT_DIR MODEL PORT BUILD
  stage serve 200 bash -c serve_and_load
fi

if want summary; then
  stage summary 60 python3 bench/serve/cuda/summarize.py "$OUT_DIR"
  cat "$OUT_DIR/summary.md" 2>/dev/null
fi
echo "=== done in $((SECONDS - T0))s; results in $OUT_DIR"
