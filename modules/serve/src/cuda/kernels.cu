// The element-wise kernels of the CUDA backend: embedding gather, RMSNorm,
// bias + RoPE + KV-cache write, SwiGLU, argmax. Each mirrors its CPU
// counterpart in src/kernels/ (same formulas, same order of float
// operations where it matters) and is tested against it.
#include "cuda/device_common.cuh"
#include "cuda/launch.hpp"
#include "cuda/cuda_check.hpp"

#include <climits>
#include <cstddef>

namespace weft::serve::cuda {

namespace {

using device::from_float;
using device::to_float;

constexpr int block_threads = 256;

template <class T>
__global__ void embed_kernel(const T* __restrict__ table, int n_embd, const int* __restrict__ tokens,
                             float* __restrict__ x) {
    const int t = blockIdx.x;
    const T* row = table + static_cast<std::size_t>(tokens[t]) * n_embd;
    float* out = x + static_cast<std::size_t>(t) * n_embd;
    for (int i = threadIdx.x; i < n_embd; i += blockDim.x) out[i] = to_float(row[i]);
}

template <class T>
__global__ void rmsnorm_kernel(const float* __restrict__ x, const float* __restrict__ weight, int n, float eps,
                               const int* __restrict__ rows, T* __restrict__ out) {
    __shared__ double scratch[32];
    const int r = blockIdx.x;
    const int src = rows != nullptr ? rows[r] : r;
    const float* xr = x + static_cast<std::size_t>(src) * n;
    // Double accumulation, as the CPU kernel.
    double sum = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const double v = xr[i];
        sum += v * v;
    }
    sum = device::block_sum(sum, scratch);
    const float scale = static_cast<float>(1.0 / sqrt(sum / static_cast<double>(n) + static_cast<double>(eps)));
    T* o = out + static_cast<std::size_t>(r) * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) o[i] = from_float<T>(xr[i] * scale * weight[i]);
}

template <class T>
__global__ void qkv_finish_kernel(float* __restrict__ qkv, const float* __restrict__ bias, rope_params r,
                                  step_meta m, T* __restrict__ kv_layer, int block_size) {
    extern __shared__ float trig[]; // cos[half], then sin[half]
    const int t = blockIdx.x;
    const int half = r.rope_dim / 2;
    const int q_dim = r.n_head * r.head_dim;
    const int kv_dim = r.n_head_kv * r.head_dim;
    const int width = q_dim + 2 * kv_dim;
    const int pos = m.positions[t];
    float* row = qkv + static_cast<std::size_t>(t) * width;

    // The CPU's rope_table: theta in double, cos/sin rounded to float.
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const double theta = static_cast<double>(pos) * r.inv_freq[i];
        trig[i] = static_cast<float>(cos(theta));
        trig[half + i] = static_cast<float>(sin(theta));
    }
    if (bias != nullptr) {
        for (int i = threadIdx.x; i < width; i += blockDim.x) row[i] += bias[i];
    }
    __syncthreads();

    // q heads then k heads are consecutive head_dim runs from the row's
    // start, so head h (of n_head + n_head_kv) starts at h * head_dim. Each
    // pair is rotated by exactly one thread.
    const int heads = r.n_head + r.n_head_kv;
    for (int idx = threadIdx.x; idx < heads * half; idx += blockDim.x) {
        const int h = idx / half;
        const int i = idx % half;
        float* v = row + static_cast<std::size_t>(h) * r.head_dim;
        const int a = r.halves ? i : 2 * i;
        const int b = r.halves ? i + half : 2 * i + 1;
        const float x0 = v[a];
        const float x1 = v[b];
        const float c = trig[i];
        const float s = trig[half + i];
        // Unfused, as the CPU computes it.
        v[a] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
        v[b] = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
    }
    __syncthreads();

    const int block = m.tables[m.table_offset[t] + pos / block_size];
    const int slot = pos % block_size;
    T* k = kv_layer + static_cast<std::size_t>(block) * 2 * block_size * kv_dim + static_cast<std::size_t>(slot) * kv_dim;
    T* v = k + static_cast<std::size_t>(block_size) * kv_dim;
    for (int j = threadIdx.x; j < kv_dim; j += blockDim.x) {
        k[j] = from_float<T>(row[q_dim + j]);
        v[j] = from_float<T>(row[q_dim + kv_dim + j]);
    }
}

template <class T>
__global__ void swiglu_kernel(const float* __restrict__ gate_up, int n_ff, std::size_t total, T* __restrict__ out) {
    const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
    for (std::size_t idx = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
         idx += stride) {
        const std::size_t t = idx / static_cast<std::size_t>(n_ff);
        const std::size_t i = idx % static_cast<std::size_t>(n_ff);
        const float g = gate_up[t * 2 * n_ff + i];
        const float u = gate_up[t * 2 * n_ff + n_ff + i];
        out[idx] = from_float<T>(g / (1.0f + expf(-g)) * u);
    }
}

/// (value, index) a beats b: larger value, or equal value and lower index.
/// NaN never beats anything, so it is never chosen while a number is there.
__device__ __forceinline__ bool beats(float va, int ia, float vb, int ib) {
    return va > vb || (va == vb && ia < ib);
}

__global__ void argmax_kernel(const float* __restrict__ logits, int n_cols, int* __restrict__ out) {
    __shared__ float best_value[32];
    __shared__ int best_index[32];
    const int r = blockIdx.x;
    const float* row = logits + static_cast<std::size_t>(r) * n_cols;
    float best = -INFINITY;
    int index = INT_MAX;
    for (int i = threadIdx.x; i < n_cols; i += blockDim.x) {
        if (beats(row[i], i, best, index)) {
            best = row[i];
            index = i;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(device::full_mask, best, o);
        const int oi = __shfl_xor_sync(device::full_mask, index, o);
        if (beats(ov, oi, best, index)) {
            best = ov;
            index = oi;
        }
    }
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    if (lane == 0) {
        best_value[warp] = best;
        best_index[warp] = index;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < static_cast<int>(blockDim.x) / 32; ++w) {
            if (beats(best_value[w], best_index[w], best, index)) {
                best = best_value[w];
                index = best_index[w];
            }
        }
        out[r] = index;
    }
}

} // namespace

void embed(dtype t, const void* table, int n_embd, const int* tokens, int n_tokens, float* x, cudaStream_t stream) {
    if (n_tokens <= 0) return;
    if (t == dtype::bf16) {
        embed_kernel<<<n_tokens, block_threads, 0, stream>>>(static_cast<const __nv_bfloat16*>(table), n_embd, tokens, x);
    } else {
        embed_kernel<<<n_tokens, block_threads, 0, stream>>>(static_cast<const float*>(table), n_embd, tokens, x);
    }
    check_launch("embed kernel");
}

void rmsnorm(dtype t, const float* x, const float* weight, int n, float eps, const int* rows, int n_rows, void* out,
             cudaStream_t stream) {
    if (n_rows <= 0) return;
    if (t == dtype::bf16) {
        rmsnorm_kernel<<<n_rows, block_threads, 0, stream>>>(x, weight, n, eps, rows, static_cast<__nv_bfloat16*>(out));
    } else {
        rmsnorm_kernel<<<n_rows, block_threads, 0, stream>>>(x, weight, n, eps, rows, static_cast<float*>(out));
    }
    check_launch("rmsnorm kernel");
}

void qkv_finish(dtype t, float* qkv, const float* bias, int n_tokens, const rope_params& r, const step_meta& m,
                void* kv_layer, int block_size, cudaStream_t stream) {
    if (n_tokens <= 0) return;
    const std::size_t shared = static_cast<std::size_t>(r.rope_dim) * sizeof(float); // cos + sin, rope_dim/2 each
    if (t == dtype::bf16) {
        qkv_finish_kernel<<<n_tokens, block_threads, shared, stream>>>(qkv, bias, r, m,
                                                                       static_cast<__nv_bfloat16*>(kv_layer), block_size);
    } else {
        qkv_finish_kernel<<<n_tokens, block_threads, shared, stream>>>(qkv, bias, r, m, static_cast<float*>(kv_layer),
                                                                       block_size);
    }
    check_launch("qkv (bias, rope, kv write) kernel");
}

void swiglu(dtype t, const float* gate_up, int n_ff, int n_tokens, void* out, cudaStream_t stream) {
    if (n_tokens <= 0) return;
    const std::size_t total = static_cast<std::size_t>(n_tokens) * static_cast<std::size_t>(n_ff);
    const std::size_t wanted = (total + block_threads - 1) / block_threads;
    const unsigned blocks = static_cast<unsigned>(wanted < 65536 ? wanted : 65536);
    if (t == dtype::bf16) {
        swiglu_kernel<<<blocks, block_threads, 0, stream>>>(gate_up, n_ff, total, static_cast<__nv_bfloat16*>(out));
    } else {
        swiglu_kernel<<<blocks, block_threads, 0, stream>>>(gate_up, n_ff, total, static_cast<float*>(out));
    }
    check_launch("swiglu kernel");
}

void argmax_rows(const float* logits, int n_rows, int n_cols, int* out, cudaStream_t stream) {
    if (n_rows <= 0) return;
    argmax_kernel<<<n_rows, block_threads, 0, stream>>>(logits, n_cols, out);
    check_launch("argmax kernel");
}

} // namespace weft::serve::cuda
