// Internal: a 16 x 16 block of floats transposed in AVX-512 registers, for
// kernels that turn rows into columns (the F32 panel kernel's activations,
// attention's keys).
#pragma once

#if defined(__x86_64__) || defined(__i386__)
// GCC 12's own AVX-512 headers trip its uninitialised-use warnings.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <cstddef>

namespace weft::serve::kernels {

/// The 16 rows of a 16 x 16 block, transposed in registers: r[j] becomes
/// column j (its element i is row i's element j). Four rounds of two-source
/// shuffles: pairs of floats, of pairs, of 128-bit lanes, twice.
__attribute__((target("avx512f"))) inline void transpose16(__m512 (&r)[16]) noexcept {
    __m512 t[16];
#pragma GCC unroll 8
    for (std::size_t i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);     // a0 b0 a1 b1, per 128-bit lane
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]); // a2 b2 a3 b3
    }
    __m512 u[16];
#pragma GCC unroll 4
    for (std::size_t i = 0; i < 16; i += 4) {
        const __m512d t0 = _mm512_castps_pd(t[i]), t1 = _mm512_castps_pd(t[i + 1]);
        const __m512d t2 = _mm512_castps_pd(t[i + 2]), t3 = _mm512_castps_pd(t[i + 3]);
        // u[i + c]: column c (of the lane's four) of rows i .. i+3
        u[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        u[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        u[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        u[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    // u[4q + c] holds, in lane l, column 4l + c of rows 4q .. 4q+3.
#pragma GCC unroll 4
    for (std::size_t c = 0; c < 4; ++c) {
        const __m512 w0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);      // cols c, 8+c of rows 0-3, 4-7
        const __m512 w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88); // the same of rows 8-11, 12-15
        const __m512 w2 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xdd);      // cols 4+c, 12+c
        const __m512 w3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xdd);
        r[c] = _mm512_shuffle_f32x4(w0, w1, 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(w0, w1, 0xdd);
        r[4 + c] = _mm512_shuffle_f32x4(w2, w3, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(w2, w3, 0xdd);
    }
}

} // namespace weft::serve::kernels

#endif
