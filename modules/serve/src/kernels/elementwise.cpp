#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// GCC 12's own AVX-512 headers trip its uninitialised-use warnings.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

#include "kernels/kernels.hpp"
#include "kernels/simd_exp.hpp"

#include <bit>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace weft::serve::kernels {

namespace {

#if defined(__x86_64__)
const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
const bool has_avx512 = has_avx2 && __builtin_cpu_supports("avx512f");

/// `v`, opaque to the optimiser: a product passed through this is rounded
/// before it is added, where GCC would otherwise contract the multiply and
/// the add into one FMA (-ffp-contract=fast, its default, once a function's
/// target has FMA) and leave the scalar formula's bits.
__attribute__((target("avx2"))) inline __m256 rounded(__m256 v) noexcept {
    asm("" : "+x"(v));
    return v;
}

/// Eight lanes at a time with exp_avx2, the tail with std::exp: which path
/// an element takes depends only on its index, so results stay batch
/// invariant.
__attribute__((target("avx2,fma"))) std::size_t swiglu_avx2(const float* gate, const float* up, float* out,
                                                             std::size_t n) noexcept {
    const __m256 one = _mm256_set1_ps(1.0f);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), g));
        const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
    }
    return i;
}

/// swiglu_avx2 sixteen lanes at a time (the same operations: the same bits),
/// then eight, then returns how many it did.
__attribute__((target("avx2,fma,avx512f"))) std::size_t swiglu_avx512(const float* gate, const float* up, float* out,
                                                                       std::size_t n) noexcept {
    const __m512 one = _mm512_set1_ps(1.0f);
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 g = _mm512_loadu_ps(gate + i);
        const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), g));
        const __m512 silu = _mm512_div_ps(g, _mm512_add_ps(one, e));
        _mm512_storeu_ps(out + i, _mm512_mul_ps(silu, _mm512_loadu_ps(up + i)));
    }
    return i + swiglu_avx2(gate + i, up + i, out + i, n - i);
}

/// RoPE on the pairs (2i, 2i + 1) for i < half - half % 4, four pairs a
/// vector; returns how many pairs it did. Each element is the scalar loop's
/// products and one add or subtract (no FMA), so the results are its bits:
/// addsub gives x0 c - x1 s in the even lanes and x1 c + x0 s in the odd.
__attribute__((target("avx2,fma"))) std::size_t rope_adjacent_avx2(float* v, const float* c, const float* s,
                                                                   std::size_t half) noexcept {
    const __m256i dup = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    std::size_t i = 0;
    for (; i + 4 <= half; i += 4) {
        const __m256 x = _mm256_loadu_ps(v + 2 * i);
        const __m256 vc = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(c + i)), dup);
        const __m256 vs = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(s + i)), dup);
        const __m256 swapped = _mm256_permute_ps(x, 0xb1); // (x1, x0) in each pair
        _mm256_storeu_ps(v + 2 * i, _mm256_addsub_ps(_mm256_mul_ps(x, vc), _mm256_mul_ps(swapped, vs)));
    }
    return i;
}

/// RoPE on the pairs (i, i + half) for i < half - half % 8, eight pairs a
/// vector, with the scalar loop's operations; returns how many it did.
__attribute__((target("avx2,fma"))) std::size_t rope_halves_avx2(float* v, const float* c, const float* s,
                                                                 std::size_t half) noexcept {
    std::size_t i = 0;
    for (; i + 8 <= half; i += 8) {
        const __m256 x0 = _mm256_loadu_ps(v + i);
        const __m256 x1 = _mm256_loadu_ps(v + i + half);
        const __m256 vc = _mm256_loadu_ps(c + i);
        const __m256 vs = _mm256_loadu_ps(s + i);
        _mm256_storeu_ps(v + i, _mm256_sub_ps(rounded(_mm256_mul_ps(x0, vc)), rounded(_mm256_mul_ps(x1, vs))));
        _mm256_storeu_ps(v + i + half, _mm256_add_ps(rounded(_mm256_mul_ps(x0, vs)), rounded(_mm256_mul_ps(x1, vc))));
    }
    return i;
}

/// max_or_nan over x[0, n - n % 8): the running maximum and, apart, whether
/// any lane was NaN (max_ps alone would drop it).
__attribute__((target("avx2,fma"))) float max_or_nan_avx2(const float* x, std::size_t n, bool& nan) noexcept {
    __m256 vmax = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    __m256 unordered = _mm256_setzero_ps();
    for (std::size_t i = 0; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        unordered = _mm256_or_ps(unordered, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        vmax = _mm256_max_ps(vmax, v);
    }
    nan = _mm256_movemask_ps(unordered) != 0;
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 0x55));
    return _mm_cvtss_f32(m);
}

/// find_first over whole groups of 32 and then 8 floats: 32 compared before
/// each branch, as a scalar loop would take one branch per element. Returns
/// where it stopped: at the match, or at n - n % 8 when none was found.
__attribute__((target("avx2,fma"))) std::size_t find_first_avx2(const float* x, std::size_t n, float value) noexcept {
    const __m256 v = _mm256_set1_ps(value);
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256 e0 = _mm256_cmp_ps(_mm256_loadu_ps(x + i), v, _CMP_EQ_OQ);
        const __m256 e1 = _mm256_cmp_ps(_mm256_loadu_ps(x + i + 8), v, _CMP_EQ_OQ);
        const __m256 e2 = _mm256_cmp_ps(_mm256_loadu_ps(x + i + 16), v, _CMP_EQ_OQ);
        const __m256 e3 = _mm256_cmp_ps(_mm256_loadu_ps(x + i + 24), v, _CMP_EQ_OQ);
        const auto bits = static_cast<unsigned>(_mm256_movemask_ps(e0)) |
                          static_cast<unsigned>(_mm256_movemask_ps(e1)) << 8 |
                          static_cast<unsigned>(_mm256_movemask_ps(e2)) << 16 |
                          static_cast<unsigned>(_mm256_movemask_ps(e3)) << 24;
        if (bits != 0) return i + static_cast<std::size_t>(std::countr_zero(bits));
    }
    for (; i + 8 <= n; i += 8) {
        const auto bits = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), v, _CMP_EQ_OQ)));
        if (bits != 0) return i + static_cast<std::size_t>(std::countr_zero(bits));
    }
    return i;
}

/// exp_weights on eight lanes at a time; returns how many it did.
__attribute__((target("avx2,fma"))) std::size_t exp_weights_avx2(const float* x, float max, float scale, float* out,
                                                                  std::size_t n) noexcept {
    const __m256 vmax = _mm256_set1_ps(max);
    const __m256 vscale = _mm256_set1_ps(scale);
    const __m256 banned = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 e = exp_avx2(_mm256_mul_ps(_mm256_sub_ps(v, vmax), vscale));
        _mm256_storeu_ps(out + i, _mm256_and_ps(e, _mm256_cmp_ps(v, banned, _CMP_NEQ_OQ)));
    }
    return i;
}

/// The sum of squares of x[0, n - n % 16) in double: four 4-lane
/// accumulators over consecutive 16-element steps, added in a fixed order at
/// the end (a float squared is exact in double, so only the additions round).
__attribute__((target("avx2,fma"))) double sum_squares_avx2(const float* x, std::size_t n) noexcept {
    __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    for (std::size_t i = 0; i + 16 <= n; i += 16) {
        for (int j = 0; j < 4; ++j) {
            const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * static_cast<std::size_t>(j)));
            acc[j] = _mm256_fmadd_pd(v, v, acc[j]);
        }
    }
    const __m256d s = _mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3]));
    alignas(32) double lanes[4];
    _mm256_store_pd(lanes, s);
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

/// out = x * scale * weight, eight lanes at a time (the scalar order of the
/// two products, so either path gives the same floats).
__attribute__((target("avx2,fma"))) std::size_t scale_rows_avx2(const float* x, float scale, const float* weight,
                                                                 float* out, std::size_t n) noexcept {
    const __m256 sv = _mm256_set1_ps(scale);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), sv);
        _mm256_storeu_ps(out + i, _mm256_mul_ps(v, _mm256_loadu_ps(weight + i)));
    }
    return i;
}

__attribute__((target("avx2,fma"))) std::size_t add_avx2(float* x, const float* y, std::size_t n) noexcept {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    }
    return i;
}

/// The four rows' scales 1 / sqrt(sum / n + eps) from s[r], row r's four
/// partial sums of squares: lanes (0 + 1) + (2 + 3) of each, as the one-row
/// sum adds them (hadd pairs them: h01 = (s0[0]+s0[1], s1[0]+s1[1],
/// s0[2]+s0[3], s1[2]+s1[3]), h23 likewise), then one square root and one
/// division for all four.
__attribute__((target("avx2,fma"))) void rms_scales4(const __m256d* s, std::size_t n, float eps,
                                                      float* scale) noexcept {
    const __m256d h01 = _mm256_hadd_pd(s[0], s[1]);
    const __m256d h23 = _mm256_hadd_pd(s[2], s[3]);
    const __m256d lo = _mm256_permute2f128_pd(h01, h23, 0x20); // row r's lanes 0+1
    const __m256d hi = _mm256_permute2f128_pd(h01, h23, 0x31); // row r's lanes 2+3
    const __m256d mean = _mm256_add_pd(_mm256_div_pd(_mm256_add_pd(lo, hi), _mm256_set1_pd(static_cast<double>(n))),
                                       _mm256_set1_pd(static_cast<double>(eps)));
    _mm_storeu_ps(scale, _mm256_cvtpd_ps(_mm256_div_pd(_mm256_set1_pd(1.0), _mm256_sqrt_pd(mean))));
}

/// rmsnorm over four rows of n floats (n a multiple of 16) in lockstep:
/// each row's sum of squares exactly as sum_squares_avx2 orders it, then
/// rms_scales4 for all four. A row alone waits out its chain of additions,
/// its square root and its division; four rows wait them out together.
/// Every operation is the one-row path's, correctly rounded, so the results
/// are its bits.
__attribute__((target("avx2,fma"))) void rmsnorm4_avx2(const float* x, const float* weight, float* out,
                                                        std::size_t n, float eps) noexcept {
    __m256d acc[4][4];
    for (auto& row : acc) {
        for (__m256d& a : row) a = _mm256_setzero_pd();
    }
    for (std::size_t i = 0; i + 16 <= n; i += 16) {
        for (std::size_t r = 0; r < 4; ++r) {
            for (std::size_t j = 0; j < 4; ++j) {
                const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + r * n + i + 4 * j));
                acc[r][j] = _mm256_fmadd_pd(v, v, acc[r][j]);
            }
        }
    }
    __m256d s[4];
    for (std::size_t r = 0; r < 4; ++r) {
        s[r] = _mm256_add_pd(_mm256_add_pd(acc[r][0], acc[r][1]), _mm256_add_pd(acc[r][2], acc[r][3]));
    }
    alignas(16) float scale[4];
    rms_scales4(s, n, eps, scale);
    for (std::size_t r = 0; r < 4; ++r) scale_rows_avx2(x + r * n, scale[r], weight, out + r * n, n);
}

/// rmsnorm4_avx2 with the squares summed in 8-lane vectors: lanes 0-3 of
/// a[0] and a[1] are acc[0] and acc[2] of the 4-lane sum, lanes 4-7 acc[1]
/// and acc[3], each over the same elements in the same order; their sum is
/// then formed as (acc0 + acc1) + (acc2 + acc3), so the bits are the same
/// with half the conversions to double (which bound the 4-lane loop).
__attribute__((target("avx2,fma,avx512f"))) void rmsnorm4_avx512(const float* x, const float* weight, float* out,
                                                                  std::size_t n, float eps) noexcept {
    __m512d acc[4][2];
    for (auto& row : acc) {
        for (__m512d& a : row) a = _mm512_setzero_pd();
    }
    for (std::size_t i = 0; i + 16 <= n; i += 16) {
        for (std::size_t r = 0; r < 4; ++r) {
            for (std::size_t j = 0; j < 2; ++j) {
                const __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(x + r * n + i + 8 * j));
                acc[r][j] = _mm512_fmadd_pd(v, v, acc[r][j]);
            }
        }
    }
    __m256d s[4];
    for (std::size_t r = 0; r < 4; ++r) {
        const __m256d a01 = _mm256_add_pd(_mm512_castpd512_pd256(acc[r][0]), _mm512_extractf64x4_pd(acc[r][0], 1));
        const __m256d a23 = _mm256_add_pd(_mm512_castpd512_pd256(acc[r][1]), _mm512_extractf64x4_pd(acc[r][1], 1));
        s[r] = _mm256_add_pd(a01, a23);
    }
    alignas(16) float scale[4];
    rms_scales4(s, n, eps, scale);
    for (std::size_t r = 0; r < 4; ++r) {
        const __m512 sv = _mm512_set1_ps(scale[r]);
        const float* xr = x + r * n;
        float* o = out + r * n;
        for (std::size_t i = 0; i + 16 <= n; i += 16) {
            const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(xr + i), sv);
            _mm512_storeu_ps(o + i, _mm512_mul_ps(v, _mm512_loadu_ps(weight + i)));
        }
    }
}
#endif

} // namespace

void rmsnorm(const float* x, const float* weight, float* out, std::size_t n, float eps) noexcept {
    // Double accumulation: n is small (the model width) and the sum of
    // squares is the one place where float rounding would grow with width.
    // Which path sums which element depends only on n, so a row's result
    // does not depend on the batch around it.
    double sum = 0.0;
    std::size_t i = 0;
#if defined(__x86_64__)
    if (has_avx2) {
        sum = sum_squares_avx2(x, n);
        i = n - n % 16;
    }
#endif
    for (; i < n; ++i) {
        sum += static_cast<double>(x[i]) * x[i];
    }
    const float scale = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(n) + eps));
    i = 0;
#if defined(__x86_64__)
    if (has_avx2) i = scale_rows_avx2(x, scale, weight, out, n);
#endif
    for (; i < n; ++i) {
        out[i] = x[i] * scale * weight[i];
    }
}

void rmsnorm_rows(const float* x, const float* weight, float* out, std::size_t rows, std::size_t n,
                  float eps) noexcept {
    std::size_t r = 0;
#if defined(__x86_64__)
    if (has_avx512 && n % 16 == 0) {
        for (; r + 4 <= rows; r += 4) rmsnorm4_avx512(x + r * n, weight, out + r * n, n, eps);
    } else if (has_avx2 && n % 16 == 0) {
        for (; r + 4 <= rows; r += 4) rmsnorm4_avx2(x + r * n, weight, out + r * n, n, eps);
    }
#endif
    for (; r < rows; ++r) rmsnorm(x + r * n, weight, out + r * n, n, eps);
}

float max_or_nan(const float* x, std::size_t n) noexcept {
    float max = -std::numeric_limits<float>::infinity();
    bool nan = false;
    std::size_t i = 0;
#if defined(__x86_64__)
    if (has_avx2) {
        max = max_or_nan_avx2(x, n, nan);
        i = n - n % 8;
    }
#endif
    for (; i < n; ++i) {
        nan |= std::isnan(x[i]);
        max = x[i] > max ? x[i] : max;
    }
    return nan ? std::numeric_limits<float>::quiet_NaN() : max;
}

std::size_t find_first(const float* x, std::size_t n, float value) noexcept {
    std::size_t i = 0;
#if defined(__x86_64__)
    if (has_avx2) {
        i = find_first_avx2(x, n, value);
        if (i < n - n % 8) return i;
    }
#endif
    for (; i < n; ++i) {
        if (x[i] == value) return i;
    }
    return n;
}

void exp_weights(const float* x, float max, float scale, float* out, std::size_t n) noexcept {
    std::size_t i = 0;
#if defined(__x86_64__)
    if (has_avx2) i = exp_weights_avx2(x, max, scale, out, n);
#endif
    for (; i < n; ++i) {
        out[i] = x[i] == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp((x[i] - max) * scale);
    }
}

void swiglu(const float* gate, const float* up, float* out, std::size_t n) noexcept {
    std::size_t i = 0;
#if defined(__x86_64__)
    if (has_avx512) {
        i = swiglu_avx512(gate, up, out, n);
    } else if (has_avx2) {
        i = swiglu_avx2(gate, up, out, n);
    }
#endif
    for (; i < n; ++i) {
        const float g = gate[i];
        out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

void add_inplace(float* x, const float* y, std::size_t n) noexcept {
    std::size_t i = 0;
#if defined(__x86_64__)
    if (has_avx2) i = add_avx2(x, y, n);
#endif
    for (; i < n; ++i) {
        x[i] += y[i];
    }
}

rope_table::rope_table(std::size_t rope_dim, float freq_base, rope_style style)
    : m_half(rope_dim / 2), m_base(freq_base), m_style(style) {
    if (rope_dim == 0 || rope_dim % 2 != 0) {
        throw std::invalid_argument("rope dimension must be even and non-zero");
    }
}

void rope_table::reserve(std::size_t n) {
    // Checked before every rotation: a product, not a division (which would
    // cost more than rotating a tiny head).
    if (n * m_half <= m_cos.size()) return;
    const std::size_t have = m_cos.size() / m_half;
    m_cos.resize(n * m_half);
    m_sin.resize(n * m_half);
    for (std::size_t p = have; p < n; ++p) {
        for (std::size_t i = 0; i < m_half; ++i) {
            const double inv_freq = std::pow(m_base, -2.0 * static_cast<double>(i) / static_cast<double>(2 * m_half));
            const double theta = static_cast<double>(p) * inv_freq;
            m_cos[p * m_half + i] = static_cast<float>(std::cos(theta));
            m_sin[p * m_half + i] = static_cast<float>(std::sin(theta));
        }
    }
}

void rope_table::apply(float* x, std::size_t heads, std::size_t head_dim, std::size_t pos) {
    reserve(pos + 1);
    const float* c = m_cos.data() + pos * m_half;
    const float* s = m_sin.data() + pos * m_half;
    for (std::size_t h = 0; h < heads; ++h) {
        float* v = x + h * head_dim;
        std::size_t i = 0;
#if defined(__x86_64__)
        if (has_avx2) {
            i = m_style == rope_style::adjacent ? rope_adjacent_avx2(v, c, s, m_half)
                                                : rope_halves_avx2(v, c, s, m_half);
        }
#endif
        for (; i < m_half; ++i) {
            // adjacent: pairs (2i, 2i+1); halves: pairs (i, i + rope_dim/2).
            const std::size_t a = m_style == rope_style::adjacent ? 2 * i : i;
            const std::size_t b = m_style == rope_style::adjacent ? 2 * i + 1 : i + m_half;
            const float x0 = v[a];
            const float x1 = v[b];
            v[a] = x0 * c[i] - x1 * s[i];
            v[b] = x0 * s[i] + x1 * c[i];
        }
    }
}

} // namespace weft::serve::kernels
