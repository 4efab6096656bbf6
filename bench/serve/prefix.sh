#!/usr/bin/env bash
# Prefix caching, measured against the same server without it, in one run:
# 16 concurrent streams on the small demo model, every prompt a shared
# "system prompt" of SHARED words (about 3 tokens each with the demo
# tokenizer) followed by 16 words of its own, 32 tokens out.
#   bash bench/serve/prefix.sh [OUT_DIR] [SHARED]   (default build/bench-serve, 300)
# Starts and stops its servers on loopback port 18183; writes each run's
# JSON and prefix-summary.json to OUT_DIR. Takes about a minute.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

out="${1:-build/bench-serve}"
shared="${2:-300}"
mkdir -p "$out"
source bench/serve/server_common.sh
port=18183

for mode in prefix-caching no-prefix-caching; do
  start_server "$port" "$out/serve-$mode.log" --demo-size small --max-running 64 "--$mode"
  m=$(model_name "$port")
  echo "== --$mode"
  "$loadgen" --port "$port" --model "$m" --concurrency 16 --requests 64 --max-tokens 32 --prompt-tokens 16 \
    --shared-prefix-tokens "$shared" --warmup 1 --label "$mode" --json "$out/prefix-$mode.json" |
    grep -E "Request throughput|Median TTFT|P99 TTFT|Mean TPOT"
  curl -fs "http://127.0.0.1:$port/metrics" | grep -E '^weft_(prompt_tokens_total|prefix_cache_hits_total)' >"$out/prefix-$mode.metrics"
  stop_server
done

python3 - "$out" <<'PY'
import json, os, re, sys
out = sys.argv[1]
def run(mode):
    j = json.load(open(os.path.join(out, f"prefix-{mode}.json")))
    metrics = open(os.path.join(out, f"prefix-{mode}.metrics")).read()
    value = lambda name: float(re.search(rf"^weft_{name}{{[^}}]*}} (\S+)", metrics, re.M).group(1))
    return {"requests_per_s": j["request_throughput"], "output_tokens_per_s": j["output_throughput"],
            "ttft_ms_p50": j["ttft_ms"]["median"], "ttft_ms_p99": j["ttft_ms"]["p99"],
            "tpot_ms_mean": j["tpot_ms"]["mean"], "errors": j["failed"],
            "prompt_tokens": value("prompt_tokens_total"), "cached_prompt_tokens": value("prefix_cache_hits_total")}
on, off = run("prefix-caching"), run("no-prefix-caching")
summary = {"with": on, "without": off,
           "request_throughput_ratio": on["requests_per_s"] / off["requests_per_s"],
           "ttft_p50_ratio": off["ttft_ms_p50"] / on["ttft_ms_p50"]}
json.dump(summary, open(os.path.join(out, "prefix-summary.json"), "w"), indent=2)
print(f"prefix caching: {on['requests_per_s']:.2f} vs {off['requests_per_s']:.2f} req/s "
      f"= {summary['request_throughput_ratio']:.1f}x; TTFT p50 {on['ttft_ms_p50']:.0f} vs {off['ttft_ms_p50']:.0f} ms; "
      f"{on['cached_prompt_tokens']:.0f} of {on['prompt_tokens']:.0f} prompt tokens cached; errors {on['errors']} / {off['errors']}")
PY
