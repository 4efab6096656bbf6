// Internal: host-side launchers of the CUDA backend's own kernels
// (kernels.cu, attention.cu). Each enqueues on `stream` and checks the launch
// (cuda_error); none synchronizes. Buffers are device pointers; "dtype"
// buffers hold bf16 or f32 elements as `t` says. Every array is row-major.
//
// The step's metadata (step_meta) is per token: its id, its position, and
// where its sequence's block table starts in the concatenated tables; plus
// the token index of each logits row. A token at position p stores its key
// and value in slot p % block_size of block tables[table_offset + p /
// block_size], and attends over positions 0..p of the same table.
//
// KV cache layout (one layer, as kv_cache.hpp on the CPU): block b holds
// keys [block_size][kv_dim] then values [block_size][kv_dim], at element
// offset b * 2 * block_size * kv_dim of the layer.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

namespace weft::serve::cuda {

enum class dtype : unsigned char { bf16, f32 };

constexpr std::size_t dtype_size(dtype t) noexcept { return t == dtype::bf16 ? 2 : 4; }

/// Keys per attention partition (one block of threads); longer contexts are
/// split over several partitions and merged by a second kernel.
inline constexpr int attention_partition = 256;
/// Largest head_dim the attention kernel takes (8 elements per lane).
inline constexpr int max_head_dim = 256;

struct step_meta {
    const int* tokens = nullptr;       ///< [tokens]
    const int* positions = nullptr;    ///< [tokens]
    const int* table_offset = nullptr; ///< [tokens]
    const int* tables = nullptr;       ///< concatenated block tables
    const int* logit_rows = nullptr;   ///< [rows]: token index of each logits row
};

struct rope_params {
    int n_head = 0;
    int n_head_kv = 0;
    int head_dim = 0;
    int rope_dim = 0;      ///< rotated elements per head, even, <= head_dim
    bool halves = false;   ///< pairs (i, i + rope_dim/2) instead of (2i, 2i+1)
    const double* inv_freq = nullptr; ///< device [rope_dim / 2]: base^(-2i/rope_dim)
};

struct attention_params {
    int n_tokens = 0;
    int n_head = 0;
    int n_head_kv = 0;
    int head_dim = 0;
    int block_size = 0;
    int n_parts = 0;       ///< partitions launched per token (>= what its context needs)
    float scale = 1.0f;    ///< 1 / sqrt(head_dim)
};

/// x[t][i] = table[tokens[t]][i] as float, for t < n_tokens, i < n_embd.
void embed(dtype t, const void* table, int n_embd, const int* tokens, int n_tokens, float* x, cudaStream_t stream);

/// out[r] = x[src] / sqrt(mean(x[src]^2) + eps) * weight (src = rows[r], or
/// r when rows is null), for r < n_rows; rows of n floats; out as `t`.
void rmsnorm(dtype t, const float* x, const float* weight, int n, float eps, const int* rows, int n_rows, void* out,
             cudaStream_t stream);

/// On each token's row of qkv ([n_tokens][q_dim + 2 kv_dim] floats: q, k, v):
/// adds `bias` (when not null), rotates q's and k's heads for the token's
/// position, and stores k and v (as `t`) into the token's cache slot of
/// `kv_layer`. q stays in qkv, rotated.
void qkv_finish(dtype t, float* qkv, const float* bias, int n_tokens, const rope_params& r, const step_meta& m,
                void* kv_layer, int block_size, cudaStream_t stream);

/// Causal attention of every token over its sequence's cache, for every
/// head: out[t][h * head_dim + d] (as `t`), reading q from qkv (row stride
/// qkv_stride floats). `partial` is scratch of attention_scratch_floats().
void attention(dtype t, const float* qkv, int qkv_stride, const void* kv_layer, const step_meta& m,
               const attention_params& p, float* partial, void* out, cudaStream_t stream);

/// Scratch floats attention() needs.
constexpr std::size_t attention_scratch_floats(std::size_t n_tokens, std::size_t n_head, std::size_t head_dim,
                                               std::size_t n_parts) noexcept {
    return n_tokens * n_head * n_parts * (head_dim + 2);
}

/// Dynamic shared memory one attention block uses.
constexpr std::size_t attention_shared_bytes(std::size_t group, std::size_t head_dim) noexcept {
    return (group * head_dim + group * attention_partition + 2 * group) * sizeof(float);
}

/// Allows attention blocks of `group` query heads per KV head to use the
/// shared memory they need (past the default 48 KiB where the device allows);
/// cuda_error when the device cannot give that much.
void attention_prepare(dtype t, int group, int head_dim);

/// out[t][i] = silu(gate_up[t][i]) * gate_up[t][n_ff + i] (as `t`), for
/// rows of 2 * n_ff floats (gate then up).
void swiglu(dtype t, const float* gate_up, int n_ff, int n_tokens, void* out, cudaStream_t stream);

/// out[r] = the index of the largest of logits[r][0 .. n_cols) (ties: the
/// lowest index; NaN never wins; INT_MAX when the row is all NaN).
void argmax_rows(const float* logits, int n_rows, int n_cols, int* out, cudaStream_t stream);

} // namespace weft::serve::cuda
