#!/usr/bin/env bash
# Concurrency sweep against an already running OpenAI-compatible server:
# weft-loadgen at concurrency 1, 2, 4, ... up to MAX_CONCURRENCY (MAX itself
# included), one JSON per level, then a table on stdout and a PNG of latency
# (E2E and TTFT, p50 and p99) and throughput against concurrency.
#
#   bash bench/serve/sweep.sh PORT MAX_CONCURRENCY [MAX_TOKENS=128] [OUT_DIR] [-- weft-loadgen options...]
#
# Each level sends max(MIN_REQUESTS, PER_CLIENT * concurrency) requests
# (environment: MIN_REQUESTS=64, PER_CLIENT=8); options after "--" go to every
# weft-loadgen run (e.g. -- --endpoint chat --prompt-tokens 256 --duration 30);
# without --model there, the server's first model (GET /v1/models) is asked for.
# HOST (default 127.0.0.1), LABEL and LOADGEN (the binary; default: built
# from this tree with the release preset) may be set too. OUT_DIR defaults
# to build/bench-serve-sweep. Installs jq and gnuplot-nox (Debian) if missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }
(($# >= 2)) || usage
port=$1 max_c=$2
shift 2
max_tokens=128
out_dir=build/bench-serve-sweep
if (($#)) && [[ $1 != -- ]]; then max_tokens=$1; shift; fi
if (($#)) && [[ $1 != -- ]]; then out_dir=$1; shift; fi
if (($#)) && [[ $1 == -- ]]; then shift; fi
extra=("$@")
[[ $port =~ ^[0-9]+$ && $max_c =~ ^[0-9]+$ && $max_tokens =~ ^[0-9]+$ ]] || usage
((max_c >= 1)) || usage
host=${HOST:-127.0.0.1}
min_requests=${MIN_REQUESTS:-64}
per_client=${PER_CLIENT:-8}
label=${LABEL:-sweep}

missing=()
command -v jq >/dev/null || missing+=(jq)
command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
if ((${#missing[@]})); then
  sudo_cmd=(); [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  echo "sweep.sh: installing ${missing[*]}" >&2
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

loadgen=${LOADGEN:-build/release/bench/serve/weft-loadgen}
if [[ -z ${LOADGEN:-} && ! -x $loadgen ]]; then
  cmake --preset release >/dev/null
  cmake --build --preset release -j2 --target weft_loadgen >/dev/null
fi
[[ -x $loadgen ]] || { echo "sweep.sh: no weft-loadgen at $loadgen" >&2; exit 1; }

# 1000 clients need 1000 descriptors and then some.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

levels=()
for ((c = 1; c < max_c; c *= 2)); do levels+=("$c"); done
levels+=("$max_c")

# Each level its own prompts (seed = the level's concurrency, unless one is
# given after "--"): with one seed, a level's prompt i is the previous
# level's prompt i, and the server's prefix cache would skip its prefill.
# given OPTION: whether OPTION is among the options after "--".
given() {
  local a
  for a in "${extra[@]}"; do [[ $a == "$1" || $a == "$1"=* ]] && return 0; done
  return 1
}
own_seed=1
given --seed && own_seed=0
# The server's first model, unless one is given after "--".
model=()
if ! given --model; then
  id=$(curl -fsS "http://$host:$port/v1/models" | jq -r '.data[0].id // empty') || true
  [[ -n $id ]] && model=(--model "$id")
fi

mkdir -p "$out_dir"
rm -f "$out_dir"/c*.json
for c in "${levels[@]}"; do
  seed=(); ((own_seed)) && seed=(--seed "$c")
  requests=$((per_client * c > min_requests ? per_client * c : min_requests))
  echo "sweep.sh: concurrency $c, $requests requests" >&2
  # A level where every request failed still has its JSON: keep going.
  "$loadgen" --host "$host" --port "$port" --concurrency "$c" --requests "$requests" \
    --max-tokens "$max_tokens" --label "$label c=$c" --json "$out_dir/c$c.json" "${seed[@]}" "${model[@]}" "${extra[@]}" \
    >"$out_dir/c$c.txt" || true
  [[ -s $out_dir/c$c.json ]] || { echo "sweep.sh: weft-loadgen wrote no result at concurrency $c" >&2; exit 1; }
done

data=$out_dir/sweep.tsv
{
  printf '# concurrency\treq_s\tout_tok_s\te2e_p50_ms\te2e_p99_ms\tttft_p50_ms\tttft_p99_ms\ttpot_p50_ms\titl_max_ms\tfailed\n'
  for c in "${levels[@]}"; do
    jq -r '[.config.concurrency, .request_throughput, .output_throughput, .e2el_ms.median, .e2el_ms.p99,
            .ttft_ms.median, .ttft_ms.p99, .tpot_ms.median, .itl_ms.max, .failed] | @tsv' "$out_dir/c$c.json"
  done
} >"$data"

printf '%6s %10s %11s %10s %10s %10s %10s %10s %10s %7s\n' \
  conc 'req/s' 'out tok/s' 'e2e p50' 'e2e p99' 'ttft p50' 'ttft p99' 'tpot p50' 'itl max' failed
awk -F'\t' '!/^#/ { printf "%6d %10.1f %11.1f %10.2f %10.2f %10.2f %10.2f %10.3f %10.2f %7d\n",
                    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }' "$data"
echo "(latencies in ms)"

png=$out_dir/sweep.png
gnuplot <<PLOT
set terminal pngcairo size 1400,560 font ",10" noenhanced
set output "$png"
set datafile separator "\t"
set multiplot layout 1,2 title "$label: port $port, max_tokens $max_tokens"
set logscale x 2
set xlabel "concurrency (clients)"
set grid
set key below
set title "latency"
set ylabel "ms"
set logscale y
plot "$data" using 1:4 with linespoints title "E2E p50", \
     "" using 1:5 with linespoints title "E2E p99", \
     "" using 1:6 with linespoints title "TTFT p50", \
     "" using 1:7 with linespoints title "TTFT p99"
unset logscale y
set title "throughput"
set ylabel "requests/s"
set y2label "output tokens/s"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
plot "$data" using 1:2 axes x1y1 with linespoints title "requests/s", \
     "" using 1:3 axes x1y2 with linespoints title "output tokens/s"
unset multiplot
PLOT
echo "results: $out_dir/c*.json, $data, $png"
