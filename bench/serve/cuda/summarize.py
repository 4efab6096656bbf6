#!/usr/bin/env python3
"""Merges what run_on_device.sh left in OUT_DIR (stages.jsonl, cuda_bench.json,
torch_peer.json, loadgen.json) into summary.json and summary.md: the
numbers the CUDA issue asks for, each next to its goal.

    python3 bench/serve/cuda/summarize.py OUT_DIR
"""
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "build/gpu-results"
    stages = []
    try:
        with open(os.path.join(out_dir, "stages.jsonl")) as f:
            stages = [json.loads(line) for line in f if line.strip()]
    except OSError:
        pass
    bench = load(os.path.join(out_dir, "cuda_bench.json")) or {}
    torch = load(os.path.join(out_dir, "torch_peer.json")) or {}
    loadgen = load(os.path.join(out_dir, "loadgen.json")) or {}

    weft_tps = {r["batch"]: r["tokens_per_s"] for r in bench.get("decode", [])}
    torch_tps = {r["batch"]: r["tokens_per_s"] for r in torch.get("decode", [])}
    summary = {"stages": stages}
    rows = []

    def row(what, value, goal="", ok=None):
        rows.append((what, value, goal, "" if ok is None else ("yes" if ok else "NO")))

    for s in stages:
        if s["stage"] in ("tests", "memcheck", "racecheck", "build"):
            status = "passed" if s["rc"] == 0 else ("not run: " + s.get("note", "") if s["rc"] < 0 else
                                                   "skipped: no GPU (exit 77)" if s["rc"] == 77 else f"exit {s['rc']}")
            row(f"{s['stage']}", status, "exit 0", s["rc"] == 0 if s["rc"] >= 0 else None)

    if bench:
        bw = bench.get("copy_bandwidth_gb_s")
        row("device copy bandwidth (read + write)", f"{bw:.0f} GB/s" if bw else "-")
        frac = bench.get("fraction_of_floor")
        if frac is not None:
            row("decode step, batch 1", f"{bench['decode_step_ms']:.3f} ms; floor {bench['floor_ms']:.3f} ms "
                f"({100 * frac:.0f}% of the floor's speed)", ">= 70%", frac >= 0.7)
        summary["fraction_of_floor"] = frac
        for b in sorted(weft_tps):
            row(f"weft decode tokens/s, batch {b}", f"{weft_tps[b]:.0f}")
        if "prefill_tokens_per_s" in bench:
            row("weft prefill tokens/s (512-token prompt)", f"{bench['prefill_tokens_per_s']:.0f}")
        if "bf16_greedy_agreement_with_f32" in bench:
            row("bf16 greedy tokens equal to f32 precision's", f"{bench['bf16_greedy_agreement_with_f32']} of 32")
    for b in (1, 64):
        if b in weft_tps and b in torch_tps:
            ratio = weft_tps[b] / torch_tps[b]
            summary[f"speedup_vs_torch_batch_{b}"] = ratio
            row(f"weft vs PyTorch tokens/s, batch {b}", f"{weft_tps[b]:.0f} vs {torch_tps[b]:.0f} ({ratio:.2f}x)",
                ">= 2x", ratio >= 2.0)
    if bench.get("greedy_tokens") and torch.get("greedy_tokens"):
        a, b = bench["greedy_tokens"], torch["greedy_tokens"]
        same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        row("weft and PyTorch greedy tokens equal (both bf16)", f"first {same} of {min(len(a), len(b))}")
    if loadgen:
        failed = loadgen.get("failed", 0)
        row("loadgen: 256 streams, requests completed / failed", f"{loadgen.get('completed')} / {failed}",
            "0 failed", failed == 0)
        for key, name in (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT")):
            d = loadgen.get(key) or {}
            if d:
                row(f"loadgen {name} p50 / p90 / p99", f"{d.get('median', 0):.1f} / {d.get('p90', 0):.1f} / "
                    f"{d.get('p99', 0):.1f} ms")
        row("loadgen output tokens/s", f"{loadgen.get('output_throughput', 0):.0f}")

    summary["table"] = [{"what": w, "value": v, "goal": g, "met": m} for w, v, g, m in rows]
    summary["cuda_bench"] = bench
    summary["torch_peer"] = torch
    summary["loadgen"] = {k: v for k, v in loadgen.items() if k != "per_request"}
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write("| what | value | goal | met |\n|---|---|---|---|\n")
        for w, v, g, m in rows:
            f.write(f"| {w} | {v} | {g} | {m} |\n")
    print(f"wrote {out_dir}/summary.json and summary.md ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
