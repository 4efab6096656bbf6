// The softmax rows of the CPU attention kernels on 8 and 16 lanes (see
// attention_simd.hpp).
#include "kernels/attention_simd.hpp"

#if defined(__x86_64__)

#include "kernels/simd_exp.hpp"

#include <cstddef>
#include <limits>

namespace weft::serve::kernels::attention_simd {

namespace {

/// R rows of n scores, each `stride` floats after the last, that a softmax
/// takes in lockstep: each row's maximum, then e^(s - max) summed lane-wise
/// on 8 lanes, then one fixed horizontal sum. The rows' chains are
/// independent and interleaved: a short row is a chain of latencies (the
/// exponential's polynomial, the sums), which R rows wait out together. The
/// positions past the last multiple of eight go through the same lanes
/// under a mask (a short context is mostly that tail: an exponential each
/// would cost more than the rest). The steps both widths share are here;
/// the loops over whole vectors are softmax_lockstep's (8 lanes) and
/// softmax_lockstep16's.
template <std::size_t R>
struct lockstep_rows {
    float* s[R];
    std::size_t full, tail;
    __m256 tail_mask, vmax[R], last[R], vsum[R];

    /// The rows' maxima, in every lane of vmax, and their last partial vectors.
    __attribute__((target("avx2,fma"))) lockstep_rows(float* scores, std::size_t n, std::size_t stride) noexcept
        : full(n & ~std::size_t{7}), tail(n - full) {
        // Lanes [0, tail) of the last, partial vector. The row's padding
        // holds whatever was stored there (finite scores of the padded keys):
        // read whole, those lanes are replaced by -inf; written whole, they
        // take the zeros the mask leaves them (a masked load and store, or a
        // copy of the tail, cost more than the row's arithmetic in a short
        // context).
        tail_mask = _mm256_castsi256_ps(
            _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(tail)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
        const __m256 minus_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
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
    }

    /// The exponentials of the 8 scores at j, stored and summed.
    __attribute__((target("avx2,fma"))) void exp8(std::size_t j) noexcept {
#pragma GCC unroll 4
        for (std::size_t r = 0; r < R; ++r) {
            const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(s[r] + j), vmax[r]));
            _mm256_storeu_ps(s[r] + j, e);
            vsum[r] = _mm256_add_ps(vsum[r], e);
        }
    }

    /// The exponentials of the tail, kept in `last` and summed; then the
    /// rows' sums.
    __attribute__((target("avx2,fma"))) void exp_tail_and_sum(float* inverse) noexcept {
        if (tail != 0) {
#pragma GCC unroll 4
            for (std::size_t r = 0; r < R; ++r) {
                // exp of the clamped -inf is tiny, not zero: the mask zeroes it.
                last[r] = _mm256_and_ps(exp_avx2(_mm256_sub_ps(last[r], vmax[r])), tail_mask);
                vsum[r] = _mm256_add_ps(vsum[r], last[r]);
            }
        }
#pragma GCC unroll 4
        for (std::size_t r = 0; r < R; ++r) inverse[r] = 1.0f / hsum_avx2(vsum[r]);
    }

    /// The 8 weights at j times the rows' inverse sums.
    __attribute__((target("avx2,fma"))) void scale8(std::size_t j, const float* inverse) noexcept {
#pragma GCC unroll 4
        for (std::size_t r = 0; r < R; ++r) {
            _mm256_storeu_ps(s[r] + j, _mm256_mul_ps(_mm256_loadu_ps(s[r] + j), _mm256_set1_ps(inverse[r])));
        }
    }
    /// The tail's weights times them.
    __attribute__((target("avx2,fma"))) void scale_tail(const float* inverse) noexcept {
        if (tail == 0) return;
#pragma GCC unroll 4
        for (std::size_t r = 0; r < R; ++r) {
            _mm256_storeu_ps(s[r] + full, _mm256_mul_ps(last[r], _mm256_set1_ps(inverse[r])));
        }
    }
};

/// The softmax of R rows in lockstep on 8 lanes (see lockstep_rows).
template <std::size_t R>
__attribute__((target("avx2,fma"))) void softmax_lockstep(float* scores, std::size_t n, std::size_t stride) noexcept {
    lockstep_rows<R> rows(scores, n, stride);
    for (std::size_t j = 0; j < rows.full; j += 8) rows.exp8(j);
    float inverse[R];
    rows.exp_tail_and_sum(inverse);
    for (std::size_t j = 0; j < rows.full; j += 8) rows.scale8(j, inverse);
    rows.scale_tail(inverse);
}

/// softmax_lockstep with the exponentials and the scaling on sixteen lanes
/// (exp_avx512 gives exp_avx2's bits, and both are per element). The maxima
/// and the sums stay the 8-lane chains softmax_lockstep runs, in its order
/// (a vector's low half, then its high half), so every weight is bitwise
/// the one it computes: the exponentials were most of a long row's time.
template <std::size_t R>
__attribute__((target("avx2,fma,avx512f"))) void softmax_lockstep16(float* scores, std::size_t n,
                                                                    std::size_t stride) noexcept {
    lockstep_rows<R> rows(scores, n, stride);
    const std::size_t wide = n & ~std::size_t{15};
    __m512 vmax16[R];
#pragma GCC unroll 4
    for (std::size_t r = 0; r < R; ++r) vmax16[r] = _mm512_broadcastss_ps(_mm256_castps256_ps128(rows.vmax[r]));
    for (std::size_t j = 0; j < wide; j += 16) {
#pragma GCC unroll 4
        for (std::size_t r = 0; r < R; ++r) {
            const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(rows.s[r] + j), vmax16[r]));
            _mm512_storeu_ps(rows.s[r] + j, e);
            rows.vsum[r] = _mm256_add_ps(rows.vsum[r], _mm512_castps512_ps256(e));
            rows.vsum[r] =
                _mm256_add_ps(rows.vsum[r], _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1)));
        }
    }
    if (wide != rows.full) rows.exp8(wide);
    float inverse[R];
    rows.exp_tail_and_sum(inverse);
    for (std::size_t j = 0; j < wide; j += 16) {
#pragma GCC unroll 4
        for (std::size_t r = 0; r < R; ++r) {
            _mm512_storeu_ps(rows.s[r] + j, _mm512_mul_ps(_mm512_loadu_ps(rows.s[r] + j), _mm512_set1_ps(inverse[r])));
        }
    }
    if (wide != rows.full) rows.scale8(wide, inverse);
    rows.scale_tail(inverse);
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
