/// \file
/// Helpers shared by the AVX-512 kernel files (matmul_avx512*.cpp): the
/// fixed reduction of a 16-lane accumulator. Only for x86 builds
/// (WEFT_KERNELS_X86).
///
/// Threading: pure functions; safe from any thread.
#pragma once

#include "kernels/matmul_avx2.hpp"
#include "kernels/matmul_impl.hpp"

#if WEFT_KERNELS_X86

#include <immintrin.h>

namespace weft::serve::kernels {

namespace avx512 {

/// Sum of the 16 lanes, always in the same order: the two 8-lane halves
/// added lane-wise, then avx2::hsum.
WEFT_TARGET_AVX512 inline float hsum(__m512 v) {
    const __m256 lo = _mm512_castps512_ps256(v);
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return avx2::hsum(_mm256_add_ps(lo, hi));
}

} // namespace avx512

/// The AVX-512 tiles of the k-quants (matmul_avx512_k.cpp).
const tile_set* avx512_k_tiles(ggml_type wt) noexcept;

} // namespace weft::serve::kernels

#endif
