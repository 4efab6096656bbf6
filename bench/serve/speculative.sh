#!/usr/bin/env bash
# Speculative decoding by prompt lookup, measured against the same server
# without it, in one run: greedy requests on the small demo model, 1 and 2
# streams, 256 tokens each. Both servers run at once (an idle one costs
# nothing) and the loads alternate between them, round after round, so that
# the machine's drift falls on both alike. The demo model's greedy text
# repeats itself now and then, which lookup predicts; real models repeat
# their context in code edits, summaries and extraction.
#   bash bench/serve/speculative.sh [OUT_DIR] [K] [ROUNDS]   (default build/bench-serve, 4, 3)
# Starts and stops its servers on loopback ports 18184 and 18185; writes each
# run's JSON and speculative-summary.json to OUT_DIR. Takes about two minutes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

out="${1:-build/bench-serve}"
k="${2:-4}"
rounds="${3:-3}"
mkdir -p "$out"
source bench/serve/server_common.sh

start_server 18184 "$out/serve-spec-off.log" --demo-size small --speculative-tokens 0
off_pid=$server_pid
start_server 18185 "$out/serve-spec-on.log" --demo-size small --speculative-tokens "$k"
on_pid=$server_pid
trap 'kill "$off_pid" "$on_pid" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
m=$(model_name 18184)

for r in $(seq "$rounds"); do
  order="off on"
  if (( r % 2 == 0 )); then order="on off"; fi
  for c in 1 2; do
    for mode in $order; do
      port=18184
      if [[ "$mode" == on ]]; then port=18185; fi
      "$loadgen" --port "$port" --model "$m" --concurrency "$c" --requests $((c * 3)) --max-tokens 256 \
        --prompt-tokens 16 --stream-usage --seed "$r" --label "spec $mode c=$c round $r" --json "$out/spec-$mode-c$c-r$r.json" >/dev/null
    done
  done
done
curl -fs "http://127.0.0.1:18185/metrics" | grep -E '^weft_spec_decode' >"$out/spec-on.metrics"

python3 - "$out" "$k" "$rounds" <<'PY'
import json, os, re, sys
out, k, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def total(mode, c):
    runs = [json.load(open(os.path.join(out, f"spec-{mode}-c{c}-r{r}.json"))) for r in range(1, rounds + 1)]
    tokens = sum(j["total_output_tokens"] for j in runs)
    seconds = sum(j["duration_s"] for j in runs)
    return {"output_tokens": tokens, "seconds": seconds, "output_tokens_per_s": tokens / seconds,
            "tpot_ms_mean": sum(j["tpot_ms"]["mean"] for j in runs) / rounds,
            "errors": sum(j["failed"] for j in runs)}
metrics = open(os.path.join(out, "spec-on.metrics")).read()
value = lambda name: float(re.search(rf"^weft_spec_decode_{name}{{[^}}]*}} (\S+)", metrics, re.M).group(1))
drafted, accepted = value("draft_tokens_total"), value("accepted_tokens_total")
summary = {"k": k, "rounds": rounds, "draft_tokens": drafted, "accepted_tokens": accepted,
           "acceptance": accepted / drafted if drafted else 0.0}
for c in (1, 2):
    off, on = total("off", c), total("on", c)
    summary[f"c{c}"] = {"without": off, "with": on,
                        "throughput_ratio": on["output_tokens_per_s"] / off["output_tokens_per_s"]}
json.dump(summary, open(os.path.join(out, "speculative-summary.json"), "w"), indent=2)
for c in (1, 2):
    s = summary[f"c{c}"]
    print(f"{c} stream(s): {s['with']['output_tokens_per_s']:.0f} vs {s['without']['output_tokens_per_s']:.0f} tok/s "
          f"= {s['throughput_ratio']:.2f}x; TPOT {s['with']['tpot_ms_mean']:.2f} vs {s['without']['tpot_ms_mean']:.2f} ms")
print(f"drafts: {accepted:.0f} of {drafted:.0f} tokens accepted ({summary['acceptance']:.0%})")
PY
