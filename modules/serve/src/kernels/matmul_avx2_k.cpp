// AVX2 tiles of the k-quants: Q4_K and Q6_K weights times Q8_K activations.
//
// Within a 256-element super-block everything is exact integer arithmetic
// (maddubs pairs, madd by the sub-block scales, int32 lanes), so its order is
// free. Per super-block and (r, t) the int lanes then enter the float
// accumulator by fixed FMAs, and avx2::finish ends the row: the float sequence is
// the same for every tile shape, which keeps the results batch invariant.
#include "kernels/matmul_impl.hpp"

#if WEFT_KERNELS_X86

#include "kernels/matmul_avx2.hpp"

namespace weft::serve::kernels {

namespace {

template <int R, int T>
WEFT_TARGET_AVX2 inline void zero(__m256i (&v)[R][T]) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            v[r][t] = _mm256_setzero_si256();
        }
    }
}

/// Q4_K: sum_j sc_j * (q . x over sub-block j) - sum_j m_j * (x sums of j).
/// q is 0..15 unsigned, so maddubs takes it as is (pairs <= 2*15*127).
template <int R, int T>
WEFT_TARGET_AVX2 void q4_k_tile(const std::byte* const* wp, const std::byte* const* xp, std::size_t k,
                                std::size_t pf, float* out) {
    __m256 acc[R][T];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            acc[r][t] = _mm256_setzero_ps();
        }
    }
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    for (std::size_t b = 0; b < k / qk_k; ++b) {
        const block_q4_k* w[R];
        const block_q8_k* x[T];
        __m128i scales[R];
        __m256i sc16[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            w[r] = reinterpret_cast<const block_q4_k*>(wp[r]) + b;
            if (pf != 0) {
                prefetch_span<sizeof(block_q4_k)>(reinterpret_cast<const std::byte*>(w[r]) + pf);
            }
            scales[r] = avx2::q4_k_scales(w[r]->scales);
            sc16[r] = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scales[r]));
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            x[t] = reinterpret_cast<const block_q8_k*>(xp[t]) + b;
        }
        __m256i sumi[R][T];
        zero(sumi);
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) {
            __m256i xq[T];
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) {
                xq[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[t]->qs + 32 * j));
            }
            const int shift = 4 * (j & 1);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) {
                const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[r]->qs + 32 * (j >> 1)));
                const __m256i q = _mm256_and_si256(_mm256_srl_epi16(raw, _mm_cvtsi32_si128(shift)), low4);
                // Scale j in every int16 lane.
                const __m256i pick = _mm256_set1_epi16(static_cast<short>(0x0100 + 0x0202 * j));
                const __m256i s = _mm256_shuffle_epi8(sc16[r], pick);
#pragma GCC unroll 8
                for (int t = 0; t < T; ++t) {
                    sumi[r][t] = _mm256_add_epi32(sumi[r][t], _mm256_madd_epi16(_mm256_maddubs_epi16(q, xq[t]), s));
                }
            }
        }
        __m256i bs[T];
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            bs[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[t]->bsums));
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            // [m0 m0 m1 m1 ... m7 m7]: madd with the 16 bsums gives m_j * (x sum of sub-block j).
            const __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(scales[r], scales[r]));
            const float dw = _cvtsh_ss(w[r]->d);
            const float dm = _cvtsh_ss(w[r]->dmin);
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) {
                const __m256 mins = _mm256_cvtepi32_ps(_mm256_madd_epi16(bs[t], m16));
                acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[r][t]), _mm256_set1_ps(dw * x[t]->d), acc[r][t]);
                acc[r][t] = _mm256_fnmadd_ps(mins, _mm256_set1_ps(dm * x[t]->d), acc[r][t]);
            }
        }
    }
    avx2::finish(acc, out);
}

/// Bytes picking scale 2g (8 times) then 2g + 1 (8 times) out of 16.
WEFT_TARGET_AVX2 inline __m128i scale_pick(int g) {
    return _mm_add_epi8(_mm_set1_epi8(static_cast<char>(2 * g)),
                        _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
}

/// The 32 levels (0..63) of elements 32g .. 32g + 31 of a Q6_K block.
WEFT_TARGET_AVX2 inline __m256i q6_k_levels(const block_q6_k* w, int g) {
    const int half = g >> 2;
    const int quarter = g & 3;
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    const __m256i raw_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w->ql + 64 * half + 32 * (quarter & 1)));
    const __m256i lo = _mm256_and_si256(_mm256_srl_epi16(raw_lo, _mm_cvtsi32_si128(4 * (quarter >> 1))), low4);
    const __m256i raw_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w->qh + 32 * half));
    const __m256i hi = _mm256_and_si256(_mm256_srl_epi16(raw_hi, _mm_cvtsi32_si128(2 * quarter)), _mm256_set1_epi8(3));
    return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
}

/// Q6_K: sum_j sc_j * (q - 32) . x = sum_j sc_j * q . x - 32 * sum_j sc_j * (x sums
/// of j); q is 0..63 unsigned (maddubs pairs <= 2*63*127), scales signed.
template <int R, int T>
WEFT_TARGET_AVX2 void q6_k_tile(const std::byte* const* wp, const std::byte* const* xp, std::size_t k,
                                std::size_t pf, float* out) {
    __m256 acc[R][T];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            acc[r][t] = _mm256_setzero_ps();
        }
    }
    for (std::size_t b = 0; b < k / qk_k; ++b) {
        const block_q6_k* w[R];
        const block_q8_k* x[T];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            w[r] = reinterpret_cast<const block_q6_k*>(wp[r]) + b;
            if (pf != 0) {
                prefetch_span<sizeof(block_q6_k)>(reinterpret_cast<const std::byte*>(w[r]) + pf);
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            x[t] = reinterpret_cast<const block_q8_k*>(xp[t]) + b;
        }
        __m256i sumi[R][T];
        zero(sumi);
#pragma GCC unroll 8
        for (int g = 0; g < 8; ++g) {
            __m256i xq[T];
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) {
                xq[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[t]->qs + 32 * g));
            }
            const __m128i pick = scale_pick(g);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) {
                const __m256i q = q6_k_levels(w[r], g);
                const __m128i scales = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[r]->scales));
                const __m256i s = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, pick));
#pragma GCC unroll 8
                for (int t = 0; t < T; ++t) {
                    sumi[r][t] = _mm256_add_epi32(sumi[r][t], _mm256_madd_epi16(_mm256_maddubs_epi16(q, xq[t]), s));
                }
            }
        }
        __m256i bs[T];
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            bs[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[t]->bsums));
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            const __m256i s16 =
                _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[r]->scales)));
            const float dw = _cvtsh_ss(w[r]->d);
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) {
                const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(bs[t], s16), 5);
                const __m256i total = _mm256_sub_epi32(sumi[r][t], offset);
                acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_set1_ps(dw * x[t]->d), acc[r][t]);
            }
        }
    }
    avx2::finish(acc, out);
}

struct q4_k_tiles {
    template <int R, int T>
    WEFT_TARGET_AVX2 static void run(const std::byte* const* w, const std::byte* const* x, std::size_t k,
                                     std::size_t pf, float* out) {
        q4_k_tile<R, T>(w, x, k, pf, out);
    }
};

struct q6_k_tiles {
    template <int R, int T>
    WEFT_TARGET_AVX2 static void run(const std::byte* const* w, const std::byte* const* x, std::size_t k,
                                     std::size_t pf, float* out) {
        q6_k_tile<R, T>(w, x, k, pf, out);
    }
};

// 3 x 3: the integer sums (9), the activations (3) and a weight vector stay
// in the 16 registers through a super-block; the float accumulators and the
// scales are touched once per super-block.
template <class Tiles>
using k_table = tile_table<Tiles, 3, 3, 4>;

} // namespace

const tile_set* avx2_k_tiles(ggml_type wt) noexcept {
    switch (wt) {
    case ggml_type::q4_k: return &k_table<q4_k_tiles>::set;
    case ggml_type::q6_k: return &k_table<q6_k_tiles>::set;
    default: return nullptr;
    }
}

} // namespace weft::serve::kernels

#endif
