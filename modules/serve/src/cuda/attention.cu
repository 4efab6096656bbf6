// Paged causal attention of the CUDA backend, for decode tokens and prompt
// chunks alike: every token of the step is one query at its own position,
// attending over positions 0..pos of its sequence through the block table
// (a prompt chunk's own keys were written to the cache by qkv_finish before
// this runs, so causality is just "keys up to my position").
//
// Pass 1 (attention_partial_kernel): one block of threads per (token, KV
// head, partition of attention_partition keys). It handles the `group` query
// heads that share the KV head, so each key and value is read once for all
// of them: scores in shared memory, the partition's max and sum of
// exponentials, and the unnormalized sum of exp(score - max) * value.
// Blocks whose partition starts past the token's position exit at once, so
// a launch may cover more partitions than a token needs (CUDA graphs fix
// the grid for a range of contexts).
// Pass 2 (attention_reduce_kernel): one block per (token, query head) merges
// the partitions (log-sum-exp rescaling) and writes the output row.
//
// Mirrors kernels::attend on the CPU (scores = q.k * scale, softmax, sum of
// p * v), with the normalization moved after the sum.
#include "cuda/cuda_check.hpp"
#include "cuda/device_common.cuh"
#include "cuda/launch.hpp"

#include <cstddef>

namespace weft::serve::cuda {

namespace {

using device::to_float;

constexpr int partial_threads = 128;
constexpr int partial_warps = partial_threads / 32;
constexpr int reduce_threads = 128;
constexpr int per_lane = max_head_dim / 32;

template <class T>
__global__ void __launch_bounds__(partial_threads)
    attention_partial_kernel(const float* __restrict__ qkv, int qkv_stride, const T* __restrict__ kv_layer,
                             step_meta m, attention_params p, float* __restrict__ partial) {
    const int t = blockIdx.x;
    const int kv_head = blockIdx.y;
    const int part = blockIdx.z;
    const int n = m.positions[t] + 1;
    const int begin = part * attention_partition;
    if (begin >= n) return; // the whole block: nothing of this token here
    const int len = min(attention_partition, n - begin);

    const int D = p.head_dim;
    const int group = p.n_head / p.n_head_kv;
    const int kv_dim = p.n_head_kv * D;
    const std::size_t block_stride = static_cast<std::size_t>(2) * p.block_size * kv_dim;
    const std::size_t value_offset = static_cast<std::size_t>(p.block_size) * kv_dim;
    const int* table = m.tables + m.table_offset[t];

    extern __shared__ float shared[];
    float* q_s = shared;                                 // [group][D]
    float* score_s = q_s + group * D;                    // [group][attention_partition]
    float* max_s = score_s + group * attention_partition; // [group]
    float* sum_s = max_s + group;                        // [group]

    // The group's query heads are consecutive: heads kv_head*group ... + group-1.
    const float* q = qkv + static_cast<std::size_t>(t) * qkv_stride + static_cast<std::size_t>(kv_head) * group * D;
    for (int i = threadIdx.x; i < group * D; i += blockDim.x) q_s[i] = q[i];
    __syncthreads();

    // Scores: one warp per key, lanes over the head's elements.
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    for (int jl = warp; jl < len; jl += partial_warps) {
        const int j = begin + jl;
        const T* k = kv_layer + static_cast<std::size_t>(table[j / p.block_size]) * block_stride +
                     static_cast<std::size_t>(j % p.block_size) * kv_dim + static_cast<std::size_t>(kv_head) * D;
        float kr[per_lane];
#pragma unroll
        for (int r = 0; r < per_lane; ++r) {
            const int d = lane + 32 * r;
            kr[r] = d < D ? to_float(k[d]) : 0.0f;
        }
        for (int g = 0; g < group; ++g) {
            float acc = 0.0f;
#pragma unroll
            for (int r = 0; r < per_lane; ++r) {
                const int d = lane + 32 * r;
                if (d < D) acc += q_s[g * D + d] * kr[r];
            }
            acc = device::warp_sum(acc);
            if (lane == 0) score_s[g * attention_partition + jl] = acc * p.scale;
        }
    }
    __syncthreads();

    // Per head: the partition's max, exponentials in place, their sum.
    for (int g = warp; g < group; g += partial_warps) {
        float* s = score_s + g * attention_partition;
        float mx = -INFINITY;
        for (int jl = lane; jl < len; jl += 32) mx = fmaxf(mx, s[jl]);
        mx = device::warp_max(mx);
        float sum = 0.0f;
        for (int jl = lane; jl < len; jl += 32) {
            const float e = expf(s[jl] - mx);
            s[jl] = e;
            sum += e;
        }
        sum = device::warp_sum(sum);
        if (lane == 0) {
            max_s[g] = mx;
            sum_s[g] = sum;
        }
    }
    __syncthreads();

    // Unnormalized output: thread per (head, element), keys in order.
    for (int idx = threadIdx.x; idx < group * D; idx += blockDim.x) {
        const int g = idx / D;
        const int d = idx % D;
        const float* s = score_s + g * attention_partition;
        float acc = 0.0f;
        for (int jl = 0; jl < len; ++jl) {
            const int j = begin + jl;
            const T* v = kv_layer + static_cast<std::size_t>(table[j / p.block_size]) * block_stride + value_offset +
                         static_cast<std::size_t>(j % p.block_size) * kv_dim + static_cast<std::size_t>(kv_head) * D;
            acc += s[jl] * to_float(v[d]);
        }
        const int h = kv_head * group + g;
        float* out = partial + ((static_cast<std::size_t>(t) * p.n_head + h) * p.n_parts + part) * (D + 2);
        out[2 + d] = acc;
        if (d == 0) {
            out[0] = max_s[g];
            out[1] = sum_s[g];
        }
    }
}

template <class T>
__global__ void __launch_bounds__(reduce_threads)
    attention_reduce_kernel(const float* __restrict__ partial, step_meta m, attention_params p, T* __restrict__ out) {
    const int t = blockIdx.x;
    const int h = blockIdx.y;
    const int D = p.head_dim;
    const int n = m.positions[t] + 1;
    const int needed = (n + attention_partition - 1) / attention_partition;
    const int parts = needed < p.n_parts ? needed : p.n_parts;
    const float* base = partial + (static_cast<std::size_t>(t) * p.n_head + h) * p.n_parts * (D + 2);

    float mx = -INFINITY;
    for (int i = 0; i < parts; ++i) mx = fmaxf(mx, base[static_cast<std::size_t>(i) * (D + 2)]);
    float denom = 0.0f;
    for (int i = 0; i < parts; ++i) {
        const float* b = base + static_cast<std::size_t>(i) * (D + 2);
        denom += b[1] * expf(b[0] - mx);
    }
    T* o = out + static_cast<std::size_t>(t) * p.n_head * D + static_cast<std::size_t>(h) * D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float acc = 0.0f;
        for (int i = 0; i < parts; ++i) {
            const float* b = base + static_cast<std::size_t>(i) * (D + 2);
            acc += b[2 + d] * expf(b[0] - mx);
        }
        o[d] = device::from_float<T>(acc / denom);
    }
}

template <class T>
void launch(const float* qkv, int qkv_stride, const void* kv_layer, const step_meta& m, const attention_params& p,
            float* partial, void* out, cudaStream_t stream) {
    const int group = p.n_head / p.n_head_kv;
    const dim3 grid1(static_cast<unsigned>(p.n_tokens), static_cast<unsigned>(p.n_head_kv),
                     static_cast<unsigned>(p.n_parts));
    const std::size_t shared = attention_shared_bytes(static_cast<std::size_t>(group), static_cast<std::size_t>(p.head_dim));
    attention_partial_kernel<T><<<grid1, partial_threads, shared, stream>>>(qkv, qkv_stride,
                                                                            static_cast<const T*>(kv_layer), m, p, partial);
    check_launch("attention kernel");
    const dim3 grid2(static_cast<unsigned>(p.n_tokens), static_cast<unsigned>(p.n_head));
    attention_reduce_kernel<T><<<grid2, reduce_threads, 0, stream>>>(partial, m, p, static_cast<T*>(out));
    check_launch("attention reduce kernel");
}

} // namespace

void attention(dtype t, const float* qkv, int qkv_stride, const void* kv_layer, const step_meta& m,
               const attention_params& p, float* partial, void* out, cudaStream_t stream) {
    if (p.n_tokens <= 0) return;
    if (t == dtype::bf16) {
        launch<__nv_bfloat16>(qkv, qkv_stride, kv_layer, m, p, partial, out, stream);
    } else {
        launch<float>(qkv, qkv_stride, kv_layer, m, p, partial, out, stream);
    }
}

void attention_prepare(dtype t, int group, int head_dim) {
    const std::size_t bytes = attention_shared_bytes(static_cast<std::size_t>(group), static_cast<std::size_t>(head_dim));
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    int optin = 0;
    check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
          "cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin)");
    if (bytes > static_cast<std::size_t>(optin)) {
        throw cuda_error("attention needs " + std::to_string(bytes) + " bytes of shared memory per block (" +
                             std::to_string(group) + " query heads per KV head, head_dim " + std::to_string(head_dim) +
                             "); the device allows " + std::to_string(optin),
                         0);
    }
    const int value = static_cast<int>(bytes);
    if (t == dtype::bf16) {
        check(cudaFuncSetAttribute(attention_partial_kernel<__nv_bfloat16>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   value),
              "cudaFuncSetAttribute(attention kernel)");
    } else {
        check(cudaFuncSetAttribute(attention_partial_kernel<float>, cudaFuncAttributeMaxDynamicSharedMemorySize, value),
              "cudaFuncSetAttribute(attention kernel)");
    }
}

} // namespace weft::serve::cuda
