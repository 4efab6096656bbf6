// AVX-512 kernels (F/BW/VL/DQ/VNNI): float weights on 16-lane vectors, and
// the 32-element block formats (Q8_0, Q4_0) with VNNI dot products. The
// k-quants are in matmul_avx512_k.cpp.
//
// As on AVX2, each (weight row, token) owns one accumulator fed in k order
// by explicit FMAs and ends in one fixed reduction, whatever the tile shape.
#include "kernels/matmul_impl.hpp"

#if WEFT_KERNELS_X86

#include "kernels/matmul_avx2.hpp"
#include "kernels/matmul_avx512.hpp"

#include <cstdint>

namespace weft::serve::kernels {

namespace {

// --- float weights ---------------------------------------------------------------

struct load_f32 {
    static constexpr std::size_t bytes = 4;
    WEFT_TARGET_AVX512 static __m512 load(const std::byte* p) {
        return _mm512_loadu_ps(reinterpret_cast<const float*>(p));
    }
    WEFT_TARGET_AVX512 static __m512 load(const std::byte* p, __mmask16 m) {
        return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(p));
    }
};

struct load_f16 {
    static constexpr std::size_t bytes = 2;
    WEFT_TARGET_AVX512 static __m512 load(const std::byte* p) {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
    WEFT_TARGET_AVX512 static __m512 load(const std::byte* p, __mmask16 m) {
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
    }
};

struct load_bf16 {
    static constexpr std::size_t bytes = 2;
    WEFT_TARGET_AVX512 static __m512 widen(__m256i h) {
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    WEFT_TARGET_AVX512 static __m512 load(const std::byte* p) {
        return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
    WEFT_TARGET_AVX512 static __m512 load(const std::byte* p, __mmask16 m) {
        return widen(_mm256_maskz_loadu_epi16(m, p));
    }
};

/// One 16-element step for every (r, t); `m` masks the tail (all ones otherwise).
template <class W, int R, int T, bool Masked>
WEFT_TARGET_AVX512 inline void float_step(__m512 (&acc)[R][T], const std::byte* const* w, const float* const* x,
                                          std::size_t i, __mmask16 m, std::size_t pf) {
    __m512 xv[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
        xv[t] = Masked ? _mm512_maskz_loadu_ps(m, x[t] + i) : _mm512_loadu_ps(x[t] + i);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
        const __m512 wv = Masked ? W::load(w[r] + i * W::bytes, m) : W::load(w[r] + i * W::bytes);
        if (pf != 0) {
            prefetch(w[r] + i * W::bytes + pf);
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
}

template <class W, int R, int T>
WEFT_TARGET_AVX512 void float_tile(const std::byte* const* wp, const std::byte* const* xp, std::size_t k,
                                   std::size_t pf, float* out) {
    __m512 acc[R][T];
    const float* x[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
        x[t] = reinterpret_cast<const float*>(xp[t]);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            acc[r][t] = _mm512_setzero_ps();
        }
    }
    const std::size_t full = k / 16 * 16;
    for (std::size_t i = 0; i < full; i += 16) {
        float_step<W, R, T, false>(acc, wp, x, i, 0xffff, pf);
    }
    if (full < k) {
        // Masked-off lanes load zeros: one more step for every (r, t).
        const auto m = static_cast<__mmask16>((1u << (k - full)) - 1u);
        float_step<W, R, T, true>(acc, wp, x, full, m, 0);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            out[r * T + t] = avx512::hsum(acc[r][t]);
        }
    }
}

// --- Q8_0 / Q4_0 weights x Q8_0 activations --------------------------------------

struct blocks_q8_0 {
    static constexpr std::size_t bytes = sizeof(block_q8_0);
    WEFT_TARGET_AVX512 static __m256i levels(const std::byte* blk) {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
    }
};

struct blocks_q4_0 {
    static constexpr std::size_t bytes = sizeof(block_q4_0);
    WEFT_TARGET_AVX512 static __m256i levels(const std::byte* blk) {
        const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
        const __m256i both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
        return _mm256_sub_epi8(_mm256_and_si256(both, _mm256_set1_epi8(0x0f)), _mm256_set1_epi8(8));
    }
};

/// VNNI multiplies unsigned by signed bytes. The activations become unsigned
/// by flipping their top bit (x + 128); sum (x + 128) w - 128 sum w = sum x w,
/// and the correction -128 sum w is made once per weight block and seeds the
/// accumulation of every token. All exact in int32.
template <class W, int R, int T>
WEFT_TARGET_AVX512 void q8_tile(const std::byte* const* wp, const std::byte* const* xp, std::size_t k,
                                std::size_t pf, float* out) {
    __m256 acc[R][T];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            acc[r][t] = _mm256_setzero_ps();
        }
    }
    const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
    const std::size_t nb = k / qk_32;
    for (std::size_t b = 0; b < nb; ++b) {
        __m256i xu[T];
        __m256 dx[T];
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            const std::byte* blk = xp[t] + b * sizeof(block_q8_0);
            dx[t] = _mm256_set1_ps(avx2::half_at(blk));
            xu[t] = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2)), bias);
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            const std::byte* blk = wp[r] + b * W::bytes;
            const __m256 dw = _mm256_set1_ps(avx2::half_at(blk));
            const __m256i wq = W::levels(blk);
            if (pf != 0) {
                prefetch(blk + pf);
            }
            const __m256i seed =
                _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), bias, wq));
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) {
                const __m256 sums = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(seed, xu[t], wq));
                acc[r][t] = _mm256_fmadd_ps(sums, _mm256_mul_ps(dw, dx[t]), acc[r][t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            out[r * T + t] = avx2::hsum(acc[r][t]);
        }
    }
}

// --- tile tables -----------------------------------------------------------------

template <class W>
struct float_tiles {
    template <int R, int T>
    WEFT_TARGET_AVX512 static void run(const std::byte* const* w, const std::byte* const* x, std::size_t k,
                                       std::size_t pf, float* out) {
        float_tile<W, R, T>(w, x, k, pf, out);
    }
};

template <class W>
struct q8_tiles {
    template <int R, int T>
    WEFT_TARGET_AVX512 static void run(const std::byte* const* w, const std::byte* const* x, std::size_t k,
                                       std::size_t pf, float* out) {
        q8_tile<W, R, T>(w, x, k, pf, out);
    }
};

// 4 x 4 tiles: 16 accumulators, 4 activation vectors and a weight vector of
// the 32 registers; loads stay at half the FMAs. Decode: 8 rows, 8
// independent FMA chains.
template <class Tiles>
using avx512_table = tile_table<Tiles, 4, 4, 8>;

} // namespace

const tile_set* avx512_tiles(ggml_type wt) noexcept {
    switch (wt) {
    case ggml_type::f32: return &avx512_table<float_tiles<load_f32>>::set;
    case ggml_type::f16: return &avx512_table<float_tiles<load_f16>>::set;
    case ggml_type::bf16: return &avx512_table<float_tiles<load_bf16>>::set;
    case ggml_type::q8_0: return &avx512_table<q8_tiles<blocks_q8_0>>::set;
    case ggml_type::q4_0: return &avx512_table<q8_tiles<blocks_q4_0>>::set;
    case ggml_type::q4_k:
    case ggml_type::q6_k: return avx512_k_tiles(wt);
    default: return nullptr;
    }
}

} // namespace weft::serve::kernels

#endif
