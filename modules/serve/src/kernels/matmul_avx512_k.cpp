// AVX-512 tiles of the k-quants: Q4_K and Q6_K weights times Q8_K
// activations, 64 elements per step. Per step and (r, t): maddubs (unsigned
// levels x signed activations, int16 pairs) and vpdpwssd by the sub-block
// scales into int32 lanes. Within a super-block all is exact integer
// arithmetic; per super-block the lanes fold to 8 and enter one float
// accumulator per (r, t) by fixed FMAs, so the float sequence is the same
// for every tile shape (batch invariance).
#include "kernels/matmul_impl.hpp"

#if WEFT_KERNELS_X86

#include "kernels/matmul_avx2.hpp"
#include "kernels/matmul_avx512.hpp"

namespace weft::serve::kernels {

namespace {

template <int R, int T>
WEFT_TARGET_AVX512 inline void zero(__m512i (&v)[R][T]) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            v[r][t] = _mm512_setzero_si512();
        }
    }
}

template <int R, int T>
WEFT_TARGET_AVX512 inline void zero(__m256 (&v)[R][T]) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            v[r][t] = _mm256_setzero_ps();
        }
    }
}

/// The 16 int32 lanes folded to 8 (exact).
WEFT_TARGET_AVX512 inline __m256i fold(__m512i v) {
    return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

/// Per int16 lane of a 64-element step: which sub-block scale applies.
/// Q4_K: lanes 0..15 sub-block 2g, 16..31 sub-block 2g + 1.
WEFT_TARGET_AVX512 inline __m512i q4_k_scale_index(int g) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(static_cast<short>(2 * g))),
                              _mm256_set1_epi16(static_cast<short>(2 * g + 1)), 1);
}

template <int R, int T>
WEFT_TARGET_AVX512 void q4_k_tile(const std::byte* const* wp, const std::byte* const* xp, std::size_t k,
                                  std::size_t pf, float* out) {
    __m256 acc[R][T];
    zero(acc);
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    for (std::size_t b = 0; b < k / qk_k; ++b) {
        const block_q4_k* w[R];
        const block_q8_k* x[T];
        __m512i sc16[R];
        __m256i m16[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            w[r] = reinterpret_cast<const block_q4_k*>(wp[r]) + b;
            if (pf != 0) {
                prefetch_span<sizeof(block_q4_k)>(reinterpret_cast<const std::byte*>(w[r]) + pf);
            }
            const __m128i scales = avx2::q4_k_scales(w[r]->scales);
            sc16[r] = _mm512_castsi128_si512(_mm_cvtepu8_epi16(scales));
            // [m0 m0 m1 m1 ... m7 m7]: madd with the 16 bsums gives m_j * (x sum of sub-block j).
            m16[r] = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(scales, scales));
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            x[t] = reinterpret_cast<const block_q8_k*>(xp[t]) + b;
        }
        __m512i sumi[R][T];
        zero(sumi);
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g) {
            __m512i xq[T];
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) {
                xq[t] = _mm512_loadu_si512(x[t]->qs + 64 * g);
            }
            const __m512i index = q4_k_scale_index(g);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) {
                const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[r]->qs + 32 * g));
                const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(raw, low4)),
                                                     _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4), 1);
                const __m512i s = _mm512_permutexvar_epi16(index, sc16[r]);
#pragma GCC unroll 8
                for (int t = 0; t < T; ++t) {
                    sumi[r][t] = _mm512_dpwssd_epi32(sumi[r][t], _mm512_maddubs_epi16(q, xq[t]), s);
                }
            }
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            const __m256 dw = _mm256_set1_ps(_cvtsh_ss(w[r]->d));
            const __m256 dm = _mm256_set1_ps(_cvtsh_ss(w[r]->dmin));
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) {
                const __m256 dx = _mm256_set1_ps(x[t]->d);
                const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[t]->bsums));
                const __m256 mins = _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, m16[r]));
                acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(fold(sumi[r][t])), _mm256_mul_ps(dw, dx), acc[r][t]);
                acc[r][t] = _mm256_fnmadd_ps(mins, _mm256_mul_ps(dm, dx), acc[r][t]);
            }
        }
    }
    avx2::finish(acc, out);
}

/// Q6_K, 64-element step p (elements 64p ..): int16 lanes 8i .. 8i + 7 take
/// the scale of sub-block 4p + i.
WEFT_TARGET_AVX512 inline __m512i q6_k_scale_index(int p) {
    const __m128i a = _mm_set1_epi16(static_cast<short>(4 * p));
    const __m128i b = _mm_set1_epi16(static_cast<short>(4 * p + 1));
    const __m128i c = _mm_set1_epi16(static_cast<short>(4 * p + 2));
    const __m128i d = _mm_set1_epi16(static_cast<short>(4 * p + 3));
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(b, a)), _mm256_set_m128i(d, c), 1);
}

/// The 64 levels (0..63) of elements 64p .. 64p + 63 of a Q6_K block: two
/// quarters of one 128-element half, which share their ql bytes' nibble and
/// the qh bytes (at shifts 2m and 2m + 2).
WEFT_TARGET_AVX512 inline __m512i q6_k_levels(const block_q6_k* w, int p, __m512i qh_shift) {
    const int half = p >> 1;
    const __m512i ql = _mm512_loadu_si512(w->ql + 64 * half);
    const __m512i lo = _mm512_and_si512(_mm512_srli_epi16(ql, static_cast<unsigned>(4 * (p & 1))),
                                        _mm512_set1_epi8(0x0f));
    const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w->qh + 32 * half)));
    const __m512i hi = _mm512_and_si512(_mm512_srlv_epi16(qh, qh_shift), _mm512_set1_epi8(3));
    return _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4));
}

/// Q6_K: sum_j sc_j * (q - 32) . x = sum_j sc_j * q . x - 32 * sum_j sc_j * (x sums
/// of j); q is 0..63 unsigned (maddubs pairs <= 2*63*127), scales signed.
template <int R, int T>
WEFT_TARGET_AVX512 void q6_k_tile(const std::byte* const* wp, const std::byte* const* xp, std::size_t k,
                                  std::size_t pf, float* out) {
    __m256 acc[R][T];
    zero(acc);
    for (std::size_t b = 0; b < k / qk_k; ++b) {
        const block_q6_k* w[R];
        const block_q8_k* x[T];
        __m512i sc16[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            w[r] = reinterpret_cast<const block_q6_k*>(wp[r]) + b;
            if (pf != 0) {
                prefetch_span<sizeof(block_q6_k)>(reinterpret_cast<const std::byte*>(w[r]) + pf);
            }
            sc16[r] = _mm512_castsi256_si512(
                _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[r]->scales))));
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            x[t] = reinterpret_cast<const block_q8_k*>(xp[t]) + b;
        }
        __m512i sumi[R][T];
        zero(sumi);
#pragma GCC unroll 4
        for (int p = 0; p < 4; ++p) {
            __m512i xq[T];
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) {
                xq[t] = _mm512_loadu_si512(x[t]->qs + 64 * p);
            }
            const __m512i index = q6_k_scale_index(p);
            const short shift = static_cast<short>(4 * (p & 1));
            const __m512i qh_shift = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(shift)),
                                                        _mm256_set1_epi16(static_cast<short>(shift + 2)), 1);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) {
                const __m512i q = q6_k_levels(w[r], p, qh_shift);
                const __m512i s = _mm512_permutexvar_epi16(index, sc16[r]);
#pragma GCC unroll 8
                for (int t = 0; t < T; ++t) {
                    sumi[r][t] = _mm512_dpwssd_epi32(sumi[r][t], _mm512_maddubs_epi16(q, xq[t]), s);
                }
            }
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            const __m256 dw = _mm256_set1_ps(_cvtsh_ss(w[r]->d));
            const __m256i s16 = _mm512_castsi512_si256(sc16[r]);
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) {
                const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[t]->bsums));
                const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(bs, s16), 5);
                const __m256i total = _mm256_sub_epi32(fold(sumi[r][t]), offset);
                acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_mul_ps(dw, _mm256_set1_ps(x[t]->d)),
                                            acc[r][t]);
            }
        }
    }
    avx2::finish(acc, out);
}

struct q4_k_tiles {
    template <int R, int T>
    WEFT_TARGET_AVX512 static void run(const std::byte* const* w, const std::byte* const* x, std::size_t k,
                                       std::size_t pf, float* out) {
        q4_k_tile<R, T>(w, x, k, pf, out);
    }
};

struct q6_k_tiles {
    template <int R, int T>
    WEFT_TARGET_AVX512 static void run(const std::byte* const* w, const std::byte* const* x, std::size_t k,
                                       std::size_t pf, float* out) {
        q6_k_tile<R, T>(w, x, k, pf, out);
    }
};

// 4 x 4: 16 int32 sums, 4 activation vectors, a weight vector and its
// scales in the 32 registers through a super-block; the float accumulators
// are touched once per super-block. Decode: 8 rows.
template <class Tiles>
using k_table = tile_table<Tiles, 4, 4, 8>;

} // namespace

const tile_set* avx512_k_tiles(ggml_type wt) noexcept {
    switch (wt) {
    case ggml_type::q4_k: return &k_table<q4_k_tiles>::set;
    case ggml_type::q6_k: return &k_table<q6_k_tiles>::set;
    default: return nullptr;
    }
}

} // namespace weft::serve::kernels

#endif
