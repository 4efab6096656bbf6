#!/usr/bin/env python3
"""The PyTorch peer of weft-cuda-bench: the same GGUF model (Llama
architecture, F32/F16/BF16 tensors) run by plain PyTorch in BF16 on the GPU,
for decode tokens/s at a few batch sizes.

Plain means: torch.nn.functional ops (linear, scaled_dot_product_attention,
silu), one contiguous KV cache tensor per layer, no torch.compile, no CUDA
graphs, no fused kernels beyond what those ops are. Greedy decoding, logits
to argmax on the GPU, prompts from the same formula weft-cuda-bench uses.

    python3 torch_peer.py --model weft-demo-1b-bf16.gguf --batches 1,64 --json torch.json

Reads the GGUF file with the `gguf` package when it is installed, else with
the small reader below (numpy only). No transformers dependency.
"""
import argparse
import json
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

# --- GGUF reading -----------------------------------------------------------------

GGUF_F32, GGUF_F16, GGUF_BF16 = 0, 1, 30


class GGUFFile:
    """Metadata (dict) and tensors (name -> (numpy raw array, ggml type, shape))."""

    SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

    def __init__(self, path):
        self.data = np.memmap(path, dtype=np.uint8, mode="r")
        self.pos = 0
        if bytes(self.data[0:4]) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        self.pos = 4
        version = self._read("<I")
        if version not in (2, 3):
            raise ValueError(f"{path}: GGUF version {version} is not supported")
        n_tensors = self._read("<Q")
        n_kv = self._read("<Q")
        self.meta = {}
        for _ in range(n_kv):
            key = self._string()
            self.meta[key] = self._value(self._read("<I"))
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            n_dims = self._read("<I")
            dims = [self._read("<Q") for _ in range(n_dims)]
            ggml_type = self._read("<I")
            offset = self._read("<Q")
            infos.append((name, dims, ggml_type, offset))
        alignment = int(self.meta.get("general.alignment", 32))
        start = (self.pos + alignment - 1) // alignment * alignment
        self.tensors = {}
        for name, dims, ggml_type, offset in infos:
            count = int(np.prod(dims))
            if ggml_type == GGUF_F32:
                dtype, size = np.float32, 4
            elif ggml_type in (GGUF_F16, GGUF_BF16):
                dtype, size = (np.float16 if ggml_type == GGUF_F16 else np.uint16), 2
            else:
                raise ValueError(f"tensor {name}: ggml type {ggml_type} is not supported here (use f32/f16/bf16)")
            raw = self.data[start + offset: start + offset + count * size].view(dtype)
            self.tensors[name] = (raw, ggml_type, tuple(reversed(dims)))  # ggml dims[0] is the row length

    def _read(self, fmt):
        size = struct.calcsize(fmt)
        value = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += size
        return value

    def _string(self):
        n = self._read("<Q")
        s = bytes(self.data[self.pos: self.pos + n]).decode("utf-8", errors="replace")
        self.pos += n
        return s

    def _value(self, vtype):
        if vtype in self.SCALAR:
            return self._read(self.SCALAR[vtype])
        if vtype == 8:
            return self._string()
        if vtype == 9:
            item = self._read("<I")
            n = self._read("<Q")
            return [self._value(item) for _ in range(n)]
        raise ValueError(f"unknown GGUF value type {vtype}")


def _numpy_view(raw, ggml_type):
    """The tensor's elements: float32, float16, or uint16 bit patterns for bf16."""
    raw = np.asarray(raw).reshape(-1)
    want = {GGUF_F32: np.float32, GGUF_F16: np.float16, GGUF_BF16: np.uint16}[ggml_type]
    return raw.view(want) if raw.dtype != want else raw


def _load_with_gguf_package(path):
    import gguf  # the llama.cpp package, when installed
    reader = gguf.GGUFReader(path)
    meta = {}
    for field in reader.fields.values():
        if len(field.types) != 1 or field.types[0] == gguf.GGUFValueType.ARRAY or not field.data:
            continue
        part = field.parts[field.data[0]]
        meta[field.name] = bytes(part).decode() if field.types[0] == gguf.GGUFValueType.STRING else part[0].item()
    tensors = {}
    for t in reader.tensors:
        ggml_type = int(t.tensor_type)
        if ggml_type not in (GGUF_F32, GGUF_F16, GGUF_BF16):
            raise ValueError(f"tensor {t.name}: ggml type {ggml_type} is not supported here (use f32/f16/bf16)")
        shape = tuple(int(d) for d in reversed(np.asarray(t.shape).tolist()))
        raw = _numpy_view(t.data, ggml_type)
        if raw.size != int(np.prod(shape)):
            raise ValueError(f"tensor {t.name}: {raw.size} elements for shape {shape}")
        tensors[t.name] = (raw, ggml_type, shape)
    return meta, tensors


def load_gguf(path):
    """(metadata, tensors, which reader): tensors map a name to (numpy elements, ggml type, shape)."""
    try:
        meta, tensors = _load_with_gguf_package(path)
        return meta, tensors, "gguf package"
    except ImportError:
        why = "gguf package not installed"
    except Exception as e:  # a gguf version this code does not know: fall back
        why = f"gguf package failed ({e})"
    f = GGUFFile(path)
    return f.meta, f.tensors, f"built-in reader ({why})"


def to_tensor(raw, ggml_type, shape, device, dtype):
    a = np.array(raw)  # a writable copy out of the read-only mapping
    t = torch.from_numpy(a.view(np.int16)).view(torch.bfloat16) if ggml_type == GGUF_BF16 else torch.from_numpy(a)
    return t.reshape(shape).to(device=device, dtype=dtype)


# --- The model ---------------------------------------------------------------------

class Llama:
    def __init__(self, meta, tensors, device, max_batch, max_len, dtype=torch.bfloat16):
        arch = meta.get("general.architecture", "llama")
        if arch != "llama":
            raise ValueError(f"architecture {arch}: only llama is supported by this peer")
        g = lambda k, d=None: meta.get(f"{arch}.{k}", d)  # noqa: E731
        self.n_embd = int(g("embedding_length"))
        self.n_layer = int(g("block_count"))
        self.n_head = int(g("attention.head_count"))
        self.n_head_kv = int(g("attention.head_count_kv", self.n_head))
        self.head_dim = self.n_embd // self.n_head
        self.rope_dim = int(g("rope.dimension_count", self.head_dim))
        self.eps = float(g("attention.layer_norm_rms_epsilon", 1e-5))
        base = float(g("rope.freq_base", 10000.0))
        self.dtype = dtype
        w = lambda name: to_tensor(*tensors[name], device, dtype)  # noqa: E731
        v = lambda name: to_tensor(*tensors[name], device, torch.float32)  # noqa: E731
        self.embd = w("token_embd.weight")
        self.n_vocab = self.embd.shape[0]
        self.output = w("output.weight") if "output.weight" in tensors else self.embd
        self.output_norm = v("output_norm.weight")
        self.layers = []
        for i in range(self.n_layer):
            p = f"blk.{i}."
            self.layers.append(dict(
                attn_norm=v(p + "attn_norm.weight"), wq=w(p + "attn_q.weight"), wk=w(p + "attn_k.weight"),
                wv=w(p + "attn_v.weight"), wo=w(p + "attn_output.weight"), ffn_norm=v(p + "ffn_norm.weight"),
                w_gate=w(p + "ffn_gate.weight"), w_up=w(p + "ffn_up.weight"), w_down=w(p + "ffn_down.weight")))
        half = self.rope_dim // 2
        inv_freq = base ** (-2.0 * torch.arange(half, dtype=torch.float64) / self.rope_dim)
        theta = torch.arange(max_len, dtype=torch.float64)[:, None] * inv_freq[None, :]
        self.cos = theta.cos().float().to(device)  # [pos][half]
        self.sin = theta.sin().float().to(device)
        shape = (max_batch, self.n_head_kv, max_len, self.head_dim)
        self.k_cache = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(self.n_layer)]
        self.v_cache = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(self.n_layer)]

    def rmsnorm(self, x, weight):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * weight).to(self.dtype)

    def rope(self, x, start):
        # x [B, heads, T, D]; llama.cpp's llama layout pairs (2i, 2i+1).
        T = x.shape[2]
        c = self.cos[start:start + T][None, None]
        s = self.sin[start:start + T][None, None]
        rot = x[..., :self.rope_dim].float().unflatten(-1, (-1, 2))
        x0, x1 = rot[..., 0], rot[..., 1]
        out = torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)
        return torch.cat((out.to(x.dtype), x[..., self.rope_dim:]), dim=-1)

    @torch.inference_mode()
    def forward(self, tokens, start):
        """tokens [B, T] at positions start..start+T-1 of every sequence; logits of the last [B, V]."""
        B, T = tokens.shape
        x = self.embd[tokens]  # [B, T, E]
        group = self.n_head // self.n_head_kv
        for i, L in enumerate(self.layers):
            h = self.rmsnorm(x, L["attn_norm"])
            q = F.linear(h, L["wq"]).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
            k = F.linear(h, L["wk"]).view(B, T, self.n_head_kv, self.head_dim).transpose(1, 2)
            v = F.linear(h, L["wv"]).view(B, T, self.n_head_kv, self.head_dim).transpose(1, 2)
            q, k = self.rope(q, start), self.rope(k, start)
            self.k_cache[i][:B, :, start:start + T] = k
            self.v_cache[i][:B, :, start:start + T] = v
            keys = self.k_cache[i][:B, :, :start + T].repeat_interleave(group, dim=1)
            values = self.v_cache[i][:B, :, :start + T].repeat_interleave(group, dim=1)
            # Causal over the chunk, all of the earlier cache visible.
            mask = None if T == 1 else torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(diagonal=start)
            att = attention(q, keys, values, mask)
            x = x + F.linear(att.transpose(1, 2).reshape(B, T, -1), L["wo"])
            h = self.rmsnorm(x, L["ffn_norm"])
            x = x + F.linear(F.silu(F.linear(h, L["w_gate"])) * F.linear(h, L["w_up"]), L["w_down"])
        last = self.rmsnorm(x[:, -1], self.output_norm)
        return F.linear(last, self.output).float()


def attention(q, k, v, mask):
    """softmax(q k^T / sqrt(d) masked) v: torch's fused op where it has one (2.0+)."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = (q.float() @ k.float().transpose(-1, -2)) / (q.shape[-1] ** 0.5)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return (scores.softmax(-1) @ v.float()).to(q.dtype)


def prompt(i, context, vocab):
    return [(i * 131 + t * 17 + 1) % vocab for t in range(context)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--json", default="torch_peer.json")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu to check the arithmetic without a GPU")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("torch_peer: no CUDA device visible to PyTorch", file=sys.stderr)
        return 1
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    batches = [int(b) for b in args.batches.split(",")]
    t0 = time.perf_counter()
    meta, tensors, reader = load_gguf(args.model)
    max_len = args.context + max(args.steps + 3, 32) + 8  # warm-up + timed steps, or the greedy check
    model = Llama(meta, tensors, device, max(batches), max_len, getattr(torch, args.dtype))
    sync()
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    report = {"model": args.model, "reader": reader, "torch": torch.__version__, "dtype": args.dtype,
              "device": name, "load_s": time.perf_counter() - t0, "decode": []}
    print(f"loaded {args.model} with the {reader} in {report['load_s']:.1f} s on {report['device']}")

    for B in batches:
        tokens = torch.tensor([prompt(i, args.context, model.n_vocab) for i in range(B)], device=device)
        nxt = model.forward(tokens, 0).argmax(-1)
        pos = args.context
        for _ in range(3):  # warm-up
            nxt = model.forward(nxt[:, None], pos).argmax(-1)
            pos += 1
        sync()
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            nxt = model.forward(nxt[:, None], pos).argmax(-1)
            nxt_host = nxt.tolist()  # the tokens on the host, as a server needs them
            times.append(time.perf_counter() - start)
            pos += 1
        del nxt_host
        step = sorted(times)[len(times) // 2]
        row = {"batch": B, "step_ms": step * 1e3, "tokens_per_s": B / step}
        report["decode"].append(row)
        print(f"batch {B:4}: {step * 1e3:8.3f} ms/step, {B / step:9.0f} tokens/s")

    # Greedy tokens of sequence 0's prompt, to compare with weft-cuda-bench's.
    tokens = torch.tensor([prompt(0, args.context, model.n_vocab)], device=device)
    nxt = model.forward(tokens, 0).argmax(-1)
    greedy = [int(nxt[0])]
    for s in range(31):
        nxt = model.forward(nxt[:, None], args.context + s).argmax(-1)
        greedy.append(int(nxt[0]))
    report["greedy_tokens"] = greedy
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
