// AVX2 + FMA + F16C kernels: float weights (F32, F16, BF16) and the
// 32-element block formats (Q8_0, Q4_0), plus the activation quantizers.
// The k-quant tiles are in matmul_avx2_k.cpp.
//
// Every tile keeps one 8-lane accumulator per (weight row, token), walks k in
// the same order whatever the tile shape, and reduces it by the fixed tree of
// avx2::reduce8: that is what makes the results batch invariant. Only explicit FMA intrinsics
// touch the accumulators (no reliance on contraction).
#include "kernels/matmul_impl.hpp"

#if WEFT_KERNELS_X86

#include "kernels/matmul_avx2.hpp"

#include <cstdint>
#include <cstring>

namespace weft::serve::kernels {

namespace {

// --- float weights ---------------------------------------------------------------

struct load_f32 {
    static constexpr std::size_t bytes = 4;
    WEFT_TARGET_AVX2 static __m256 load(const std::byte* p) {
        return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
    }
};

struct load_f16 {
    static constexpr std::size_t bytes = 2;
    WEFT_TARGET_AVX2 static __m256 load(const std::byte* p) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
};

struct load_bf16 {
    static constexpr std::size_t bytes = 2;
    WEFT_TARGET_AVX2 static __m256 load(const std::byte* p) {
        const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
    }
};

template <class W, int R, int T>
WEFT_TARGET_AVX2 inline void float_step(__m256 (&acc)[R][T], const std::byte* const* w, std::size_t w_off,
                                        const float* const* x, std::size_t x_off, std::size_t pf) {
    __m256 xv[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
        xv[t] = _mm256_loadu_ps(x[t] + x_off);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
        const __m256 wv = W::load(w[r] + w_off);
        if (pf != 0 && w_off % 64 == 0) { // one prefetch per cache line of the row
            prefetch(w[r] + w_off + pf);
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
}

template <class W, int R, int T>
WEFT_TARGET_AVX2 void float_tile(const std::byte* const* wp, const std::byte* const* xp, std::size_t k,
                                 std::size_t pf, float* out) {
    __m256 acc[R][T];
    const float* x[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
        x[t] = reinterpret_cast<const float*>(xp[t]);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            acc[r][t] = _mm256_setzero_ps();
        }
    }
    const std::size_t full = k / 8 * 8;
    for (std::size_t i = 0; i < full; i += 8) {
        float_step<W, R, T>(acc, wp, i * W::bytes, x, i, pf);
    }
    if (full < k) {
        // The tail goes through zero-padded copies: one more full step for
        // every (r, t), whichever tile it is in.
        const std::size_t n = k - full;
        alignas(32) float xt[T][8] = {};
        alignas(32) std::byte wt[R][8 * W::bytes] = {};
        const float* xtp[T];
        const std::byte* wtp[R];
        for (int t = 0; t < T; ++t) {
            std::memcpy(xt[t], x[t] + full, n * sizeof(float));
            xtp[t] = xt[t];
        }
        for (int r = 0; r < R; ++r) {
            std::memcpy(wt[r], wp[r] + full * W::bytes, n * W::bytes);
            wtp[r] = wt[r];
        }
        float_step<W, R, T>(acc, wtp, 0, xtp, 0, 0);
    }
    avx2::finish(acc, out);
}

// --- Q8_0 / Q4_0 weights x Q8_0 activations --------------------------------------

// Two blocks per step (avx2::byte_pair layout): per (r, t) the exact integer
// sums of both blocks land in separate 32-bit lanes, and one FMA adds them
// scaled by [dw dx of block b x4 | of block b + 1 x4].

/// Q8_0 by the sign trick: |w| (unsigned, <= 128) times x carrying w's sign,
/// summed in pairs by maddubs, then in fours. The activations come from
/// quantize_row, so |x| <= 127 and the int16 pairs cannot saturate.
struct blocks_q8_0 {
    static constexpr std::size_t bytes = sizeof(block_q8_0);
    struct weights {
        avx2::byte_pair w;
        avx2::byte_pair magnitude;
    };
    struct tokens {}; // nothing per token beyond the pair itself
    WEFT_TARGET_AVX2 static weights load(const std::byte* b0, const std::byte* b1) {
        const avx2::byte_pair w = avx2::load_pair(b0 + 2, b1 == nullptr ? nullptr : b1 + 2);
        return {w, {_mm256_abs_epi8(w.lo), _mm256_abs_epi8(w.hi)}};
    }
    WEFT_TARGET_AVX2 static tokens prepare(const avx2::byte_pair&) { return {}; }
    WEFT_TARGET_AVX2 static __m256i dot(const weights& w, const avx2::byte_pair& x, const tokens&) {
        const __m256i ones = _mm256_set1_epi16(1);
        const __m256i lo = _mm256_maddubs_epi16(w.magnitude.lo, _mm256_sign_epi8(x.lo, w.w.lo));
        const __m256i hi = _mm256_maddubs_epi16(w.magnitude.hi, _mm256_sign_epi8(x.hi, w.w.hi));
        return _mm256_add_epi32(_mm256_madd_epi16(lo, ones), _mm256_madd_epi16(hi, ones));
    }
};

/// Q4_0: the stored levels q = w + 8 are unsigned (<= 15), so maddubs takes
/// them directly; sum q x - 8 sum x, with 8 sum x per token made once. The
/// int16 pair sums stay small (|sum (q - 8) x| over 4 bytes <= 4064).
struct blocks_q4_0 {
    static constexpr std::size_t bytes = sizeof(block_q4_0);
    using weights = avx2::byte_pair;
    struct tokens {
        __m256i offset; ///< 8 * (x pair sums), int16
    };
    WEFT_TARGET_AVX2 static weights load(const std::byte* b0, const std::byte* b1) {
        return avx2::q4_0_pair(b0, b1);
    }
    WEFT_TARGET_AVX2 static tokens prepare(const avx2::byte_pair& x) {
        const __m256i eight = _mm256_set1_epi8(8);
        return {_mm256_add_epi16(_mm256_maddubs_epi16(eight, x.lo), _mm256_maddubs_epi16(eight, x.hi))};
    }
    WEFT_TARGET_AVX2 static __m256i dot(const weights& q, const avx2::byte_pair& x, const tokens& c) {
        const __m256i sums = _mm256_add_epi16(_mm256_maddubs_epi16(q.lo, x.lo), _mm256_maddubs_epi16(q.hi, x.hi));
        return _mm256_madd_epi16(_mm256_sub_epi16(sums, c.offset), _mm256_set1_epi16(1));
    }
};

template <class W, int R, int T>
WEFT_TARGET_AVX2 void q8_tile(const std::byte* const* wp, const std::byte* const* xp, std::size_t k,
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
    for (std::size_t b = 0; b < nb; b += 2) {
        const bool two = b + 1 < nb;
        avx2::byte_pair x[T];
        typename W::tokens extra[T];
        __m256 dx[T];
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            const std::byte* b0 = xp[t] + b * sizeof(block_q8_0);
            const std::byte* b1 = two ? b0 + sizeof(block_q8_0) : nullptr;
            x[t] = avx2::load_pair(b0 + 2, b1 == nullptr ? nullptr : b1 + 2);
            extra[t] = W::prepare(x[t]);
            dx[t] = avx2::scale_pair(b0, b1);
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            const std::byte* b0 = wp[r] + b * W::bytes;
            const std::byte* b1 = two ? b0 + W::bytes : nullptr;
            if (pf != 0) {
                prefetch_span<2 * W::bytes>(b0 + pf);
            }
            const typename W::weights w = W::load(b0, b1);
            const __m256 dw = avx2::scale_pair(b0, b1);
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) {
                const __m256 sums = _mm256_cvtepi32_ps(W::dot(w, x[t], extra[t]));
                acc[r][t] = _mm256_fmadd_ps(sums, _mm256_mul_ps(dw, dx[t]), acc[r][t]);
            }
        }
    }
    avx2::finish(acc, out);
}

// --- tile tables -----------------------------------------------------------------

template <class W>
struct float_tiles {
    template <int R, int T>
    WEFT_TARGET_AVX2 static void run(const std::byte* const* w, const std::byte* const* x, std::size_t k,
                                     std::size_t pf, float* out) {
        float_tile<W, R, T>(w, x, k, pf, out);
    }
};

template <class W>
struct q8_tiles {
    template <int R, int T>
    WEFT_TARGET_AVX2 static void run(const std::byte* const* w, const std::byte* const* x, std::size_t k,
                                     std::size_t pf, float* out) {
        q8_tile<W, R, T>(w, x, k, pf, out);
    }
};

// Batched tiles: 4 rows x up to 3 tokens (for the float types, 12
// accumulators, 3 activation vectors and a weight vector fill the 16
// registers; the Q8 tiles spill a little, yet measured no slower than
// smaller ones). Decode: 4 rows x 1, 4 independent FMA chains.
template <class Tiles>
using avx2_table = tile_table<Tiles, 4, 3, 4>;

// --- activation quantizers -------------------------------------------------------

/// roundf (halves away from zero), exactly: the fraction v - trunc(v) is
/// exact, and a magnitude >= 0.5 steps one away from zero.
WEFT_TARGET_AVX2 inline __m256i round_away(__m256 v) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 whole = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, whole));
    const __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 step = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f));
    return _mm256_cvttps_epi32(_mm256_add_ps(whole, _mm256_and_ps(up, step)));
}

/// 32 int32 in [-128, 127] (four vectors, element order) to 32 bytes.
WEFT_TARGET_AVX2 inline __m256i pack_bytes(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    // packs works per 128-bit lane; put the 4-byte groups back in order.
    return _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

WEFT_TARGET_AVX2 inline float max_abs(const float* x, std::size_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (std::size_t i = 0; i < n; i += 8) {
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
}

} // namespace

const tile_set* avx2_tiles(ggml_type wt) noexcept {
    switch (wt) {
    case ggml_type::f32: return &avx2_table<float_tiles<load_f32>>::set;
    case ggml_type::f16: return &avx2_table<float_tiles<load_f16>>::set;
    case ggml_type::bf16: return &avx2_table<float_tiles<load_bf16>>::set;
    case ggml_type::q8_0: return &avx2_table<q8_tiles<blocks_q8_0>>::set;
    case ggml_type::q4_0: return &avx2_table<q8_tiles<blocks_q4_0>>::set;
    case ggml_type::q4_k:
    case ggml_type::q6_k: return avx2_k_tiles(wt);
    default: return nullptr;
    }
}

WEFT_TARGET_AVX2 void quantize_q8_0_avx2(const float* x, block_q8_0* y, std::size_t n) {
    for (std::size_t b = 0; b < n / qk_32; ++b, x += qk_32) {
        const float amax = max_abs(x, qk_32);
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = f32_to_f16(d);
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int i = 0; i < 4; ++i) {
            q[i] = round_away(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * i), vid));
        }
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs), pack_bytes(q[0], q[1], q[2], q[3]));
    }
}

WEFT_TARGET_AVX2 void quantize_q8_k_avx2(const float* x, block_q8_k* y, std::size_t n) {
    for (std::size_t b = 0; b < n / qk_k; ++b, x += qk_k) {
        const float amax = max_abs(x, qk_k);
        if (amax == 0.0f) {
            std::memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        // The scale follows the sign of the first element of largest magnitude.
        float max = amax;
        const __m256 sign = _mm256_set1_ps(-0.0f);
        const __m256 target = _mm256_set1_ps(amax);
        for (std::size_t i = 0; i < qk_k; i += 8) {
            const __m256 hit = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), target, _CMP_EQ_OQ);
            const int mask = _mm256_movemask_ps(hit);
            if (mask != 0) {
                max = x[i + static_cast<std::size_t>(__builtin_ctz(static_cast<unsigned>(mask)))];
                break;
            }
        }
        const float inv = -127.0f / max;
        const __m256 vinv = _mm256_set1_ps(inv);
        const __m256i top = _mm256_set1_epi32(127);
        __m256i sums[16];
        for (int g = 0; g < 8; ++g) {
            __m256i q[4];
            for (int i = 0; i < 4; ++i) {
                // cvtps rounds to nearest even, as nearest_int.
                const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 32 * g + 8 * i), vinv);
                q[i] = _mm256_min_epi32(_mm256_cvtps_epi32(v), top);
            }
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs + 32 * g), pack_bytes(q[0], q[1], q[2], q[3]));
            sums[2 * g] = _mm256_add_epi32(q[0], q[1]);
            sums[2 * g + 1] = _mm256_add_epi32(q[2], q[3]);
        }
        for (int h = 0; h < 2; ++h) {
            const __m256i* s = sums + 8 * h;
            const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
            const __m256i c = _mm256_hadd_epi32(_mm256_hadd_epi32(s[4], s[5]), _mm256_hadd_epi32(s[6], s[7]));
            // Each 128-bit half holds a partial sum of the same four groups.
            const __m128i lo = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
            const __m128i hi = _mm_add_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].bsums + 8 * h), _mm_packs_epi32(lo, hi));
        }
        y[b].d = 1.0f / inv;
    }
}

} // namespace weft::serve::kernels

#endif
