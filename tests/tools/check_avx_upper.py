#!/usr/bin/env python3
"""Fails when a function that uses 256- or 512-bit registers jumps or calls
into a function that does not, with no vzeroupper on the way.

Code built without AVX (most of the project: x86-64's baseline) that runs
while the upper halves of the vector registers are dirty pays on every SSE
instruction on many Intel cores, until some AVX function's exit clears them.
GCC clears them before a call from a function compiled for AVX, but not
before a tail call (a jmp): one such jump in the F16 KV store cost the tiny
model's serving a third of its throughput.

    check_avx_upper.py [--objdump PATH] BINARY
"""
import re
import subprocess
import sys


def functions(objdump, path):
    out = subprocess.run([objdump, "-d", "--no-show-raw-insn", "-C", path], check=True, capture_output=True,
                         text=True).stdout
    funcs, cur = [], None
    for line in out.splitlines():
        m = re.match(r"^([0-9a-f]+) <(.*)>:$", line)
        if m:
            cur = {"start": int(m.group(1), 16), "name": m.group(2), "ins": []}
            funcs.append(cur)
            continue
        m = re.match(r"^\s+([0-9a-f]+):\s+(.*)$", line)
        if cur is not None and m:
            cur["ins"].append((int(m.group(1), 16), m.group(2).strip()))
    return [f for f in funcs if f["ins"]]


def main():
    args = sys.argv[1:]
    objdump = "objdump"
    if len(args) == 3 and args[0] == "--objdump":
        objdump, args = args[1], args[2:]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    funcs = functions(objdump, args[0])
    by_start = {}
    for f in funcs:
        f["wide"] = any("%ymm" in t or "%zmm" in t for _, t in f["ins"])
        by_start[f["start"]] = f
    bad = []
    for f in funcs:
        if not f["wide"]:
            continue
        for k, (_, text) in enumerate(f["ins"]):
            m = re.match(r"^(jmp|call)\s+([0-9a-f]+) <", text)
            if not m:
                continue
            target = by_start.get(int(m.group(2), 16))
            if target is None or target is f or target["wide"]:
                continue
            # glibc picks AVX versions of these at run time.
            if re.match(r"^(memcpy|memmove|memset)@plt$", target["name"]):
                continue
            # Dirty when, going back in address order from here, a 256- or
            # 512-bit instruction comes before a vzeroupper, the function's
            # start (callers clear the state before a call) or code that
            # does not fall through to here (after a jmp or ret, this is a
            # block reached by jumps only, not followed). A lint, not a proof.
            cleared = True
            for _, before in reversed(f["ins"][:k]):
                if "vzeroupper" in before or "vzeroall" in before:
                    break
                if re.match(r"^(jmp|ret)\b", before):
                    break
                if "%ymm" in before or "%zmm" in before:
                    cleared = False
                    break
            if not cleared:
                bad.append(f"{f['name'][:120]}\n    {m.group(1)} to {target['name'][:120]} with the upper halves dirty")
    for b in bad:
        print(b)
    print(f"{len(bad)} transition(s) found in {len(funcs)} functions")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
