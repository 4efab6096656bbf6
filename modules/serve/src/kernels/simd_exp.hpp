// Internal: e^x on eight float lanes (AVX2 + FMA) or sixteen (AVX-512F), shared
// by the softmax of attention and the SiLU of the feed-forward block.
//
// x = n ln2 + r with |r| <= ln2 / 2, e^r by its degree-6 Taylor polynomial
// (relative error ~1e-7), 2^n put into the exponent bits. Inputs are clamped
// to [-87, 88], where 2^n stays a normal float: below, the result is ~0
// (e^-87 ~ 1.6e-38); above, ~1.65e38 instead of infinity.
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstddef>
#include <iterator>

namespace weft::serve::kernels {

/// The constants of exp_avx2 and exp_avx512, written once so that both
/// widths perform the same operations and give the same bits.
namespace exp_constants {
inline constexpr float lowest = -87.0f;
inline constexpr float highest = 88.0f;
inline constexpr float log2e = 1.44269504088896341f;
// ln 2 in two parts, so that n * ln2_hi is exact.
inline constexpr float ln2_hi = 0.693359375f;
inline constexpr float ln2_lo = -2.12194440e-4f;
// e^r's Taylor coefficients, from r^6's down to r^0's, in Horner order.
inline constexpr float taylor[] = {1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f, 1.0f};
} // namespace exp_constants

__attribute__((target("avx2,fma"))) inline __m256 exp_avx2(__m256 x) noexcept {
    namespace k = exp_constants;
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(k::lowest)), _mm256_set1_ps(k::highest));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(k::log2e)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(k::ln2_hi), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(k::ln2_lo), r);
    __m256 p = _mm256_set1_ps(k::taylor[0]);
#pragma GCC unroll 8
    for (std::size_t i = 1; i < std::size(k::taylor); ++i) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(k::taylor[i]));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/// exp_avx2 on sixteen lanes: the same operations, so the same bits.
__attribute__((target("avx2,fma,avx512f"))) inline __m512 exp_avx512(__m512 x) noexcept {
    namespace k = exp_constants;
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(k::lowest)), _mm512_set1_ps(k::highest));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(k::log2e)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(k::ln2_hi), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(k::ln2_lo), r);
    __m512 p = _mm512_set1_ps(k::taylor[0]);
#pragma GCC unroll 8
    for (std::size_t i = 1; i < std::size(k::taylor); ++i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(k::taylor[i]));
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

} // namespace weft::serve::kernels
#endif
