/// \file
/// Helpers shared by the AVX-512 kernel files (matmul_avx512*.cpp): the
/// fixed reduction of a 16-lane accumulator and the layout of packed Q8_0
/// activations. Only for x86 builds
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

/// Q8_0 activation rows as the AVX-512 kernels read them (quantize_pack_q8_0_avx512):
/// groups of 8 blocks, each 8 transposed 32-byte vectors (vector j holds
/// bytes 4j..4j+3 of every block, block i in 32-bit lane i), the 8 block
/// scales (f32), the 8 block sums of the levels (int32), and the 8 seeds
/// -128 x sum (int32) that take back the +128 of Q8_0 weights made
/// unsigned. Missing blocks (a row whose block count is not a multiple of
/// 8) are zero throughout.
inline constexpr std::size_t group_bytes = 352;
inline constexpr std::size_t group_scales = 256;
inline constexpr std::size_t group_sums = 288;
inline constexpr std::size_t group_seeds = 320;

/// The R x T 16-lane accumulators of a tile reduced into out[t * R + r]:
/// lanes i and i + 8 added, then avx2::reduce8's tree.
template <int R, int T>
WEFT_TARGET_AVX512 inline void finish(const __m512 (&acc)[R][T], float* out) {
    __m256 folded[R][T];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            folded[r][t] = _mm256_add_ps(_mm512_castps512_ps256(acc[r][t]),
                                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[r][t]), 1)));
        }
    }
    avx2::finish(folded, out);
}

} // namespace avx512

/// The AVX-512 tiles of the k-quants (matmul_avx512_k.cpp).
const tile_set* avx512_k_tiles(ggml_type wt) noexcept;

} // namespace weft::serve::kernels

#endif
