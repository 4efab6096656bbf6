#!/usr/bin/env bash
# Speculative decoding by prompt lookup, measured against the same server
# without it, in one run: greedy requests on the small demo model, one
# stream and 8 streams, 128 tokens each. The demo model's greedy text often
# falls into repeats, which lookup predicts; real models repeat their
# context in code edits, summaries and extraction.
#   bash bench/serve/speculative.sh [OUT_DIR] [K]   (default build/bench-serve, 4)
# Starts and stops its servers on loopback port 18184; writes each run's JSON
# and speculative-summary.json to OUT_DIR. Takes about a minute.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

out="${1:-build/bench-serve}"
k="${2:-4}"
mkdir -p "$out"
source bench/serve/server_common.sh
port=18184

for tokens in 0 "$k"; do
  start_server "$port" "$out/serve-spec-$tokens.log" --demo-size small --max-running 64 --speculative-tokens "$tokens"
  m=$(model_name "$port")
  for c in 1 8; do
    echo "== --speculative-tokens $tokens, $c stream(s)"
    "$loadgen" --port "$port" --model "$m" --concurrency "$c" --requests $((c * 6)) --max-tokens 128 --prompt-tokens 32 \
      --warmup 1 --label "spec $tokens c=$c" --json "$out/spec-$tokens-c$c.json" | grep -E "Output token throughput|Mean TPOT"
  done
  curl -fs "http://127.0.0.1:$port/metrics" | grep -E '^weft_spec_decode' >"$out/spec-$tokens.metrics" || true
  stop_server
done

python3 - "$out" "$k" <<'PY'
import json, os, re, sys
out, k = sys.argv[1], sys.argv[2]
def load(t, c):
    j = json.load(open(os.path.join(out, f"spec-{t}-c{c}.json")))
    return {"output_tokens_per_s": j["output_throughput"], "tpot_ms_mean": j["tpot_ms"]["mean"], "errors": j["failed"]}
metrics = open(os.path.join(out, f"spec-{k}.metrics")).read()
value = lambda name: float(re.search(rf"^weft_spec_decode_{name}{{[^}}]*}} (\S+)", metrics, re.M).group(1))
drafted, accepted = value("draft_tokens_total"), value("accepted_tokens_total")
summary = {"k": int(k), "draft_tokens": drafted, "accepted_tokens": accepted,
           "acceptance": accepted / drafted if drafted else 0.0}
for c in (1, 8):
    off, on = load(0, c), load(k, c)
    summary[f"c{c}"] = {"without": off, "with": on,
                        "throughput_ratio": on["output_tokens_per_s"] / off["output_tokens_per_s"]}
json.dump(summary, open(os.path.join(out, "speculative-summary.json"), "w"), indent=2)
for c in (1, 8):
    s = summary[f"c{c}"]
    print(f"{c} stream(s): {s['with']['output_tokens_per_s']:.0f} vs {s['without']['output_tokens_per_s']:.0f} tok/s "
          f"= {s['throughput_ratio']:.2f}x; TPOT {s['with']['tpot_ms_mean']:.2f} vs {s['without']['tpot_ms_mean']:.2f} ms")
print(f"drafts: {accepted:.0f} of {drafted:.0f} tokens accepted ({summary['acceptance']:.0%})")
PY
