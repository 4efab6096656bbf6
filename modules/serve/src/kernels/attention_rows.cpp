// Attention of a prompt chunk's consecutive positions on AVX-512
// (attend_rows_avx512; see attention_simd.hpp).
#include "kernels/attention_simd.hpp"

#if defined(__x86_64__)

#include "kernels/transpose_avx512.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iterator>

namespace weft::serve::kernels::attention_simd {

namespace {

/// Keys k[0..16) of one KV head turned into columns, converted to float:
/// kt[(16 * j + l) * 16 + i] is element 16 j + l of key i, for the
/// vecs16 16-element blocks of a head.
template <class E>
__attribute__((target("avx2,fma,f16c,avx512f,avx512vl"))) void transpose_keys16(const E* const (&k)[16],
                                                                                std::size_t vecs16,
                                                                                float* kt) noexcept {
    for (std::size_t j = 0; j < vecs16; ++j) {
        __m512 r[16];
#pragma GCC unroll 16
        for (std::size_t i = 0; i < 16; ++i) r[i] = load16(k[i] + 16 * j);
        transpose16(r);
#pragma GCC unroll 16
        for (std::size_t l = 0; l < 16; ++l) _mm512_storeu_ps(kt + (16 * j + l) * 16, r[l]);
    }
}

/// The scaled scores of 16 positions (keys transposed by transpose_keys16)
/// for `Heads` query heads, one position a lane: bitwise the scores of
/// scores8_pair_avx512 and scores8_one_avx512. There, lane l of a 16-lane
/// chain adds q[16 j + l] * k[16 j + l] over j; the chain is folded, lane l
/// with lane l + 8, into B_l; the score is ((B0 + B1) + (B2 + B3)) + ((B4 +
/// B5) + (B6 + B7)), times the scale. Here each chain is a vector over the
/// positions, the same FMAs in the same order, then the same adds: no
/// horizontal sums (which cost as much as a 64-float head's FMAs), in two
/// halves of eight chains a head to stay within the registers.
template <std::size_t Heads>
__attribute__((target("avx2,fma,f16c,avx512f,avx512vl"))) void scores16_columns(const float* const* q,
                                                                                const float* kt,
                                                                                std::size_t vecs16, float scale,
                                                                                float* const* s) noexcept {
    __m512 half_sum[2][Heads];
#pragma GCC unroll 2
    for (std::size_t half = 0; half < 2; ++half) {
        // Chains l = 4 half + c and l + 8, for c < 4.
        __m512 a[Heads][8];
#pragma GCC unroll 4
        for (std::size_t h = 0; h < Heads; ++h) {
#pragma GCC unroll 8
            for (std::size_t c = 0; c < 8; ++c) a[h][c] = _mm512_setzero_ps();
        }
        for (std::size_t j = 0; j < vecs16; ++j) {
#pragma GCC unroll 8
            for (std::size_t c = 0; c < 8; ++c) {
                const std::size_t l = 4 * half + (c < 4 ? c : c + 4);
                const __m512 kv = _mm512_loadu_ps(kt + (16 * j + l) * 16);
#pragma GCC unroll 4
                for (std::size_t h = 0; h < Heads; ++h) {
                    a[h][c] = _mm512_fmadd_ps(_mm512_set1_ps(q[h][16 * j + l]), kv, a[h][c]);
                }
            }
        }
#pragma GCC unroll 4
        for (std::size_t h = 0; h < Heads; ++h) {
            __m512 b[4];
#pragma GCC unroll 4
            for (std::size_t c = 0; c < 4; ++c) b[c] = _mm512_add_ps(a[h][c], a[h][c + 4]); // B_l: l and l + 8
            half_sum[half][h] = _mm512_add_ps(_mm512_add_ps(b[0], b[1]), _mm512_add_ps(b[2], b[3]));
        }
    }
    const __m512 vs = _mm512_set1_ps(scale);
#pragma GCC unroll 4
    for (std::size_t h = 0; h < Heads; ++h) {
        _mm512_storeu_ps(s[h], _mm512_mul_ps(_mm512_add_ps(half_sum[0][h], half_sum[1][h]), vs));
    }
}

/// `n` cache elements as floats: F16 ones converted into `buf`, float ones
/// where they are.
__attribute__((target("avx512f,avx2,fma,f16c"))) inline const float* values_as_float(const std::uint16_t* v,
                                                                                     std::size_t n,
                                                                                     float* buf) noexcept {
    for (std::size_t i = 0; i < n; i += 16) _mm512_store_ps(buf + i, load16(v + i));
    return buf;
}
inline const float* values_as_float(const float* v, std::size_t, float*) noexcept { return v; }

/// scores16_columns for thirty-two positions, the keys of two groups of
/// sixteen transposed (kt0, then kt1), for `Rows` query rows: each query
/// element is broadcast once for both groups and each key column loaded
/// once for the rows, a load per FMA where scores16_columns takes one and a
/// half. The chains go four at a time (l and l + 8 for two l), then fold
/// as there: B_l = a_l + a_(l+8), quarter sums B_2m + B_2m+1, halves, the
/// score; the same FMAs and adds in the same order, so the same bits.
template <std::size_t Rows>
__attribute__((target("avx2,fma,f16c,avx512f,avx512vl"))) void scores32_columns(const float* const* q,
                                                                                const float* kt0,
                                                                                const float* kt1,
                                                                                std::size_t vecs16, float scale,
                                                                                float* const* s) noexcept {
    __m512 half_sum[2][Rows][2];
#pragma GCC unroll 2
    for (std::size_t half = 0; half < 2; ++half) {
#pragma GCC unroll 2
        for (std::size_t quarter = 0; quarter < 2; ++quarter) {
            const std::size_t m = 2 * half + quarter; // B_2m and B_2m+1
            const std::size_t lanes[4] = {2 * m, 2 * m + 1, 2 * m + 8, 2 * m + 9};
            __m512 a[Rows][2][4];
#pragma GCC unroll 2
            for (std::size_t r = 0; r < Rows; ++r) {
#pragma GCC unroll 4
                for (std::size_t c = 0; c < 4; ++c) a[r][0][c] = a[r][1][c] = _mm512_setzero_ps();
            }
            for (std::size_t j = 0; j < vecs16; ++j) {
#pragma GCC unroll 4
                for (std::size_t c = 0; c < 4; ++c) {
                    const std::size_t l = lanes[c];
                    __m512 k0 = _mm512_load_ps(kt0 + (16 * j + l) * 16);
                    __m512 k1 = _mm512_load_ps(kt1 + (16 * j + l) * 16);
                    // In registers: GCC would fold the loads into every FMA,
                    // a load per FMA again.
                    asm("" : "+v"(k0), "+v"(k1));
#pragma GCC unroll 2
                    for (std::size_t r = 0; r < Rows; ++r) {
                        const __m512 qb = _mm512_set1_ps(q[r][16 * j + l]);
                        a[r][0][c] = _mm512_fmadd_ps(qb, k0, a[r][0][c]);
                        a[r][1][c] = _mm512_fmadd_ps(qb, k1, a[r][1][c]);
                    }
                }
            }
#pragma GCC unroll 2
            for (std::size_t r = 0; r < Rows; ++r) {
#pragma GCC unroll 2
                for (std::size_t g = 0; g < 2; ++g) {
                    const __m512 b0 = _mm512_add_ps(a[r][g][0], a[r][g][2]); // B_2m
                    const __m512 b1 = _mm512_add_ps(a[r][g][1], a[r][g][3]); // B_2m+1
                    const __m512 pair = _mm512_add_ps(b0, b1);
                    half_sum[half][r][g] = quarter == 0 ? pair : _mm512_add_ps(half_sum[half][r][g], pair);
                }
            }
        }
    }
    const __m512 vs = _mm512_set1_ps(scale);
#pragma GCC unroll 2
    for (std::size_t r = 0; r < Rows; ++r) {
#pragma GCC unroll 2
        for (std::size_t g = 0; g < 2; ++g) {
            _mm512_storeu_ps(s[r] + 16 * g, _mm512_mul_ps(_mm512_add_ps(half_sum[0][r][g], half_sum[1][r][g]), vs));
        }
    }
}

} // namespace

/// attend_avx2 for `tokens` consecutive positions of one sequence (a
/// prompt chunk), head_dim a multiple of 16 on AVX-512: each group of
/// sixteen keys, and each cache block of values, is read once while in L1
/// for every token that attends to it, where one token at a time reads the
/// whole context again from L2 or beyond (attention was half of a
/// 2000-token prompt's prefill of `small`). Every score, softmax and
/// weighted sum is the one attend_avx2 computes for the token alone: the
/// same chains, in the same order, the weighted sums continued block by
/// block through `out`.
template <class E>
__attribute__((target("avx2,fma,f16c"))) void attend_rows_avx512(const float* q, std::size_t q_stride,
                                                                 std::size_t tokens, std::size_t group,
                                                                 std::size_t head_dim, std::size_t kv_head,
                                                                 std::size_t first_pos,
                                                                 const basic_attention_source<E>& src, float* out,
                                                                 std::size_t out_stride, float* scratch) noexcept {
    const std::size_t last_n = first_pos + tokens; // the last token's positions
    // Rows of whole groups of sixteen scores (see attend_rows_scratch_size).
    const std::size_t stride = (last_n + 15) & ~std::size_t{15};
    const std::size_t bs = src.block_size;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    const std::size_t row_bytes = head_dim * sizeof(E);
    const cache_rows<E> rows(src, head_dim, kv_head);
    auto key = [&](std::size_t j) { return rows.at(src.key_blocks, j); };
    auto scores_of = [&](std::size_t t) { return scratch + t * group * stride; };
    // The first token attending to positions from j on.
    auto first_token = [&](std::size_t j) { return j > first_pos ? j - first_pos : 0; };

    // Calls two(q, s) for pairs of query rows and one(q, s) for a last lone
    // row: rows (token, head) of tokens [t0, t1) in order, a row's query
    // and its scores from position j on.
    auto for_rows = [&](std::size_t t0, std::size_t t1, std::size_t j, auto&& two, auto&& one) {
        const float* qr[2];
        float* sr[2];
        std::size_t n = 0;
        for (std::size_t t = t0; t < t1; ++t) {
            for (std::size_t h = 0; h < group; ++h) {
                qr[n] = q + t * q_stride + h * head_dim;
                sr[n] = scores_of(t) + h * stride + j;
                if (++n == 2) {
                    two(qr, sr);
                    n = 0;
                }
            }
        }
        if (n == 1) one(qr, sr);
    };
    alignas(64) float kt[2][16 * max_rows_head_dim];
    const std::size_t vecs16 = head_dim / 16;
    auto transpose_at = [&](std::size_t j, float* to) {
        const E* k[16];
        for (std::size_t i = 0; i < 16; ++i) k[i] = key(std::min(j + i, last_n - 1));
        transpose_keys16(k, vecs16, to);
    };
    // Thirty-two keys at a time, in two groups of sixteen turned into
    // columns once for every token that attends to any of them (past the
    // last token's positions, the last key stands in: those scores land in
    // rows' padding or past a token's own positions, which its softmax and
    // weighted sum never read).
    for (std::size_t j = 0; j < last_n; j += 32) {
        // The next thirty-two keys, while these are multiplied.
        for (std::size_t i = 0; i < 32 && j + 32 + i < last_n; ++i) {
            const char* kp = reinterpret_cast<const char*>(key(j + 32 + i));
            for (std::size_t b = 0; b < row_bytes; b += 64) _mm_prefetch(kp + b, _MM_HINT_T0);
        }
        transpose_at(j, kt[0]);
        const bool second = j + 16 < last_n;
        if (second) transpose_at(j + 16, kt[1]);
        // Tokens before `both` attend to none of the second sixteen keys.
        const std::size_t both = second ? first_token(j + 16) : tokens;
        for_rows(
            first_token(j), both, j,
            [&](const float* const* qr, float* const* sr) { scores16_columns<2>(qr, kt[0], vecs16, scale, sr); },
            [&](const float* const* qr, float* const* sr) { scores16_columns<1>(qr, kt[0], vecs16, scale, sr); });
        for_rows(
            both, tokens, j,
            [&](const float* const* qr, float* const* sr) {
                scores32_columns<2>(qr, kt[0], kt[1], vecs16, scale, sr);
            },
            [&](const float* const* qr, float* const* sr) {
                scores32_columns<1>(qr, kt[0], kt[1], vecs16, scale, sr);
            });
    }
    for (std::size_t t = 0; t < tokens; ++t) {
        softmax_rows_avx512(scores_of(t), group, first_pos + t + 1, stride);
        std::fill_n(out + t * out_stride, group * head_dim, 0.0f);
    }
    // The values in runs of up to sixteen positions (a cache block, or part
    // of a larger one), an F16 run converted once into `vf` for every token
    // rather than once per token (a conversion takes the FMA ports). The
    // tokens that attend to a whole run share each read of its values: their
    // query heads go four at a time through weighted_rows_avx512, the
    // token's own heads or the next token's alike. Each output element's
    // chain continues through `out`, in ascending positions, as for a token
    // alone.
    alignas(64) float vf[16 * max_rows_head_dim];
    const float* p_rows[64];
    float* o_rows[64];
    for (std::size_t b = 0; b * bs < last_n; ++b) {
        const E* base = src.value_blocks[b] + rows.offset;
        if ((b + 1) * bs < last_n) {
            prefetch_rows(src.value_blocks[b + 1] + rows.offset, std::min(bs, last_n - (b + 1) * bs), row_bytes);
        }
        const std::size_t block_n = std::min(bs, last_n - b * bs);
        for (std::size_t i0 = 0; i0 < block_n; i0 += 16) {
            const std::size_t run = std::min<std::size_t>(16, block_n - i0);
            const std::size_t j0 = b * bs + i0; // the run's first position
            const float* v = values_as_float(base + i0 * head_dim, run * head_dim, vf);
            // Tokens from `whole` on attend to every position of the run.
            const std::size_t whole = first_token(j0 + run - 1);
            for (std::size_t t = first_token(j0); t < whole; ++t) {
                weighted_block_avx512(scores_of(t) + j0, stride, group, first_pos + t + 1 - j0, v, head_dim,
                                      out + t * out_stride);
            }
            // Query rows (token, head) in order, a batch of rows at a time.
            std::size_t n = 0;
            for (std::size_t t = whole; t < tokens; ++t) {
                for (std::size_t h = 0; h < group; ++h) {
                    p_rows[n] = scores_of(t) + h * stride + j0;
                    o_rows[n] = out + t * out_stride + h * head_dim;
                    if (++n == std::size(p_rows)) {
                        weighted_rows_avx512(p_rows, o_rows, n, run, v, head_dim);
                        n = 0;
                    }
                }
            }
            weighted_rows_avx512(p_rows, o_rows, n, run, v, head_dim);
        }
    }
}

template void attend_rows_avx512<float>(const float*, std::size_t, std::size_t, std::size_t, std::size_t,
                                        std::size_t, std::size_t, const basic_attention_source<float>&, float*,
                                        std::size_t, float*) noexcept;
template void attend_rows_avx512<std::uint16_t>(const float*, std::size_t, std::size_t, std::size_t, std::size_t,
                                                std::size_t, std::size_t,
                                                const basic_attention_source<std::uint16_t>&, float*, std::size_t,
                                                float*) noexcept;

} // namespace weft::serve::kernels::attention_simd

#endif
