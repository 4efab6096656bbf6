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

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

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
    avx512::finish(acc, out);
}

// --- Q8_0 / Q4_0 weights x Q8_0 activations --------------------------------------

// Blocks go in groups of 8, transposed: vector j holds bytes 4j..4j+3 of
// every block, block i in 32-bit lane i. Eight vpdpbusd then leave block i's
// exact integer dot product in lane i, and one float FMA per (r, t) covers
// all 8 blocks. The activations are transposed once, by prepare_activations
// (quantize_pack_q8_0_avx512); the weights per row and group, shared by the tokens.
//
// VNNI multiplies unsigned by signed bytes, so the weight levels are made
// unsigned (u = w + offset, offset = 2^shift): sum u x = sum w x +
// offset * sum x, and each token's -offset * (block sums) seeds its
// accumulation with every weight row.

// The packed activation groups: see avx512::group_bytes.
using avx512::group_bytes;
using avx512::group_scales;
using avx512::group_sums;

/// 8 x 8 transpose of 32-bit elements: r[j] lane i <- r[i] lane j. (The
/// 128-bit lane moves use vshufi64x2, which unlike vperm2i128 reaches all 32
/// registers.)
WEFT_TARGET_AVX512 inline void transpose8(__m256i (&r)[8]) {
    const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]);
    const __m256i t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]);
    const __m256i t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    const __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]);
    const __m256i t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    const __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]);
    const __m256i t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    const __m256i u0 = _mm256_unpacklo_epi64(t0, t2);
    const __m256i u1 = _mm256_unpackhi_epi64(t0, t2);
    const __m256i u2 = _mm256_unpacklo_epi64(t1, t3);
    const __m256i u3 = _mm256_unpackhi_epi64(t1, t3);
    const __m256i u4 = _mm256_unpacklo_epi64(t4, t6);
    const __m256i u5 = _mm256_unpackhi_epi64(t4, t6);
    const __m256i u6 = _mm256_unpacklo_epi64(t5, t7);
    const __m256i u7 = _mm256_unpackhi_epi64(t5, t7);
    r[0] = _mm256_shuffle_i64x2(u0, u4, 0);
    r[1] = _mm256_shuffle_i64x2(u1, u5, 0);
    r[2] = _mm256_shuffle_i64x2(u2, u6, 0);
    r[3] = _mm256_shuffle_i64x2(u3, u7, 0);
    r[4] = _mm256_shuffle_i64x2(u0, u4, 3);
    r[5] = _mm256_shuffle_i64x2(u1, u5, 3);
    r[6] = _mm256_shuffle_i64x2(u2, u6, 3);
    r[7] = _mm256_shuffle_i64x2(u3, u7, 3);
}

inline int half_bits(const std::byte* p) noexcept {
    std::uint16_t h = 0;
    std::memcpy(&h, p, sizeof h);
    return h;
}

/// The f16 scales of 8 consecutive blocks `stride` bytes apart.
template <std::size_t Stride, std::size_t... I>
WEFT_TARGET_AVX512 inline __m256 group_scales_of(const std::byte* first, std::index_sequence<I...>) {
    __m128i h = _mm_setzero_si128();
    ((h = _mm_insert_epi16(h, half_bits(first + I * Stride), static_cast<int>(I))), ...);
    return _mm256_cvtph_ps(h);
}

struct blocks_q8_0 {
    static constexpr std::size_t bytes = sizeof(block_q8_0);
    static constexpr int shift = 7; // w + 128: the sign bit flipped
    WEFT_TARGET_AVX512 static __m256i levels(const std::byte* blk) {
        return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2)),
                                _mm256_set1_epi8(static_cast<char>(0x80)));
    }
};

struct blocks_q4_0 {
    static constexpr std::size_t bytes = sizeof(block_q4_0);
    static constexpr int shift = 3; // stored levels are w + 8
    WEFT_TARGET_AVX512 static __m256i levels(const std::byte* blk) {
        const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
        return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), _mm256_set1_epi8(0x0f));
    }
};

/// The unsigned levels of the 8 blocks from `first` (only `n` of them unless
/// `Full`; the others count as zero), transposed into `w`, and their scales.
template <class W, bool Full>
WEFT_TARGET_AVX512 inline __m256 load_group(const std::byte* first, std::size_t n, __m256i (&w)[8]) {
    if constexpr (Full) {
#pragma GCC unroll 8
        for (std::size_t i = 0; i < 8; ++i) {
            w[i] = W::levels(first + i * W::bytes);
        }
        transpose8(w);
        return group_scales_of<W::bytes>(first, std::make_index_sequence<8>{});
    } else {
        alignas(16) std::uint16_t h[8] = {};
#pragma GCC unroll 8 // constant indices keep w in registers
        for (std::size_t i = 0; i < 8; ++i) {
            w[i] = _mm256_setzero_si256();
            if (i < n) {
                w[i] = W::levels(first + i * W::bytes);
                h[i] = static_cast<std::uint16_t>(half_bits(first + i * W::bytes));
            }
        }
        transpose8(w);
        return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(h)));
    }
}

/// Group `g` (`n` blocks) for every (r, t).
template <class W, int R, int T, bool Full>
WEFT_TARGET_AVX512 inline void q8_group(__m256 (&acc)[R][T], const std::byte* const* wp, const std::byte* const* xp,
                                        std::size_t g, std::size_t n, std::size_t pf) {
    __m256i seed[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
        const __m256i sums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp[t] + g * group_bytes + group_sums));
        seed[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sums, W::shift));
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
        const std::byte* first = wp[r] + g * 8 * W::bytes;
        if (pf != 0) {
            prefetch_span<8 * W::bytes>(first + pf);
        }
        __m256i w[8];
        const __m256 dw = load_group<W, Full>(first, n, w);
        const std::byte* group[T];
        __m256i sums[T];
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            group[t] = xp[t] + g * group_bytes;
            // Opaque to the optimiser: the activation loads stay memory
            // operands of vpdpbusd instead of being hoisted out of the row
            // loop into (spilled) registers.
            asm("" : "+r"(group[t]));
            sums[t] = seed[t];
        }
        // The tokens' chains interleaved, for latency.
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) {
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) {
                sums[t] = _mm256_dpbusd_epi32(sums[t], w[j],
                                              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(group[t] + 32 * j)));
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            const __m256 dx = _mm256_loadu_ps(reinterpret_cast<const float*>(group[t] + group_scales));
            acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[t]), _mm256_mul_ps(dw, dx), acc[r][t]);
        }
    }
}

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
    const std::size_t nb = k / qk_32;
    for (std::size_t g = 0; g < nb / 8; ++g) {
        q8_group<W, R, T, true>(acc, wp, xp, g, 8, pf);
    }
    if (nb % 8 != 0) {
        q8_group<W, R, T, false>(acc, wp, xp, nb / 8, nb % 8, pf);
    }
    avx2::finish(acc, out);
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
template <class Tiles>
using avx512_packed_table = tile_table<Tiles, 4, 4, 8, true>;

} // namespace

const tile_set* avx512_tiles(ggml_type wt) noexcept {
    switch (wt) {
    case ggml_type::f32: return &avx512_table<float_tiles<load_f32>>::set;
    case ggml_type::f16: return &avx512_table<float_tiles<load_f16>>::set;
    case ggml_type::bf16: return &avx512_table<float_tiles<load_bf16>>::set;
    case ggml_type::q8_0: return &avx512_packed_table<q8_tiles<blocks_q8_0>>::set;
    case ggml_type::q4_0: return &avx512_packed_table<q8_tiles<blocks_q4_0>>::set;
    case ggml_type::q4_k:
    case ggml_type::q6_k: return avx512_k_tiles(wt);
    default: return nullptr;
    }
}

std::size_t q8_0_packed_bytes(std::size_t k) noexcept {
    return (k / qk_32 + 7) / 8 * group_bytes;
}

namespace {

/// round_away (matmul_avx2.cpp) on 16 lanes: the same operations, so the
/// same integers.
WEFT_TARGET_AVX512 inline __m512i round_away16(__m512 v) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m512 whole = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 frac = _mm512_andnot_ps(sign, _mm512_sub_ps(v, whole));
    const __mmask16 up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512 step = _mm512_or_ps(_mm512_and_ps(v, sign), _mm512_set1_ps(1.0f));
    return _mm512_cvttps_epi32(_mm512_mask_add_ps(whole, up, whole, step));
}

WEFT_TARGET_AVX512 inline __m256 max_pairs(__m256 a, __m256 b) {
    return _mm256_max_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
}

/// Lane i: the largest of f[i]'s eight lanes.
WEFT_TARGET_AVX512 inline __m256 hmax8(const __m256 (&f)[8]) {
    const __m256 a01 = max_pairs(f[0], f[1]);
    const __m256 a23 = max_pairs(f[2], f[3]);
    const __m256 a45 = max_pairs(f[4], f[5]);
    const __m256 a67 = max_pairs(f[6], f[7]);
    const __m256 b0 = _mm256_max_ps(_mm256_shuffle_ps(a01, a23, 0x44), _mm256_shuffle_ps(a01, a23, 0xEE));
    const __m256 b1 = _mm256_max_ps(_mm256_shuffle_ps(a45, a67, 0x44), _mm256_shuffle_ps(a45, a67, 0xEE));
    return _mm256_max_ps(_mm256_permute2f128_ps(b0, b1, 0x20), _mm256_permute2f128_ps(b0, b1, 0x31));
}

} // namespace

// A group's eight blocks go through each step together: their maxima in one
// vector by a transposed reduction, their scales by two vector divisions
// and one conversion to halves (for finite inputs what f32_to_f16 gives:
// both round to nearest even), where a block at a time would wait out each
// division and reduction alone. Missing blocks of a last group are zeros
// from the start, so they come out as the layout's zero padding.
WEFT_TARGET_AVX512 void quantize_pack_q8_0_avx512(const float* x, std::size_t k, block_q8_0* y, std::byte* dst) {
    const std::size_t nb = k / qk_32;
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m256i ones = _mm256_set1_epi8(1);
    for (std::size_t g = 0; g * 8 < nb; ++g, dst += group_bytes, x += 8 * qk_32, y += 8) {
        const std::size_t n = std::min<std::size_t>(8, nb - g * 8);
        __m512 lo[8], hi[8];
        __m256 folded[8];
#pragma GCC unroll 8
        for (std::size_t i = 0; i < 8; ++i) {
            lo[i] = hi[i] = _mm512_setzero_ps();
            folded[i] = _mm256_setzero_ps();
            if (i < n) {
                lo[i] = _mm512_loadu_ps(x + qk_32 * i);
                hi[i] = _mm512_loadu_ps(x + qk_32 * i + 16);
                const __m512 m = _mm512_max_ps(_mm512_andnot_ps(sign, lo[i]), _mm512_andnot_ps(sign, hi[i]));
                folded[i] = _mm256_max_ps(_mm512_castps512_ps256(m),
                                          _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(m), 1)));
            }
        }
        // max_abs starts from 0; the order a maximum is taken in does not
        // change it.
        const __m256 amax = _mm256_max_ps(_mm256_setzero_ps(), hmax8(folded));
        const __m256 scale = _mm256_div_ps(amax, _mm256_set1_ps(127.0f));
        const __mmask8 nonzero = _mm256_cmp_ps_mask(scale, _mm256_setzero_ps(), _CMP_NEQ_UQ);
        // Lanes 8-15 are never read (the broadcasts below take lanes 0-7).
        const __m512 inv16 = _mm512_castps256_ps512(_mm256_maskz_div_ps(nonzero, _mm256_set1_ps(1.0f), scale));
        const __m128i halves = _mm256_cvtps_ph(scale, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        alignas(16) std::uint16_t half[8];
        _mm_store_si128(reinterpret_cast<__m128i*>(half), halves);
        __m256i v[8];
#pragma GCC unroll 8
        for (std::size_t i = 0; i < 8; ++i) {
            v[i] = _mm256_setzero_si256();
            if (i < n) {
                const __m512 vinv = _mm512_permutexvar_ps(_mm512_set1_epi32(static_cast<int>(i)), inv16);
                // Saturating to bytes, as pack_bytes' two saturating packs do.
                const __m128i q0 = _mm512_cvtsepi32_epi8(round_away16(_mm512_mul_ps(lo[i], vinv)));
                const __m128i q1 = _mm512_cvtsepi32_epi8(round_away16(_mm512_mul_ps(hi[i], vinv)));
                v[i] = _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1);
                y[i].d = half[i];
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), v[i]);
            }
        }
        transpose8(v);
        // The levels' sums per block (lane i), in two chains.
        __m256i sums[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) {
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 32 * j), v[j]);
            sums[j % 2] = _mm256_dpbusd_epi32(sums[j % 2], ones, v[j]);
        }
        const __m256i sum = _mm256_add_epi32(sums[0], sums[1]);
        _mm256_storeu_ps(reinterpret_cast<float*>(dst + group_scales), _mm256_cvtph_ps(halves));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + group_sums), sum);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + avx512::group_seeds),
                            _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sum, blocks_q8_0::shift)));
    }
}

} // namespace weft::serve::kernels

#endif
