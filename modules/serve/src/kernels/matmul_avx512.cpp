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

// VNNI multiplies unsigned by signed bytes, so the weight levels are made
// unsigned (u = w + offset) and the activations stay signed:
// sum u x = sum w x + offset * sum x. Each token's -offset * sum x (per lane,
// exact) seeds its accumulation with every weight row.

struct blocks_q8_0 {
    static constexpr std::size_t bytes = sizeof(block_q8_0);
    static constexpr char offset = static_cast<char>(0x80); // w + 128: flip the sign bit
    WEFT_TARGET_AVX512 static avx2::byte_pair levels(const std::byte* b0, const std::byte* b1) {
        const avx2::byte_pair w = avx2::load_pair(b0 + 2, b1 == nullptr ? nullptr : b1 + 2);
        const __m256i flip = _mm256_set1_epi8(offset);
        return {_mm256_xor_si256(w.lo, flip), _mm256_xor_si256(w.hi, flip)};
    }
};

struct blocks_q4_0 {
    static constexpr std::size_t bytes = sizeof(block_q4_0);
    static constexpr char offset = 8; // stored levels are w + 8
    WEFT_TARGET_AVX512 static avx2::byte_pair levels(const std::byte* b0, const std::byte* b1) {
        return avx2::q4_0_pair(b0, b1);
    }
};

/// Two blocks per step (avx2::byte_pair layout): per (r, t), two vpdpbusd
/// give the exact sums of both blocks in separate lanes, and one FMA adds
/// them scaled by [dw dx of block b x4 | of block b + 1 x4].
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
    const __m256i offset = _mm256_set1_epi8(W::offset);
    const std::size_t nb = k / qk_32;
    for (std::size_t b = 0; b < nb; b += 2) {
        const bool two = b + 1 < nb;
        avx2::byte_pair x[T];
        __m256i seed[T];
        __m256 dx[T];
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            const std::byte* b0 = xp[t] + b * sizeof(block_q8_0);
            const std::byte* b1 = two ? b0 + sizeof(block_q8_0) : nullptr;
            x[t] = avx2::load_pair(b0 + 2, b1 == nullptr ? nullptr : b1 + 2);
            const __m256i sum = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), offset, x[t].lo),
                                                    offset, x[t].hi);
            seed[t] = _mm256_sub_epi32(_mm256_setzero_si256(), sum);
            dx[t] = avx2::scale_pair(b0, b1);
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            const std::byte* b0 = wp[r] + b * W::bytes;
            const std::byte* b1 = two ? b0 + W::bytes : nullptr;
            if (pf != 0) {
                prefetch_span<2 * W::bytes>(b0 + pf);
            }
            const avx2::byte_pair w = W::levels(b0, b1);
            const __m256 dw = avx2::scale_pair(b0, b1);
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) {
                const __m256i sums = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(seed[t], w.lo, x[t].lo), w.hi, x[t].hi);
                acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(dw, dx[t]), acc[r][t]);
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
