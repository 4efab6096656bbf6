// Internal: the element-wise and attention kernels of the CPU forward pass
// (the matrix multiply is in matmul.hpp). Each works on one token (or one
// token and one KV head) at a time, always in the same order, so its result
// for a token never depends on what else is in the batch.
#pragma once

#include <weft/serve/model_config.hpp>
#include <weft/serve/token.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace weft::serve::kernels {

/// out = x / sqrt(mean(x^2) + eps) * weight, over n elements (out may be x).
void rmsnorm(const float* x, const float* weight, float* out, std::size_t n, float eps) noexcept;
/// rmsnorm of `rows` consecutive rows of n floats (out[r * n] from x[r * n];
/// out may be x), each the bits rmsnorm gives it alone.
void rmsnorm_rows(const float* x, const float* weight, float* out, std::size_t rows, std::size_t n,
                  float eps) noexcept;

/// The largest of x[0, n) (-infinity when n is 0); NaN when any element is NaN.
float max_or_nan(const float* x, std::size_t n) noexcept;

/// The index of the first element of x[0, n) equal to `value`, n when none
/// is (a NaN value equals nothing). With max_or_nan's result it is the
/// greedy token: the lowest id among the largest logits.
std::size_t find_first(const float* x, std::size_t n, float value) noexcept;

/// out[i] = e^((x[i] - max) * scale), 0 where x[i] is -infinity (max is at
/// least every x[i], scale > 0): unnormalized softmax weights. Relative error
/// ~1e-7; results below ~1.6e-38 come out as about that.
void exp_weights(const float* x, float max, float scale, float* out, std::size_t n) noexcept;

/// out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + e^-g) (out may alias gate).
void swiglu(const float* gate, const float* up, float* out, std::size_t n) noexcept;

/// x[i] += y[i].
void add_inplace(float* x, const float* y, std::size_t n) noexcept;

/// Rotary position embedding tables: cos/sin of position * base^(-2i/rope_dim)
/// for i < rope_dim/2, computed in double and cached per position.
class rope_table {
public:
    rope_table(std::size_t rope_dim, float freq_base, rope_style style);
    /// Rotates the first rope_dim elements of each of `heads` heads of
    /// `head_dim` floats at `x`, for position `pos`.
    void apply(float* x, std::size_t heads, std::size_t head_dim, std::size_t pos);
    /// Makes positions < n available (apply grows the table itself; call this
    /// before using the table from several threads).
    void reserve(std::size_t n);

private:
    std::size_t m_half;
    double m_base;
    rope_style m_style;
    std::vector<float> m_cos, m_sin; // [position][m_half]
};

/// Where one query token reads its keys and values: a sequence's block
/// table. `E` is the cache's element type: float, or std::uint16_t holding
/// F16 bits.
template <class E>
struct basic_attention_source {
    const E* const* key_blocks;   ///< per block: [n_head_kv][block_size][head_dim]
    const E* const* value_blocks; ///< per block: [n_head_kv][block_size][head_dim]
    std::size_t block_size;
};
using attention_source = basic_attention_source<float>;
using attention_source_f16 = basic_attention_source<std::uint16_t>;

/// Causal attention of one token at position `pos` for the query heads of
/// one KV head: q holds `group` heads of `head_dim` floats (consecutive),
/// attends over positions 0..pos of KV head `kv_head`; writes `group` heads to
/// out. `scratch` must hold attend_scratch_size(group, pos) floats. Scores,
/// softmax and the weighted sum are computed in float whatever the cache's
/// type.
void attend(const float* q, std::size_t group, std::size_t head_dim, std::size_t kv_head, std::size_t pos,
            const attention_source& src, float* out, float* scratch) noexcept;
/// The floats `attend` needs in `scratch` at position `pos`: a row of scores
/// per query head, each padded to a multiple of eight positions, so that the
/// SIMD path reads and writes whole vectors at a row's end.
constexpr std::size_t attend_scratch_size(std::size_t group, std::size_t pos) noexcept {
    return group * ((pos + 8) & ~std::size_t{7});
}
void attend(const float* q, std::size_t group, std::size_t head_dim, std::size_t kv_head, std::size_t pos,
            const attention_source_f16& src, float* out, float* scratch) noexcept;

/// `attend` for KV heads [kv_begin, kv_end) of one token together: q holds
/// their query heads in order (`group` per KV head, each head_dim floats),
/// and out receives them in the same order. Each KV head's heads get bitwise
/// what `attend` gives them; the softmax takes all the rows in lockstep,
/// which hides more of its latency in a short context. `scratch` must hold
/// attend_heads_scratch_size(kv_end - kv_begin, group, pos) floats.
void attend_heads(const float* q, std::size_t group, std::size_t head_dim, std::size_t kv_begin, std::size_t kv_end,
                  std::size_t pos, const attention_source& src, float* out, float* scratch) noexcept;
void attend_heads(const float* q, std::size_t group, std::size_t head_dim, std::size_t kv_begin, std::size_t kv_end,
                  std::size_t pos, const attention_source_f16& src, float* out, float* scratch) noexcept;
/// The floats `attend_heads` needs in `scratch`.
constexpr std::size_t attend_heads_scratch_size(std::size_t kv_heads, std::size_t group, std::size_t pos) noexcept {
    return kv_heads * attend_scratch_size(group, pos);
}

/// `attend` for `tokens` consecutive positions first_pos, first_pos + 1, ...
/// of one sequence (a prompt chunk): token t's query heads start at
/// q + t * q_stride and its output at out + t * out_stride. Each token gets
/// bitwise what `attend` gives it alone; the cache's keys and values are read
/// once for all the tokens rather than once per token. `scratch` must hold
/// attend_rows_scratch_size(tokens, group, first_pos) floats.
void attend_rows(const float* q, std::size_t q_stride, std::size_t tokens, std::size_t group, std::size_t head_dim,
                 std::size_t kv_head, std::size_t first_pos, const attention_source& src, float* out,
                 std::size_t out_stride, float* scratch) noexcept;
void attend_rows(const float* q, std::size_t q_stride, std::size_t tokens, std::size_t group, std::size_t head_dim,
                 std::size_t kv_head, std::size_t first_pos, const attention_source_f16& src, float* out,
                 std::size_t out_stride, float* scratch) noexcept;
/// The floats `attend_rows` needs in `scratch`: every token's rows of scores
/// as long as the last token's, padded to a multiple of sixteen positions.
constexpr std::size_t attend_rows_scratch_size(std::size_t tokens, std::size_t group, std::size_t first_pos) noexcept {
    return tokens * group * ((first_pos + tokens + 15) & ~std::size_t{15});
}

/// Dot product of n floats, in a fixed order (SIMD when available).
float dot(const float* a, const float* b, std::size_t n) noexcept;

} // namespace weft::serve::kernels
