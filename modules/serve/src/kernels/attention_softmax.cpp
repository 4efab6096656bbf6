// The softmax rows of the CPU attention kernels on 8 and 16 lanes (see
// attention_simd.hpp).
#include "kernels/attention_simd.hpp"

#if defined(__x86_64__)

#include "kernels/simd_exp.hpp"

#include <cstddef>
#include <limits>

namespace weft::serve::kernels::attention_simd {

namespace {

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

} // namespace

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

namespace {

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

} // namespace

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

} // namespace weft::serve::kernels::attention_simd

#endif
