#if defined(__x86_64__)
// GCC 12's own AVX-512 headers trip its uninitialised-use warnings.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

#include "kernels/kernels.hpp"
#include "kernels/simd_exp.hpp"
#include "kernels/transpose_avx512.hpp"

#include <weft/serve/ggml_type.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#if defined(__x86_64__)
#define WEFT_SERVE_X86 1
#endif

namespace weft::serve::kernels {

namespace {

float dot_scalar(const float* a, const float* b, std::size_t n) noexcept {
    // Eight running sums, combined pairwise at the end: the same order as the
    // AVX2 path's lanes, so both are equally accurate (not bitwise equal).
    float acc[8] = {};
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (std::size_t l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
    }
    float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; ++i) sum += a[i] * b[i];
    return sum;
}

void axpy_scalar(float w, const float* x, float* y, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) y[i] += w * x[i];
}

#ifdef WEFT_SERVE_X86
__attribute__((target("avx2,fma"))) float dot_avx2(const float* a, const float* b, std::size_t n) noexcept {
    __m256 acc = _mm256_setzero_ps();
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    }
    const __m128 lo = _mm256_castps256_ps128(acc);
    const __m128 hi = _mm256_extractf128_ps(acc, 1);
    __m128 s = _mm_add_ps(lo, hi);                 // (0+4, 1+5, 2+6, 3+7)
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));        // (0+4 + 2+6, 1+5 + 3+7)
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    float sum = _mm_cvtss_f32(s);
    for (; i < n; ++i) sum = std::fma(a[i], b[i], sum);
    return sum;
}

__attribute__((target("avx2,fma"))) void axpy_avx2(float w, const float* x, float* y, std::size_t n) noexcept {
    const __m256 vw = _mm256_set1_ps(w);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(vw, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    }
    for (; i < n; ++i) y[i] = std::fma(w, x[i], y[i]);
}

const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif

void axpy(float w, const float* x, float* y, std::size_t n) noexcept {
#ifdef WEFT_SERVE_X86
    if (has_avx2) return axpy_avx2(w, x, y, n);
#endif
    axpy_scalar(w, x, y, n);
}

/// Softmax of each of `rows` rows of n scores, in position order.
void softmax_rows(float* scores, std::size_t rows, std::size_t n) noexcept {
    for (std::size_t h = 0; h < rows; ++h) {
        float* s = scores + h * n;
        float max = -std::numeric_limits<float>::infinity();
        for (std::size_t j = 0; j < n; ++j) max = s[j] > max ? s[j] : max;
        float sum = 0.0f;
        for (std::size_t j = 0; j < n; ++j) {
            s[j] = std::exp(s[j] - max);
            sum += s[j];
        }
        const float inv = 1.0f / sum;
        for (std::size_t j = 0; j < n; ++j) s[j] *= inv;
    }
}

} // namespace

float dot(const float* a, const float* b, std::size_t n) noexcept {
#ifdef WEFT_SERVE_X86
    if (has_avx2) return dot_avx2(a, b, n);
#endif
    return dot_scalar(a, b, n);
}

namespace {

inline float to_float(float x) noexcept { return x; }
inline float to_float(std::uint16_t h) noexcept { return f16_to_f32(h); }

/// q . k over n elements in the order of dot() (eight running sums).
template <class E>
float dot_mixed(const float* q, const E* k, std::size_t n) noexcept {
    if constexpr (std::is_same_v<E, float>) {
        return dot(q, k, n);
    } else {
        float acc[8] = {};
        std::size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            for (std::size_t l = 0; l < 8; ++l) acc[l] += q[i + l] * to_float(k[i + l]);
        }
        float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        for (; i < n; ++i) sum += q[i] * to_float(k[i]);
        return sum;
    }
}

template <class E>
void axpy_mixed(float w, const E* x, float* y, std::size_t n) noexcept {
    if constexpr (std::is_same_v<E, float>) {
        axpy(w, x, y, n);
    } else {
        for (std::size_t i = 0; i < n; ++i) y[i] += w * to_float(x[i]);
    }
}

template <class E>
void attend_scalar(const float* q, std::size_t group, std::size_t head_dim, std::size_t kv_head, std::size_t pos,
                   const basic_attention_source<E>& src, float* out, float* scratch) noexcept {
    const std::size_t n = pos + 1;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    const std::size_t offset = kv_head * src.block_size * head_dim;
    for (std::size_t j = 0; j < n; ++j) {
        const E* k = src.key_blocks[j / src.block_size] + (j % src.block_size) * head_dim + offset;
        for (std::size_t h = 0; h < group; ++h) scratch[h * n + j] = dot_mixed(q + h * head_dim, k, head_dim) * scale;
    }
    softmax_rows(scratch, group, n);
    for (std::size_t i = 0; i < group * head_dim; ++i) out[i] = 0.0f;
    for (std::size_t j = 0; j < n; ++j) {
        const E* v = src.value_blocks[j / src.block_size] + (j % src.block_size) * head_dim + offset;
        for (std::size_t h = 0; h < group; ++h) axpy_mixed(scratch[h * n + j], v, out + h * head_dim, head_dim);
    }
}

#ifdef WEFT_SERVE_X86
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

/// softmax_rows on 8 lanes for R rows of n scores in lockstep, each row
/// `stride` floats (n rounded up to a multiple of eight) after the last: each
/// row's maximum, then e^(s - max) summed lane-wise, then one fixed
/// horizontal sum. The rows' chains are independent and interleaved: a short
/// row is a chain of latencies (the exponential's polynomial, the sums),
/// which R rows wait out together. The positions past the last multiple of
/// eight go through the same lanes under a mask (a short context is mostly
/// that tail: an exponential each would cost more than the rest).
template <std::size_t R>
__attribute__((target("avx2,fma"))) void softmax_lockstep(float* scores, std::size_t n, std::size_t stride) noexcept {
    const std::size_t full = n & ~std::size_t{7};
    const std::size_t tail = n - full;
    // Lanes [0, tail) of the last, partial vector. The row's padding holds
    // whatever was stored there (finite scores of the padded keys): read
    // whole, those lanes are replaced by -inf; written whole, they take the
    // zeros the mask leaves them (a masked load and store, or a copy of the
    // tail, cost more than the row's arithmetic in a short context).
    const __m256 tail_mask = _mm256_castsi256_ps(
        _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(tail)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
    const __m256 minus_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    float* s[R];
    __m256 vmax[R], last[R], vsum[R];
#pragma GCC unroll 4
    for (std::size_t r = 0; r < R; ++r) {
        s[r] = scores + r * stride;
        vmax[r] = minus_inf;
        vsum[r] = _mm256_setzero_ps();
    }
    for (std::size_t j = 0; j < full; j += 8) {
#pragma GCC unroll 4
        for (std::size_t r = 0; r < R; ++r) vmax[r] = _mm256_max_ps(vmax[r], _mm256_loadu_ps(s[r] + j));
    }
#pragma GCC unroll 4
    for (std::size_t r = 0; r < R; ++r) {
        // The tail's missing lanes read as -inf, which no maximum takes.
        last[r] = tail != 0 ? _mm256_blendv_ps(minus_inf, _mm256_loadu_ps(s[r] + full), tail_mask) : minus_inf;
        vmax[r] = hmax_avx2(_mm256_max_ps(vmax[r], last[r]));
    }
    for (std::size_t j = 0; j < full; j += 8) {
#pragma GCC unroll 4
        for (std::size_t r = 0; r < R; ++r) {
            const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(s[r] + j), vmax[r]));
            _mm256_storeu_ps(s[r] + j, e);
            vsum[r] = _mm256_add_ps(vsum[r], e);
        }
    }
    if (tail != 0) {
#pragma GCC unroll 4
        for (std::size_t r = 0; r < R; ++r) {
            // exp of the clamped -inf is tiny, not zero: the mask zeroes it.
            last[r] = _mm256_and_ps(exp_avx2(_mm256_sub_ps(last[r], vmax[r])), tail_mask);
            vsum[r] = _mm256_add_ps(vsum[r], last[r]);
        }
    }
    __m256 vinv[R];
#pragma GCC unroll 4
    for (std::size_t r = 0; r < R; ++r) vinv[r] = _mm256_set1_ps(1.0f / hsum_avx2(vsum[r]));
    for (std::size_t j = 0; j < full; j += 8) {
#pragma GCC unroll 4
        for (std::size_t r = 0; r < R; ++r) _mm256_storeu_ps(s[r] + j, _mm256_mul_ps(_mm256_loadu_ps(s[r] + j), vinv[r]));
    }
    if (tail != 0) {
#pragma GCC unroll 4
        for (std::size_t r = 0; r < R; ++r) _mm256_storeu_ps(s[r] + full, _mm256_mul_ps(last[r], vinv[r]));
    }
}

/// softmax_rows over rows `stride` floats apart (n rounded up to a multiple
/// of eight), rows four, two, then one at a time in lockstep.
__attribute__((target("avx2,fma"))) void softmax_rows_avx2(float* scores, std::size_t rows, std::size_t n,
                                                           std::size_t stride) noexcept {
    std::size_t h = 0;
    for (; h + 4 <= rows; h += 4) softmax_lockstep<4>(scores + h * stride, n, stride);
    if (h + 2 <= rows) {
        softmax_lockstep<2>(scores + h * stride, n, stride);
        h += 2;
    }
    if (h < rows) softmax_lockstep<1>(scores + h * stride, n, stride);
}

/// softmax_lockstep with the exponentials and the scaling on sixteen lanes
/// (exp_avx512 gives exp_avx2's bits, and both are per element). The maxima
/// and the sums stay the 8-lane chains softmax_lockstep runs, in its order
/// (a vector's low half, then its high half), so every weight is bitwise
/// the one it computes: the exponentials were most of a long row's time.
template <std::size_t R>
__attribute__((target("avx2,fma,avx512f"))) void softmax_lockstep16(float* scores, std::size_t n,
                                                                    std::size_t stride) noexcept {
    const std::size_t full = n & ~std::size_t{7};
    const std::size_t wide = n & ~std::size_t{15};
    const std::size_t tail = n - full;
    const __m256 tail_mask = _mm256_castsi256_ps(
        _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(tail)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
    const __m256 minus_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    float* s[R];
    __m256 vmax[R], last[R], vsum[R];
    __m512 vmax16[R];
#pragma GCC unroll 4
    for (std::size_t r = 0; r < R; ++r) {
        s[r] = scores + r * stride;
        vmax[r] = minus_inf;
        vsum[r] = _mm256_setzero_ps();
    }
    for (std::size_t j = 0; j < full; j += 8) {
#pragma GCC unroll 4
        for (std::size_t r = 0; r < R; ++r) vmax[r] = _mm256_max_ps(vmax[r], _mm256_loadu_ps(s[r] + j));
    }
#pragma GCC unroll 4
    for (std::size_t r = 0; r < R; ++r) {
        last[r] = tail != 0 ? _mm256_blendv_ps(minus_inf, _mm256_loadu_ps(s[r] + full), tail_mask) : minus_inf;
        vmax[r] = hmax_avx2(_mm256_max_ps(vmax[r], last[r]));
        vmax16[r] = _mm512_broadcastss_ps(_mm256_castps256_ps128(vmax[r]));
    }
    for (std::size_t j = 0; j < wide; j += 16) {
#pragma GCC unroll 4
        for (std::size_t r = 0; r < R; ++r) {
            const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(s[r] + j), vmax16[r]));
            _mm512_storeu_ps(s[r] + j, e);
            vsum[r] = _mm256_add_ps(vsum[r], _mm512_castps512_ps256(e));
            vsum[r] = _mm256_add_ps(vsum[r], _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1)));
        }
    }
    if (wide != full) {
#pragma GCC unroll 4
        for (std::size_t r = 0; r < R; ++r) {
            const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(s[r] + wide), vmax[r]));
            _mm256_storeu_ps(s[r] + wide, e);
            vsum[r] = _mm256_add_ps(vsum[r], e);
        }
    }
    if (tail != 0) {
#pragma GCC unroll 4
        for (std::size_t r = 0; r < R; ++r) {
            last[r] = _mm256_and_ps(exp_avx2(_mm256_sub_ps(last[r], vmax[r])), tail_mask);
            vsum[r] = _mm256_add_ps(vsum[r], last[r]);
        }
    }
    __m512 vinv[R];
#pragma GCC unroll 4
    for (std::size_t r = 0; r < R; ++r) vinv[r] = _mm512_set1_ps(1.0f / hsum_avx2(vsum[r]));
    for (std::size_t j = 0; j < wide; j += 16) {
#pragma GCC unroll 4
        for (std::size_t r = 0; r < R; ++r) _mm512_storeu_ps(s[r] + j, _mm512_mul_ps(_mm512_loadu_ps(s[r] + j), vinv[r]));
    }
    if (wide != full) {
#pragma GCC unroll 4
        for (std::size_t r = 0; r < R; ++r) {
            _mm256_storeu_ps(s[r] + wide,
                             _mm256_mul_ps(_mm256_loadu_ps(s[r] + wide), _mm512_castps512_ps256(vinv[r])));
        }
    }
    if (tail != 0) {
#pragma GCC unroll 4
        for (std::size_t r = 0; r < R; ++r) _mm256_storeu_ps(s[r] + full, _mm256_mul_ps(last[r], _mm512_castps512_ps256(vinv[r])));
    }
}

/// softmax_rows_avx2 with softmax_lockstep16: the same bits.
__attribute__((target("avx2,fma,avx512f"))) void softmax_rows_avx512(float* scores, std::size_t rows, std::size_t n,
                                                                     std::size_t stride) noexcept {
    std::size_t h = 0;
    for (; h + 4 <= rows; h += 4) softmax_lockstep16<4>(scores + h * stride, n, stride);
    if (h + 2 <= rows) {
        softmax_lockstep16<2>(scores + h * stride, n, stride);
        h += 2;
    }
    if (h < rows) softmax_lockstep16<1>(scores + h * stride, n, stride);
}

/// The eight horizontal sums of a0..a7 as one vector (lane i = sum of a_i).
__attribute__((target("avx2,fma"))) inline __m256 hsum8_avx2(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4,
                                                             __m256 a5, __m256 a6, __m256 a7) noexcept {
    const __m256 t0 = _mm256_hadd_ps(a0, a1);
    const __m256 t1 = _mm256_hadd_ps(a2, a3);
    const __m256 t2 = _mm256_hadd_ps(a4, a5);
    const __m256 t3 = _mm256_hadd_ps(a6, a7);
    const __m256 u0 = _mm256_hadd_ps(t0, t1); // a0..a3 low halves, then a0..a3 high halves
    const __m256 u1 = _mm256_hadd_ps(t2, t3); // the same for a4..a7
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/// For each of `Heads` query heads h: out[h][0 .. 8*Vecs) = sum over
/// positions j (ascending) of p[h][j] * v_j, where v_j starts `offset` floats
/// into position j's row of its value block. The heads share one pass over
/// the values (a grouped-query head's values are read once for the group);
/// each output element is the same ascending chain of FMAs whatever Heads
/// and Vecs are.
template <std::size_t Vecs, std::size_t Heads, class E>
__attribute__((target("avx2,fma,f16c"))) void weighted_sum_avx2(const float* const* p, std::size_t n,
                                                                const E* const* blocks, std::size_t bs,
                                                                std::size_t head_dim, std::size_t offset,
                                                                float* const* out) noexcept {
    // Fully unrolled so the accumulators live in registers (GCC keeps a
    // rolled loop's array on the stack).
    __m256 acc[Heads][Vecs];
#pragma GCC unroll 4
    for (std::size_t h = 0; h < Heads; ++h) {
#pragma GCC unroll 8
        for (std::size_t d = 0; d < Vecs; ++d) acc[h][d] = _mm256_setzero_ps();
    }
    for (std::size_t b = 0; b * bs < n; ++b) {
        const E* row = blocks[b] + offset;
        const std::size_t end = n - b * bs < bs ? n - b * bs : bs;
        for (std::size_t i = 0; i < end; ++i, row += head_dim) {
            // Rows of the next block are a separate run of memory: ask for
            // them ahead (the hardware prefetcher stops at the page).
            if (i + 4 >= end && b * bs + bs < n) {
                const E* next = blocks[b + 1] + offset + (i + 4 - end) * head_dim;
                for (std::size_t l = 0; l < 8 * Vecs; l += 64 / sizeof(E)) {
                    _mm_prefetch(reinterpret_cast<const char*>(next + l), _MM_HINT_T0);
                }
            }
            __m256 v[Vecs];
#pragma GCC unroll 8
            for (std::size_t d = 0; d < Vecs; ++d) v[d] = load8(row + 8 * d);
#pragma GCC unroll 4
            for (std::size_t h = 0; h < Heads; ++h) {
                const __m256 w = _mm256_set1_ps(p[h][b * bs + i]);
#pragma GCC unroll 8
                for (std::size_t d = 0; d < Vecs; ++d) acc[h][d] = _mm256_fmadd_ps(w, v[d], acc[h][d]);
            }
        }
    }
#pragma GCC unroll 4
    for (std::size_t h = 0; h < Heads; ++h) {
#pragma GCC unroll 8
        for (std::size_t d = 0; d < Vecs; ++d) _mm256_storeu_ps(out[h] + 8 * d, acc[h][d]);
    }
}

/// weighted_sum_avx2 over a head's whole row: chunks of 8 * Vecs floats.
template <std::size_t Vecs, std::size_t Heads, class E>
__attribute__((target("avx2,fma,f16c"))) void weighted_rows_avx2(const float* const* p, std::size_t n,
                                                                 const E* const* blocks, std::size_t bs,
                                                                 std::size_t head_dim, std::size_t offset,
                                                                 float* const* out) noexcept {
    const std::size_t vecs = head_dim / 8;
    std::size_t d0 = 0;
    float* at[Heads];
    for (; d0 + Vecs <= vecs; d0 += Vecs) {
        for (std::size_t h = 0; h < Heads; ++h) at[h] = out[h] + 8 * d0;
        weighted_sum_avx2<Vecs, Heads>(p, n, blocks, bs, head_dim, offset + 8 * d0, at);
    }
    // A short head (16 floats: two vectors) in one pass over the positions,
    // not one pass a vector: a pass's cost is mostly per position.
    if constexpr (Vecs > 2) {
        for (; d0 + 2 <= vecs; d0 += 2) {
            for (std::size_t h = 0; h < Heads; ++h) at[h] = out[h] + 8 * d0;
            weighted_sum_avx2<2, Heads>(p, n, blocks, bs, head_dim, offset + 8 * d0, at);
        }
    }
    for (; d0 < vecs; ++d0) {
        for (std::size_t h = 0; h < Heads; ++h) at[h] = out[h] + 8 * d0;
        weighted_sum_avx2<1, Heads>(p, n, blocks, bs, head_dim, offset + 8 * d0, at);
    }
}

const bool has_avx512vl = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
const bool has_avx512f = __builtin_cpu_supports("avx512f");

/// Sixteen consecutive cache elements as floats.
__attribute__((target("avx512f,avx2,fma,f16c"))) inline __m512 load16(const float* p) noexcept {
    return _mm512_loadu_ps(p);
}
__attribute__((target("avx512f,avx2,fma,f16c"))) inline __m512 load16(const std::uint16_t* p) noexcept {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

/// For each of `Heads` query heads h: out[h][0 .. 16*Vecs) += the sum over
/// `count` positions i (ascending) of p[h][i] * v_i, v_i the 16 * Vecs
/// values at row + i * head_dim, as one FMA chain per element continued
/// from out[h]: a sum split into runs of positions (a cache block each) is
/// bitwise the sum in one pass (floats stored and loaded unchanged, the same
/// FMAs in the same order), and bitwise weighted_sum_avx2's in 8-lane
/// vectors. With 8-lane vectors the weighted sum reached about a quarter of
/// the 16-lane FMA peak.
template <std::size_t Vecs, std::size_t Heads, class E>
__attribute__((target("avx512f,avx2,fma,f16c"))) void weighted_continue_avx512(const float* const* p,
                                                                               std::size_t count, const E* row,
                                                                               std::size_t head_dim,
                                                                               float* const* out) noexcept {
    __m512 acc[Heads][Vecs];
#pragma GCC unroll 4
    for (std::size_t h = 0; h < Heads; ++h) {
#pragma GCC unroll 8
        for (std::size_t d = 0; d < Vecs; ++d) acc[h][d] = _mm512_loadu_ps(out[h] + 16 * d);
    }
    for (std::size_t i = 0; i < count; ++i, row += head_dim) {
        __m512 v[Vecs];
#pragma GCC unroll 8
        for (std::size_t d = 0; d < Vecs; ++d) v[d] = load16(row + 16 * d);
#pragma GCC unroll 4
        for (std::size_t h = 0; h < Heads; ++h) {
            const __m512 w = _mm512_set1_ps(p[h][i]);
#pragma GCC unroll 8
            for (std::size_t d = 0; d < Vecs; ++d) acc[h][d] = _mm512_fmadd_ps(w, v[d], acc[h][d]);
        }
    }
#pragma GCC unroll 4
    for (std::size_t h = 0; h < Heads; ++h) {
#pragma GCC unroll 8
        for (std::size_t d = 0; d < Vecs; ++d) _mm512_storeu_ps(out[h] + 16 * d, acc[h][d]);
    }
}

/// weighted_continue_avx512 over a head's whole row, `Heads` heads.
template <std::size_t Heads, class E>
__attribute__((target("avx512f,avx2,fma,f16c"))) void weighted_run_avx512(const float* const* p, std::size_t count,
                                                                          const E* row, std::size_t head_dim,
                                                                          float* const* out) noexcept {
    float* at[Heads];
    for (std::size_t d0 = 0; d0 < head_dim / 16;) {
        const std::size_t left = head_dim / 16 - d0;
        for (std::size_t h = 0; h < Heads; ++h) at[h] = out[h] + 16 * d0;
        if (left >= 4) {
            weighted_continue_avx512<4, Heads>(p, count, row + 16 * d0, head_dim, at);
            d0 += 4;
        } else if (left >= 2) {
            weighted_continue_avx512<2, Heads>(p, count, row + 16 * d0, head_dim, at);
            d0 += 2;
        } else {
            weighted_continue_avx512<1, Heads>(p, count, row + 16 * d0, head_dim, at);
            d0 += 1;
        }
    }
}

/// weighted_run_avx512 for a KV head's `group` query heads, four, then two,
/// then one at a time sharing each read of the values: their weights
/// (`count` positions) at s + h * stride, outputs at out + h * head_dim.
template <class E>
__attribute__((target("avx512f,avx2,fma,f16c"))) void weighted_block_avx512(const float* s, std::size_t stride,
                                                                            std::size_t group, std::size_t count,
                                                                            const E* row, std::size_t head_dim,
                                                                            float* out) noexcept {
    std::size_t h = 0;
    for (; h + 4 <= group; h += 4) {
        const float* p[4] = {s + h * stride, s + (h + 1) * stride, s + (h + 2) * stride, s + (h + 3) * stride};
        float* o[4] = {out + h * head_dim, out + (h + 1) * head_dim, out + (h + 2) * head_dim,
                       out + (h + 3) * head_dim};
        weighted_run_avx512<4>(p, count, row, head_dim, o);
    }
    if (h + 2 <= group) {
        const float* p[2] = {s + h * stride, s + (h + 1) * stride};
        float* o[2] = {out + h * head_dim, out + (h + 1) * head_dim};
        weighted_run_avx512<2>(p, count, row, head_dim, o);
        h += 2;
    }
    if (h < group) {
        const float* p[1] = {s + h * stride};
        float* o[1] = {out + h * head_dim};
        weighted_run_avx512<1>(p, count, row, head_dim, o);
    }
}

/// Asks for the `rows` rows of a KV head from `first` on (a block's run).
template <class E>
inline void prefetch_rows(const E* first, std::size_t rows, std::size_t row_bytes) noexcept {
    const char* p = reinterpret_cast<const char*>(first);
    for (std::size_t i = 0; i < rows * row_bytes; i += 64) _mm_prefetch(p + i, _MM_HINT_T0);
}

/// The scaled scores of 8 positions (keys k[0..8)) for two query heads at
/// once: each key vector is loaded (and for an F16 cache converted) once and
/// feeds both heads' chains. The 16 chains need AVX-512VL's 32 registers.
/// Each chain is the one attend_avx2 runs for a head alone, the same FMAs in
/// the same order and the same horizontal sum, so the scores are bitwise
/// those of one head at a time.
template <class E>
__attribute__((target("avx2,fma,f16c,avx512f,avx512vl"))) void scores8_pair(const float* q0, const float* q1,
                                                                            const E* const (&k)[8],
                                                                            std::size_t vecs, float scale,
                                                                            float* s0, float* s1) noexcept {
    __m256 a[8];
    __m256 b[8];
#pragma GCC unroll 8
    for (std::size_t i = 0; i < 8; ++i) a[i] = b[i] = _mm256_setzero_ps();
    for (std::size_t d = 0; d < vecs; ++d) {
        const __m256 qa = _mm256_loadu_ps(q0 + 8 * d);
        const __m256 qb = _mm256_loadu_ps(q1 + 8 * d);
#pragma GCC unroll 8
        for (std::size_t i = 0; i < 8; ++i) {
            const __m256 kv = load8(k[i] + 8 * d);
            a[i] = _mm256_fmadd_ps(qa, kv, a[i]);
            b[i] = _mm256_fmadd_ps(qb, kv, b[i]);
        }
    }
    const __m256 vs = _mm256_set1_ps(scale);
    _mm256_storeu_ps(s0, _mm256_mul_ps(hsum8_avx2(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]), vs));
    _mm256_storeu_ps(s1, _mm256_mul_ps(hsum8_avx2(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]), vs));
}

/// The scaled scores of 8 positions (keys k[0..8)) for one query head: the
/// chains of scores8_pair, for a head without a partner or a machine
/// without AVX-512VL.
template <class E>
__attribute__((target("avx2,fma,f16c"))) void scores8_one(const float* qh, const E* const (&k)[8], std::size_t vecs,
                                                         float scale, float* s) noexcept {
    __m256 a[8];
#pragma GCC unroll 8
    for (std::size_t i = 0; i < 8; ++i) a[i] = _mm256_setzero_ps();
    for (std::size_t d = 0; d < vecs; ++d) {
        const __m256 qv = _mm256_loadu_ps(qh + 8 * d);
#pragma GCC unroll 8
        for (std::size_t i = 0; i < 8; ++i) a[i] = _mm256_fmadd_ps(qv, load8(k[i] + 8 * d), a[i]);
    }
    const __m256 sums = hsum8_avx2(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
    _mm256_storeu_ps(s, _mm256_mul_ps(sums, _mm256_set1_ps(scale)));
}

/// A 16-lane chain folded to 8 lanes: its upper half added to its lower.
__attribute__((target("avx2,fma,f16c,avx512f,avx512vl"))) inline __m256 fold16(__m512 v) noexcept {
    return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

/// scores8_pair for head_dim a multiple of 16, on 16-lane vectors: each
/// score is one 16-lane FMA chain over the head, folded to 8 lanes, then
/// the same horizontal sum. Half the FMAs (and conversions of an F16
/// cache) of the 8-lane chains: the scores of a 2000-token prompt took a
/// quarter of its prefill with them. A head alone (scores8_one_avx512) runs
/// the same chains, so a group's heads still get bitwise what each gets alone.
template <class E>
__attribute__((target("avx2,fma,f16c,avx512f,avx512vl"))) void scores8_pair_avx512(const float* q0, const float* q1,
                                                                                   const E* const (&k)[8],
                                                                                   std::size_t vecs16, float scale,
                                                                                   float* s0, float* s1) noexcept {
    __m512 a[8];
    __m512 b[8];
#pragma GCC unroll 8
    for (std::size_t i = 0; i < 8; ++i) a[i] = b[i] = _mm512_setzero_ps();
    for (std::size_t d = 0; d < vecs16; ++d) {
        const __m512 qa = _mm512_loadu_ps(q0 + 16 * d);
        const __m512 qb = _mm512_loadu_ps(q1 + 16 * d);
#pragma GCC unroll 8
        for (std::size_t i = 0; i < 8; ++i) {
            const __m512 kv = load16(k[i] + 16 * d);
            a[i] = _mm512_fmadd_ps(qa, kv, a[i]);
            b[i] = _mm512_fmadd_ps(qb, kv, b[i]);
        }
    }
    const __m256 vs = _mm256_set1_ps(scale);
    _mm256_storeu_ps(s0, _mm256_mul_ps(hsum8_avx2(fold16(a[0]), fold16(a[1]), fold16(a[2]), fold16(a[3]),
                                                  fold16(a[4]), fold16(a[5]), fold16(a[6]), fold16(a[7])),
                                       vs));
    _mm256_storeu_ps(s1, _mm256_mul_ps(hsum8_avx2(fold16(b[0]), fold16(b[1]), fold16(b[2]), fold16(b[3]),
                                                  fold16(b[4]), fold16(b[5]), fold16(b[6]), fold16(b[7])),
                                       vs));
}

/// scores8_pair_avx512's chains for one query head.
template <class E>
__attribute__((target("avx2,fma,f16c,avx512f,avx512vl"))) void scores8_one_avx512(const float* qh,
                                                                                  const E* const (&k)[8],
                                                                                  std::size_t vecs16, float scale,
                                                                                  float* s) noexcept {
    __m512 a[8];
#pragma GCC unroll 8
    for (std::size_t i = 0; i < 8; ++i) a[i] = _mm512_setzero_ps();
    for (std::size_t d = 0; d < vecs16; ++d) {
        const __m512 qv = _mm512_loadu_ps(qh + 16 * d);
#pragma GCC unroll 8
        for (std::size_t i = 0; i < 8; ++i) a[i] = _mm512_fmadd_ps(qv, load16(k[i] + 16 * d), a[i]);
    }
    const __m256 sums = hsum8_avx2(fold16(a[0]), fold16(a[1]), fold16(a[2]), fold16(a[3]), fold16(a[4]),
                                   fold16(a[5]), fold16(a[6]), fold16(a[7]));
    _mm256_storeu_ps(s, _mm256_mul_ps(sums, _mm256_set1_ps(scale)));
}

/// The scaled scores of 8 positions for a KV head's `group` query heads
/// (rows `stride` floats apart), in pairs where the machine has the
/// registers: 16-lane chains when head_dim is a multiple of 16, else 8-lane.
/// Which chains a score gets depends only on the machine and head_dim.
template <class E>
__attribute__((target("avx2,fma,f16c"))) void scores8(const float* q, std::size_t group, std::size_t head_dim,
                                                     const E* const (&k)[8], float scale, float* s,
                                                     std::size_t stride) noexcept {
    std::size_t h = 0;
    if (has_avx512vl && head_dim % 16 == 0) {
        const std::size_t vecs16 = head_dim / 16;
        for (; h + 2 <= group; h += 2) {
            scores8_pair_avx512(q + h * head_dim, q + (h + 1) * head_dim, k, vecs16, scale, s + h * stride,
                                s + (h + 1) * stride);
        }
        if (h < group) scores8_one_avx512(q + h * head_dim, k, vecs16, scale, s + h * stride);
        return;
    }
    const std::size_t vecs = head_dim / 8;
    if (has_avx512vl) {
        for (; h + 2 <= group; h += 2) {
            scores8_pair(q + h * head_dim, q + (h + 1) * head_dim, k, vecs, scale, s + h * stride,
                         s + (h + 1) * stride);
        }
    }
    for (; h < group; ++h) scores8_one(q + h * head_dim, k, vecs, scale, s + h * stride);
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

/// attend_scalar's computation for head_dim a multiple of 8, kept in registers.
/// Each score is one 8-lane FMA chain over the head followed by one fixed
/// horizontal sum, whether it is computed alone or beside seven others
/// (eight positions at a time hide the FMA latency and keep eight loads in
/// flight); the weighted sum of values runs over positions in ascending
/// order. The query heads of the group share each read of the keys and
/// values, which is what grouped-query attention is for: a Llama-3 8B reads
/// its cache once per step instead of four times.
template <class E>
__attribute__((target("avx2,fma,f16c"))) void attend_avx2(const float* q, std::size_t group, std::size_t head_dim,
                                                          std::size_t kv_head, std::size_t pos,
                                                          const basic_attention_source<E>& src, float* out,
                                                          float* scratch) noexcept {
    const std::size_t n = pos + 1;
    // Each head's row of scores, padded to whole vectors (see attend_scratch_size).
    const std::size_t stride = (n + 7) & ~std::size_t{7};
    const std::size_t bs = src.block_size;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    const cache_rows<E> rows(src, head_dim, kv_head);
    const std::size_t offset = rows.offset;
    auto key = [&](std::size_t j) { return rows.at(src.key_blocks, j); };
    auto value = [&](std::size_t j) { return rows.at(src.value_blocks, j); };
    // Eight positions at a time, reduced together, the last group padded.
    // Which path a position takes depends only on the query's own position,
    // so results stay batch invariant. The group's query heads take each run
    // of eight keys in turn while it is in L1: the keys are read from the
    // cache once for the group.
    const std::size_t row_bytes = head_dim * sizeof(E);
    const bool runs = bs % 8 == 0; // a group of eight lies within one block
    std::size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        // The cache is read in short runs (one block of one head) that the
        // hardware prefetcher barely starts on: ask for the keys two groups
        // ahead, and for this group's values, which the weighted sum reads
        // after the softmax. When a group's rows are one run, its lines are
        // asked for (a tiny head's row is half a line), keys and values in
        // turn (all keys, then all values: 2% slower steps of `small`).
        const E* k[8];
        if (runs) {
            const std::size_t ahead = j + 16 < n ? std::min<std::size_t>(n - j - 16, 8) * row_bytes : 0;
            const char* kp = reinterpret_cast<const char*>(key(ahead != 0 ? j + 16 : j));
            const char* vp = reinterpret_cast<const char*>(value(j));
            for (std::size_t b = 0; b < 8 * row_bytes; b += 64) {
                if (b < ahead) _mm_prefetch(kp + b, _MM_HINT_T0);
                _mm_prefetch(vp + b, _MM_HINT_T1);
            }
            const E* k0 = key(j);
            for (std::size_t i = 0; i < 8; ++i) k[i] = k0 + i * head_dim;
        } else {
            for (std::size_t i = 0; i < 8; ++i) {
                if (j + 16 + i < n) {
                    const char* kp = reinterpret_cast<const char*>(key(j + 16 + i));
                    for (std::size_t b = 0; b < row_bytes; b += 64) _mm_prefetch(kp + b, _MM_HINT_T0);
                }
                const char* vp = reinterpret_cast<const char*>(value(j + i));
                for (std::size_t b = 0; b < row_bytes; b += 64) _mm_prefetch(vp + b, _MM_HINT_T1);
                k[i] = key(j + i);
            }
        }
        scores8(q, group, head_dim, k, scale, scratch + j, stride);
    }
    if (j < n) {
        // The last, partial group: padded with its last key, its extra scores
        // landing in the row's padding, where the softmax ignores them. One
        // reduction of eight chains costs less than one lone chain's latency
        // a position (a short context is mostly this tail).
        const std::size_t valid = n - j;
        const E* k[8];
        for (std::size_t i = 0; i < 8; ++i) k[i] = key(j + (i < valid ? i : valid - 1));
        scores8(q, group, head_dim, k, scale, scratch + j, stride);
    }
    softmax_rows_avx2(scratch, group, n, stride);
    // The weighted sums of values, query heads four, then two, then one at a
    // time sharing each pass over the values; every output element sums its
    // positions in ascending order whichever pass computes it.
    std::size_t h = 0;
    const float* p[4];
    float* o[4];
    auto heads = [&](std::size_t count) {
        for (std::size_t i = 0; i < count; ++i) {
            p[i] = scratch + (h + i) * stride;
            o[i] = out + (h + i) * head_dim;
        }
        h += count;
    };
    if (has_avx512f && head_dim % 16 == 0) {
        // 16-lane vectors, bitwise the same sums, block by block.
        std::fill_n(out, group * head_dim, 0.0f);
        for (std::size_t b = 0; b * bs < n; ++b) {
            if ((b + 1) * bs < n) {
                prefetch_rows(src.value_blocks[b + 1] + offset, std::min(bs, n - (b + 1) * bs), row_bytes);
            }
            weighted_block_avx512(scratch + b * bs, stride, group, std::min(bs, n - b * bs),
                                  src.value_blocks[b] + offset, head_dim, out);
        }
        return;
    }
    for (; h + 4 <= group;) {
        heads(4);
        weighted_rows_avx2<2, 4>(p, n, src.value_blocks, bs, head_dim, offset, o);
    }
    if (h + 2 <= group) {
        heads(2);
        weighted_rows_avx2<4, 2>(p, n, src.value_blocks, bs, head_dim, offset, o);
    }
    if (h < group) {
        heads(1);
        weighted_rows_avx2<8, 1>(p, n, src.value_blocks, bs, head_dim, offset, o);
    }
}

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

/// weighted_run_avx512 over `n` query rows, each its own weights p[r] and
/// output o[r] (any token's, any head's), four, then two, then one at a
/// time sharing each read of the `count` value rows at `v`.
__attribute__((target("avx512f,avx2,fma,f16c"))) inline void weighted_rows_avx512(const float* const* p,
                                                                                  float* const* o, std::size_t n,
                                                                                  std::size_t count, const float* v,
                                                                                  std::size_t head_dim) noexcept {
    std::size_t r = 0;
    for (; r + 4 <= n; r += 4) weighted_run_avx512<4>(p + r, count, v, head_dim, o + r);
    if (r + 2 <= n) {
        weighted_run_avx512<2>(p + r, count, v, head_dim, o + r);
        r += 2;
    }
    if (r < n) weighted_run_avx512<1>(p + r, count, v, head_dim, o + r);
}

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

/// The largest head attend_rows_avx512 takes (its transposed keys are on
/// the stack): 16 x 256 floats.
constexpr std::size_t max_rows_head_dim = 256;

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

    // Sixteen keys at a time, turned into columns once for every token that
    // attends to any of them (past the last token's positions, the last key
    // stands in: those scores land in rows' padding or past a token's own
    // positions, which its softmax and weighted sum never read).
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
        const std::size_t both = second ? std::max(first_token(j + 16), first_token(j)) : tokens;
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
            const std::size_t whole = std::max(first_token(j0 + run - 1), first_token(j0));
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
#endif

} // namespace

namespace {

#ifdef WEFT_SERVE_X86
const bool has_f16c = __builtin_cpu_supports("f16c");
#endif

template <class E>
void attend_any(const float* q, std::size_t group, std::size_t head_dim, std::size_t kv_head, std::size_t pos,
                const basic_attention_source<E>& src, float* out, float* scratch) noexcept {
#ifdef WEFT_SERVE_X86
    if (has_avx2 && has_f16c && head_dim % 8 == 0) return attend_avx2(q, group, head_dim, kv_head, pos, src, out, scratch);
#endif
    attend_scalar(q, group, head_dim, kv_head, pos, src, out, scratch);
}

} // namespace

void attend(const float* q, std::size_t group, std::size_t head_dim, std::size_t kv_head, std::size_t pos,
            const attention_source& src, float* out, float* scratch) noexcept {
    attend_any(q, group, head_dim, kv_head, pos, src, out, scratch);
}

void attend(const float* q, std::size_t group, std::size_t head_dim, std::size_t kv_head, std::size_t pos,
            const attention_source_f16& src, float* out, float* scratch) noexcept {
    attend_any(q, group, head_dim, kv_head, pos, src, out, scratch);
}

namespace {

template <class E>
void attend_rows_any(const float* q, std::size_t q_stride, std::size_t tokens, std::size_t group,
                     std::size_t head_dim, std::size_t kv_head, std::size_t first_pos,
                     const basic_attention_source<E>& src, float* out, std::size_t out_stride,
                     float* scratch) noexcept {
#ifdef WEFT_SERVE_X86
    if (tokens > 1 && has_avx2 && has_f16c && has_avx512vl && head_dim % 16 == 0 && head_dim <= max_rows_head_dim) {
        return attend_rows_avx512(q, q_stride, tokens, group, head_dim, kv_head, first_pos, src, out, out_stride,
                                  scratch);
    }
#endif
    for (std::size_t t = 0; t < tokens; ++t) {
        attend_any(q + t * q_stride, group, head_dim, kv_head, first_pos + t, src, out + t * out_stride, scratch);
    }
}

} // namespace

void attend_rows(const float* q, std::size_t q_stride, std::size_t tokens, std::size_t group, std::size_t head_dim,
                 std::size_t kv_head, std::size_t first_pos, const attention_source& src, float* out,
                 std::size_t out_stride, float* scratch) noexcept {
    attend_rows_any(q, q_stride, tokens, group, head_dim, kv_head, first_pos, src, out, out_stride, scratch);
}

void attend_rows(const float* q, std::size_t q_stride, std::size_t tokens, std::size_t group, std::size_t head_dim,
                 std::size_t kv_head, std::size_t first_pos, const attention_source_f16& src, float* out,
                 std::size_t out_stride, float* scratch) noexcept {
    attend_rows_any(q, q_stride, tokens, group, head_dim, kv_head, first_pos, src, out, out_stride, scratch);
}

} // namespace weft::serve::kernels
