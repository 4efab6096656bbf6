#include "kernels/kernels.hpp"

#include <cmath>
#include <limits>

#if defined(__x86_64__)
#include <immintrin.h>
#define WEFT_SERVE_X86 1
#endif

namespace weft::serve::kernels {

namespace {

float dot_scalar(const float* a, const float* b, std::size_t n) noexcept {
    // Eight running sums, combined pairwise at the end: the same order as the
    // AVX2 path's lanes, so both are equally accurate (not bitwise equal).
    float acc[8] = {};
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (std::size_t l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
    }
    float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; ++i) sum += a[i] * b[i];
    return sum;
}

void axpy_scalar(float w, const float* x, float* y, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) y[i] += w * x[i];
}

#ifdef WEFT_SERVE_X86
__attribute__((target("avx2,fma"))) float dot_avx2(const float* a, const float* b, std::size_t n) noexcept {
    __m256 acc = _mm256_setzero_ps();
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    }
    const __m128 lo = _mm256_castps256_ps128(acc);
    const __m128 hi = _mm256_extractf128_ps(acc, 1);
    __m128 s = _mm_add_ps(lo, hi);                 // (0+4, 1+5, 2+6, 3+7)
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));        // (0+4 + 2+6, 1+5 + 3+7)
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    float sum = _mm_cvtss_f32(s);
    for (; i < n; ++i) sum = std::fma(a[i], b[i], sum);
    return sum;
}

__attribute__((target("avx2,fma"))) void axpy_avx2(float w, const float* x, float* y, std::size_t n) noexcept {
    const __m256 vw = _mm256_set1_ps(w);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(vw, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    }
    for (; i < n; ++i) y[i] = std::fma(w, x[i], y[i]);
}

const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif

void axpy(float w, const float* x, float* y, std::size_t n) noexcept {
#ifdef WEFT_SERVE_X86
    if (has_avx2) return axpy_avx2(w, x, y, n);
#endif
    axpy_scalar(w, x, y, n);
}

/// Softmax of each of `rows` rows of n scores, in position order.
void softmax_rows(float* scores, std::size_t rows, std::size_t n) noexcept {
    for (std::size_t h = 0; h < rows; ++h) {
        float* s = scores + h * n;
        float max = -std::numeric_limits<float>::infinity();
        for (std::size_t j = 0; j < n; ++j) max = s[j] > max ? s[j] : max;
        float sum = 0.0f;
        for (std::size_t j = 0; j < n; ++j) {
            s[j] = std::exp(s[j] - max);
            sum += s[j];
        }
        const float inv = 1.0f / sum;
        for (std::size_t j = 0; j < n; ++j) s[j] *= inv;
    }
}

} // namespace

float dot(const float* a, const float* b, std::size_t n) noexcept {
#ifdef WEFT_SERVE_X86
    if (has_avx2) return dot_avx2(a, b, n);
#endif
    return dot_scalar(a, b, n);
}

namespace {

void attend_scalar(const float* q, std::size_t group, std::size_t head_dim, std::size_t kv_head, std::size_t pos,
                   const attention_source& src, float* out, float* scratch) noexcept {
    const std::size_t n = pos + 1;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    const std::size_t offset = kv_head * src.block_size * head_dim;
    for (std::size_t j = 0; j < n; ++j) {
        const float* k = src.key_blocks[j / src.block_size] + (j % src.block_size) * head_dim + offset;
        for (std::size_t h = 0; h < group; ++h) scratch[h * n + j] = dot(q + h * head_dim, k, head_dim) * scale;
    }
    softmax_rows(scratch, group, n);
    for (std::size_t i = 0; i < group * head_dim; ++i) out[i] = 0.0f;
    for (std::size_t j = 0; j < n; ++j) {
        const float* v = src.value_blocks[j / src.block_size] + (j % src.block_size) * head_dim + offset;
        for (std::size_t h = 0; h < group; ++h) axpy(scratch[h * n + j], v, out + h * head_dim, head_dim);
    }
}

#ifdef WEFT_SERVE_X86
__attribute__((target("avx2,fma"))) inline float hsum_avx2(__m256 acc) noexcept {
    const __m128 lo = _mm256_castps256_ps128(acc);
    const __m128 hi = _mm256_extractf128_ps(acc, 1);
    __m128 r = _mm_add_ps(lo, hi);
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_shuffle_ps(r, r, 0x55));
    return _mm_cvtss_f32(r);
}

/// out[0 .. 8*Vecs) = sum over positions j (ascending) of p[j] * v_j, where
/// v_j starts `offset` floats into position j's row of its value block.
template <std::size_t Vecs>
__attribute__((target("avx2,fma"))) void weighted_sum_avx2(const float* p, std::size_t n,
                                                           const float* const* blocks, std::size_t bs,
                                                           std::size_t head_dim, std::size_t offset,
                                                           float* out) noexcept {
    // Fully unrolled so the accumulators live in registers (GCC keeps a
    // rolled loop's array on the stack).
    __m256 acc[Vecs];
#pragma GCC unroll 8
    for (std::size_t d = 0; d < Vecs; ++d) acc[d] = _mm256_setzero_ps();
    for (std::size_t b = 0; b * bs < n; ++b) {
        const float* row = blocks[b] + offset;
        const std::size_t end = n - b * bs < bs ? n - b * bs : bs;
        for (std::size_t i = 0; i < end; ++i, row += head_dim) {
            const __m256 w = _mm256_set1_ps(p[b * bs + i]);
            // Rows of the next block are a separate run of memory: ask for
            // them ahead (the hardware prefetcher stops at the page).
            if (i + 4 >= end && b * bs + bs < n) {
                const float* next = blocks[b + 1] + offset + (i + 4 - end) * head_dim;
                for (std::size_t l = 0; l < 8 * Vecs; l += 16) _mm_prefetch(reinterpret_cast<const char*>(next + l), _MM_HINT_T0);
            }
#pragma GCC unroll 8
            for (std::size_t d = 0; d < Vecs; ++d) acc[d] = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 8 * d), acc[d]);
        }
    }
#pragma GCC unroll 8
    for (std::size_t d = 0; d < Vecs; ++d) _mm256_storeu_ps(out + 8 * d, acc[d]);
}

/// The same computation for head_dim a multiple of 8, kept in registers.
/// Each score is one 8-lane FMA chain over the head followed by one fixed
/// horizontal sum, whether it is computed alone or beside three others (four
/// positions at a time hide the FMA latency and keep four loads in flight);
/// the weighted sum of values runs over positions in ascending order, in
/// chunks of up to 64 floats per head.
__attribute__((target("avx2,fma"))) void attend_avx2(const float* q, std::size_t group, std::size_t head_dim,
                                                     std::size_t kv_head, std::size_t pos,
                                                     const attention_source& src, float* out,
                                                     float* scratch) noexcept {
    const std::size_t n = pos + 1;
    const std::size_t bs = src.block_size;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    const std::size_t offset = kv_head * bs * head_dim;
    const std::size_t vecs = head_dim / 8;
    auto key = [&](std::size_t j) { return src.key_blocks[j / bs] + (j % bs) * head_dim + offset; };
    for (std::size_t h = 0; h < group; ++h) {
        const float* qh = q + h * head_dim;
        float* s = scratch + h * n;
        std::size_t j = 0;
        for (; j + 4 <= n; j += 4) {
            if (j + 8 < n && (j + 8) % bs < 4) {
                // Entering a new block soon: fetch its first rows.
                const float* next = key(j + 8);
                for (std::size_t l = 0; l < 4 * head_dim; l += 16) _mm_prefetch(reinterpret_cast<const char*>(next + l), _MM_HINT_T0);
            }
            const float* k0 = key(j);
            const float* k1 = key(j + 1);
            const float* k2 = key(j + 2);
            const float* k3 = key(j + 3);
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
                   a3 = _mm256_setzero_ps();
#pragma GCC unroll 8
            for (std::size_t d = 0; d < vecs; ++d) {
                const __m256 qv = _mm256_loadu_ps(qh + 8 * d);
                a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 8 * d), a0);
                a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + 8 * d), a1);
                a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + 8 * d), a2);
                a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + 8 * d), a3);
            }
            s[j] = hsum_avx2(a0) * scale;
            s[j + 1] = hsum_avx2(a1) * scale;
            s[j + 2] = hsum_avx2(a2) * scale;
            s[j + 3] = hsum_avx2(a3) * scale;
        }
        for (; j < n; ++j) {
            const float* k0 = key(j);
            __m256 a0 = _mm256_setzero_ps();
            for (std::size_t d = 0; d < vecs; ++d) {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qh + 8 * d), _mm256_loadu_ps(k0 + 8 * d), a0);
            }
            s[j] = hsum_avx2(a0) * scale;
        }
    }
    softmax_rows(scratch, group, n);
    for (std::size_t h = 0; h < group; ++h) {
        const float* p = scratch + h * n;
        std::size_t d0 = 0;
        // Eight vectors (64 floats) at a time with the accumulators in
        // registers, then what is left one vector at a time: each output
        // element sums its positions in ascending order either way.
        for (; d0 + 8 <= vecs; d0 += 8) weighted_sum_avx2<8>(p, n, src.value_blocks, bs, head_dim, offset + 8 * d0,
                                                              out + h * head_dim + 8 * d0);
        for (; d0 < vecs; ++d0) weighted_sum_avx2<1>(p, n, src.value_blocks, bs, head_dim, offset + 8 * d0,
                                                     out + h * head_dim + 8 * d0);
    }
}
#endif

} // namespace

void attend(const float* q, std::size_t group, std::size_t head_dim, std::size_t kv_head, std::size_t pos,
            const attention_source& src, float* out, float* scratch) noexcept {
#ifdef WEFT_SERVE_X86
    if (has_avx2 && head_dim % 8 == 0) return attend_avx2(q, group, head_dim, kv_head, pos, src, out, scratch);
#endif
    attend_scalar(q, group, head_dim, kv_head, pos, src, out, scratch);
}

} // namespace weft::serve::kernels
