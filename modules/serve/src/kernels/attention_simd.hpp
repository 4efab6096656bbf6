// Internal: the SIMD building blocks that the CPU attention kernels share
// (x86-64 only): loads of cache elements as floats, the 16-lane weighted
// sum of values that both the decode path and the prompt-chunk path
// continue block by block, a paged cache's rows, and the entry points of
// the files that hold each path:
//   attention.cpp          scalar reference and the public entry points
//   attention_softmax.cpp  the softmax rows on 8 and 16 lanes
//   attention_decode.cpp   one token at a time (attend_avx2, attend_heads_avx2)
//   attention_rows.cpp     a prompt chunk's consecutive positions (attend_rows_avx512)
// Every path gives a token bitwise the same output: see each file.
#pragma once

#if defined(__x86_64__)

// GCC 12's own AVX-512 headers trip its uninitialised-use warnings.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include "kernels/kernels.hpp"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace weft::serve::kernels::attention_simd {

inline const bool has_avx512vl = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
inline const bool has_avx512f = __builtin_cpu_supports("avx512f");

__attribute__((target("avx2,fma"))) inline float hsum_avx2(__m256 acc) noexcept {
    const __m128 lo = _mm256_castps256_ps128(acc);
    const __m128 hi = _mm256_extractf128_ps(acc, 1);
    __m128 r = _mm_add_ps(lo, hi);
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_shuffle_ps(r, r, 0x55));
    return _mm_cvtss_f32(r);
}

/// Eight consecutive cache elements as floats.
__attribute__((target("avx2,fma,f16c"))) inline __m256 load8(const float* p) noexcept { return _mm256_loadu_ps(p); }
__attribute__((target("avx2,fma,f16c"))) inline __m256 load8(const std::uint16_t* p) noexcept {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

/// The maximum of the eight lanes, in every lane.
__attribute__((target("avx2,fma"))) inline __m256 hmax_avx2(__m256 v) noexcept {
    v = _mm256_max_ps(v, _mm256_permute2f128_ps(v, v, 0x01));
    v = _mm256_max_ps(v, _mm256_shuffle_ps(v, v, 0x4E));
    return _mm256_max_ps(v, _mm256_shuffle_ps(v, v, 0xB1));
}

/// Sixteen consecutive cache elements as floats.
__attribute__((target("avx512f,avx2,fma,f16c"))) inline __m512 load16(const float* p) noexcept {
    return _mm512_loadu_ps(p);
}
__attribute__((target("avx512f,avx2,fma,f16c"))) inline __m512 load16(const std::uint16_t* p) noexcept {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

/// For each of `Rows` runs of value rows r and each of its `G` query heads
/// (weights p[r * G + h], output out[r * G + h]): out[.][0 .. 16*Vecs) +=
/// the sum over `count` positions i (ascending) of p[.][i] * v_i, v_i the
/// 16 * Vecs values at rows[r] + i * head_dim, as one FMA chain per element
/// continued from out[.]: a sum split into runs of positions (a cache block
/// each) is bitwise the sum in one pass (floats stored and loaded unchanged,
/// the same FMAs in the same order), and bitwise weighted_sum_avx2's in
/// 8-lane vectors. With 8-lane vectors the weighted sum reached about a
/// quarter of the 16-lane FMA peak. Rows = 2 (two KV heads of a token)
/// interleaves two heads' chains, which a short context needs: a chain of a
/// few positions is mostly its FMAs' latency.
template <std::size_t Vecs, std::size_t G, std::size_t Rows, class E>
__attribute__((target("avx512f,avx2,fma,f16c"))) void weighted_continue_avx512(const float* const* p,
                                                                               std::size_t count,
                                                                               const E* const* rows,
                                                                               std::size_t head_dim,
                                                                               float* const* out) noexcept {
    __m512 acc[Rows * G][Vecs];
#pragma GCC unroll 8
    for (std::size_t h = 0; h < Rows * G; ++h) {
#pragma GCC unroll 8
        for (std::size_t d = 0; d < Vecs; ++d) acc[h][d] = _mm512_loadu_ps(out[h] + 16 * d);
    }
    for (std::size_t i = 0; i < count; ++i) {
        const std::size_t at = i * head_dim;
        __m512 v[Rows][Vecs];
#pragma GCC unroll 2
        for (std::size_t r = 0; r < Rows; ++r) {
#pragma GCC unroll 8
            for (std::size_t d = 0; d < Vecs; ++d) v[r][d] = load16(rows[r] + at + 16 * d);
        }
#pragma GCC unroll 4
        for (std::size_t h = 0; h < G; ++h) {
#pragma GCC unroll 2
            for (std::size_t r = 0; r < Rows; ++r) {
                __m512(&a)[Vecs] = acc[r * G + h];
                const __m512 w = _mm512_set1_ps(p[r * G + h][i]);
#pragma GCC unroll 8
                for (std::size_t d = 0; d < Vecs; ++d) a[d] = _mm512_fmadd_ps(w, v[r][d], a[d]);
            }
        }
    }
#pragma GCC unroll 8
    for (std::size_t h = 0; h < Rows * G; ++h) {
#pragma GCC unroll 8
        for (std::size_t d = 0; d < Vecs; ++d) _mm512_storeu_ps(out[h] + 16 * d, acc[h][d]);
    }
}

/// weighted_continue_avx512 over whole rows of the head, `G` heads on each
/// of `Rows` runs of value rows. Always inlined: a call of its own cost
/// `tiny`'s attention (a few positions a block) 8%.
template <std::size_t G, std::size_t Rows, class E>
__attribute__((target("avx512f,avx2,fma,f16c"), always_inline)) inline void weighted_run_avx512(
    const float* const* p, std::size_t count, const E* const* rows, std::size_t head_dim, float* const* out) noexcept {
    float* at[Rows * G];
    const E* from[Rows];
    for (std::size_t d0 = 0; d0 < head_dim / 16;) {
        const std::size_t left = head_dim / 16 - d0;
        for (std::size_t h = 0; h < Rows * G; ++h) at[h] = out[h] + 16 * d0;
        for (std::size_t r = 0; r < Rows; ++r) from[r] = rows[r] + 16 * d0;
        if (left >= 4) {
            weighted_continue_avx512<4, G, Rows>(p, count, from, head_dim, at);
            d0 += 4;
        } else if (left >= 2) {
            weighted_continue_avx512<2, G, Rows>(p, count, from, head_dim, at);
            d0 += 2;
        } else {
            weighted_continue_avx512<1, G, Rows>(p, count, from, head_dim, at);
            d0 += 1;
        }
    }
}

/// weighted_run_avx512 over `n` query rows, each its own weights p[r] and
/// output o[r] (any token's, any head's), four, then two, then one at a
/// time sharing each read of the `count` value rows at `row`.
template <class E>
__attribute__((target("avx512f,avx2,fma,f16c"))) void weighted_rows_avx512(const float* const* p, float* const* o,
                                                                           std::size_t n, std::size_t count,
                                                                           const E* row,
                                                                           std::size_t head_dim) noexcept {
    std::size_t r = 0;
    for (; r + 4 <= n; r += 4) weighted_run_avx512<4, 1>(p + r, count, &row, head_dim, o + r);
    if (r + 2 <= n) {
        weighted_run_avx512<2, 1>(p + r, count, &row, head_dim, o + r);
        r += 2;
    }
    if (r < n) weighted_run_avx512<1, 1>(p + r, count, &row, head_dim, o + r);
}

/// weighted_rows_avx512 for a KV head's `group` query heads: their weights
/// (`count` positions) at s + h * stride, outputs at out + h * head_dim.
template <class E>
__attribute__((target("avx512f,avx2,fma,f16c"))) void weighted_block_avx512(const float* s, std::size_t stride,
                                                                            std::size_t group, std::size_t count,
                                                                            const E* row, std::size_t head_dim,
                                                                            float* out) noexcept {
    const float* p[4];
    float* o[4];
    for (std::size_t h0 = 0; h0 < group; h0 += 4) {
        const std::size_t n = std::min<std::size_t>(4, group - h0);
        for (std::size_t i = 0; i < n; ++i) {
            p[i] = s + (h0 + i) * stride;
            o[i] = out + (h0 + i) * head_dim;
        }
        weighted_rows_avx512(p, o, n, count, row, head_dim);
    }
}

/// Asks for the `rows` rows of a KV head from `first` on (a block's run).
template <class E>
inline void prefetch_rows(const E* first, std::size_t rows, std::size_t row_bytes) noexcept {
    const char* p = reinterpret_cast<const char*>(first);
    for (std::size_t i = 0; i < rows * row_bytes; i += 64) _mm_prefetch(p + i, _MM_HINT_T0);
}

/// A position's row of one KV head in a paged cache: shifts for the usual
/// power-of-two block sizes (a division per key would cost more than the
/// key's FMAs).
template <class E>
struct cache_rows {
    std::size_t bs, head_dim, offset;
    bool pow2;
    int shift;
    cache_rows(const basic_attention_source<E>& src, std::size_t hd, std::size_t kv_head) noexcept
        : bs(src.block_size), head_dim(hd), offset(kv_head * src.block_size * hd), pow2(std::has_single_bit(bs)),
          shift(std::countr_zero(bs)) {}
    const E* at(const E* const* blocks, std::size_t j) const noexcept {
        return pow2 ? blocks[j >> shift] + (j & (bs - 1)) * head_dim + offset
                    : blocks[j / bs] + (j % bs) * head_dim + offset;
    }
};

/// The largest head attend_rows_avx512 takes (its transposed keys are on
/// the stack): 16 x 256 floats.
constexpr std::size_t max_rows_head_dim = 256;

/// Softmax of `rows` rows of n scores, rows `stride` floats apart (n
/// rounded up to a multiple of eight), in place (attention_softmax.cpp).
__attribute__((target("avx2,fma"))) void softmax_rows_avx2(float* scores, std::size_t rows, std::size_t n,
                                                           std::size_t stride) noexcept;
/// softmax_rows_avx2 with 16-lane exponentials: the same bits.
__attribute__((target("avx2,fma,avx512f"))) void softmax_rows_avx512(float* scores, std::size_t rows, std::size_t n,
                                                                     std::size_t stride) noexcept;

/// attend for head_dim a multiple of 8 (attention_decode.cpp).
template <class E>
__attribute__((target("avx2,fma,f16c"))) void attend_avx2(const float* q, std::size_t group, std::size_t head_dim,
                                                          std::size_t kv_head, std::size_t pos,
                                                          const basic_attention_source<E>& src, float* out,
                                                          float* scratch) noexcept;
/// attend_avx2 for KV heads [kv_begin, kv_end) of one token: their query
/// heads' scores first, then one softmax over all of their rows (four rows
/// in lockstep rather than two a call), then their weighted sums
/// (attention_decode.cpp).
template <class E>
__attribute__((target("avx2,fma,f16c"))) void attend_heads_avx2(const float* q, std::size_t group,
                                                                std::size_t head_dim, std::size_t kv_begin,
                                                                std::size_t kv_end, std::size_t pos,
                                                                const basic_attention_source<E>& src, float* out,
                                                                float* scratch) noexcept;
/// attend_rows for head_dim a multiple of 16, at most max_rows_head_dim, on
/// AVX-512 (attention_rows.cpp).
template <class E>
__attribute__((target("avx2,fma,f16c"))) void attend_rows_avx512(const float* q, std::size_t q_stride,
                                                                 std::size_t tokens, std::size_t group,
                                                                 std::size_t head_dim, std::size_t kv_head,
                                                                 std::size_t first_pos,
                                                                 const basic_attention_source<E>& src, float* out,
                                                                 std::size_t out_stride, float* scratch) noexcept;

} // namespace weft::serve::kernels::attention_simd

#endif
