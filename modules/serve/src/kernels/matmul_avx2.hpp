/// \file
/// Helpers shared by the AVX2 kernel files (matmul_avx2*.cpp) and reused by
/// the AVX-512 ones: the fixed horizontal reduction every accumulator ends
/// with, and f16 loads. Only for x86 builds (WEFT_KERNELS_X86).
///
/// Threading: pure functions; safe from any thread.
#pragma once

#include "kernels/matmul_impl.hpp"

#if WEFT_KERNELS_X86

// GCC 12 reports its own _mm512_undefined_* placeholders (self-initialised
// in the intrinsic headers) as uninitialised once inlined; the diagnostic
// state at the header's lines is what counts, so it is silenced around it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace weft::serve::kernels {

namespace avx2 {

/// Sum of the 8 lanes, always in the same order:
/// ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)).
WEFT_TARGET_AVX2 inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/// The f16 at `p` (any alignment) as float.
WEFT_TARGET_AVX2 inline float half_at(const std::byte* p) {
    std::uint16_t h = 0;
    std::memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

} // namespace avx2

/// The AVX2 tiles of the k-quants (matmul_avx2_k.cpp).
const tile_set* avx2_k_tiles(ggml_type wt) noexcept;

} // namespace weft::serve::kernels

#endif
