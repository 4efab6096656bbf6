/// \file
/// Helpers shared by the AVX2 kernel files (matmul_avx2*.cpp), some reused by
/// the AVX-512 ones: the fixed reduction every accumulator ends with, the
/// two-block layout of the Q8_0 / Q4_0 tiles, and the Q4_K scale unpacking.
/// Only for x86 builds (WEFT_KERNELS_X86).
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

/// The sums of the 8 lanes of each of 8 accumulators, lane i for v[i]. Every
/// sum takes the same tree, ((v0 + v4) + (v1 + v5)) + ((v2 + v6) + (v3 + v7)),
/// whatever the other accumulators hold: that fixed order is part of what
/// keeps results batch invariant.
WEFT_TARGET_AVX2 inline __m256 reduce8(const __m256* v) {
    __m256 h[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
        h[i] = _mm256_add_ps(_mm256_permute2f128_ps(v[2 * i], v[2 * i + 1], 0x20),
                             _mm256_permute2f128_ps(v[2 * i], v[2 * i + 1], 0x31));
    }
    const __m256 sums = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3]));
    // [v0 v2 v4 v6 | v1 v3 v5 v7] back to v0 .. v7
    return _mm256_permutevar8x32_ps(sums, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/// out[i] = sum of the lanes of v[i] for i < N, by reduce8 (zero padding).
template <int N>
WEFT_TARGET_AVX2 inline void reduce_all(const __m256* v, float* out) {
#pragma GCC unroll 8
    for (int i = 0; i + 8 <= N; i += 8) {
        _mm256_storeu_ps(out + i, reduce8(v + i));
    }
    if constexpr (N % 8 != 0) {
        constexpr int done = N / 8 * 8;
        __m256 last[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) {
            last[i] = i < N % 8 ? v[done + i] : _mm256_setzero_ps();
        }
        alignas(32) float sums[8];
        _mm256_store_ps(sums, reduce8(last));
        std::memcpy(out + done, sums, sizeof(float) * (N % 8));
    }
}

/// The R x T accumulators of a tile reduced into out[t * R + r]: token-major,
/// so that each token's R results are contiguous, as its output row wants
/// them. (Each accumulator's reduction is the same whatever its place.)
template <int R, int T>
WEFT_TARGET_AVX2 inline void finish(const __m256 (&acc)[R][T], float* out) {
    __m256 by_token[R * T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            by_token[t * R + r] = acc[r][t];
        }
    }
    reduce_all<R * T>(by_token, out);
}

/// Blocks of 32 are handled two at a time: a vector's lower 128 bits hold
/// bytes of block b, its upper 128 bits the same bytes of block b + 1, so
/// that each 32-bit lane's integer dot product belongs to one block and one
/// float FMA per (row, token) covers both blocks. `b1` null: block b is the
/// last one (odd count); the upper halves are zero.
struct byte_pair {
    __m256i lo; ///< bytes 0..15 of both blocks
    __m256i hi; ///< bytes 16..31 of both blocks
};

/// The 32 bytes at `b0` and at `b1` (if any) in pair layout.
WEFT_TARGET_AVX2 inline byte_pair load_pair(const std::byte* b0, const std::byte* b1) {
    const __m128i lo0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b0));
    const __m128i hi0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b0 + 16));
    if (b1 == nullptr) {
        return {_mm256_zextsi128_si256(lo0), _mm256_zextsi128_si256(hi0)};
    }
    const __m128i lo1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b1));
    const __m128i hi1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b1 + 16));
    return {_mm256_inserti128_si256(_mm256_castsi128_si256(lo0), lo1, 1),
            _mm256_inserti128_si256(_mm256_castsi128_si256(hi0), hi1, 1)};
}

/// The f16 scales at `b0` and `b1` (0 if null) as [d0 x4 | d1 x4].
WEFT_TARGET_AVX2 inline __m256 scale_pair(const std::byte* b0, const std::byte* b1) {
    std::uint16_t h0 = 0;
    std::uint16_t h1 = 0;
    std::memcpy(&h0, b0, sizeof h0);
    if (b1 != nullptr) {
        std::memcpy(&h1, b1, sizeof h1);
    }
    const __m128 d = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(h0 | (static_cast<std::uint32_t>(h1) << 16))));
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d), _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
}

/// The 16 levels of a Q4_0 block pair, unsigned (0..15): its low nibbles
/// are elements 0..15, its high nibbles 16..31.
WEFT_TARGET_AVX2 inline byte_pair q4_0_pair(const std::byte* b0, const std::byte* b1) {
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b0 + 2));
    const __m256i raw =
        b1 == nullptr
            ? _mm256_zextsi128_si256(q0)
            : _mm256_inserti128_si256(_mm256_castsi128_si256(q0),
                                      _mm_loadu_si128(reinterpret_cast<const __m128i*>(b1 + 2)), 1);
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    return {_mm256_and_si256(raw, low4), _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4)};
}

/// The scales and mins of a Q4_K block (12 packed bytes at `s`, with 4 more
/// readable after them, as the block's qs are): bytes 0..7 the scales,
/// bytes 8..15 the mins. The same unpacking as q4_k_unpack_scales, on the
/// four 32-bit words at once.
WEFT_TARGET_AVX2 inline __m128i q4_k_scales(const std::uint8_t* s) {
    const __m128i w = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s));
    const __m128i a = _mm_shuffle_epi32(w, _MM_SHUFFLE(2, 1, 2, 0)); // w0 w2 w1 w2
    const __m128i b = _mm_shuffle_epi32(w, _MM_SHUFFLE(1, 1, 0, 0)); // w0 w0 w1 w1
    const __m128i low = _mm_and_si128(_mm_srlv_epi32(a, _mm_setr_epi32(0, 0, 0, 4)),
                                      _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    // Top two bits of bytes 0..7 (bits 6, 7) become bits 4, 5 of scales / mins 4..7.
    const __m128i high = _mm_and_si128(_mm_srli_epi32(b, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
    return _mm_or_si128(low, high);
}

} // namespace avx2

/// The AVX2 tiles of the k-quants (matmul_avx2_k.cpp).
const tile_set* avx2_k_tiles(ggml_type wt) noexcept;

} // namespace weft::serve::kernels

#endif
