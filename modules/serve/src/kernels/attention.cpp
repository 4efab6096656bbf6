// The CPU attention kernels' scalar reference and public entry points; the
// SIMD paths are in attention_decode.cpp and attention_rows.cpp (see
// attention_simd.hpp).
#include "kernels/kernels.hpp"

#include "kernels/attention_simd.hpp"

#include <weft/serve/ggml_type.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#if defined(__x86_64__)
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

inline float to_float(float x) noexcept { return x; }
inline float to_float(std::uint16_t h) noexcept { return f16_to_f32(h); }

/// q . k over n elements in the order of dot() (eight running sums).
template <class E>
float dot_mixed(const float* q, const E* k, std::size_t n) noexcept {
    if constexpr (std::is_same_v<E, float>) {
        return dot(q, k, n);
    } else {
        float acc[8] = {};
        std::size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            for (std::size_t l = 0; l < 8; ++l) acc[l] += q[i + l] * to_float(k[i + l]);
        }
        float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        for (; i < n; ++i) sum += q[i] * to_float(k[i]);
        return sum;
    }
}

template <class E>
void axpy_mixed(float w, const E* x, float* y, std::size_t n) noexcept {
    if constexpr (std::is_same_v<E, float>) {
        axpy(w, x, y, n);
    } else {
        for (std::size_t i = 0; i < n; ++i) y[i] += w * to_float(x[i]);
    }
}

template <class E>
void attend_scalar(const float* q, std::size_t group, std::size_t head_dim, std::size_t kv_head, std::size_t pos,
                   const basic_attention_source<E>& src, float* out, float* scratch) noexcept {
    const std::size_t n = pos + 1;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    const std::size_t offset = kv_head * src.block_size * head_dim;
    for (std::size_t j = 0; j < n; ++j) {
        const E* k = src.key_blocks[j / src.block_size] + (j % src.block_size) * head_dim + offset;
        for (std::size_t h = 0; h < group; ++h) scratch[h * n + j] = dot_mixed(q + h * head_dim, k, head_dim) * scale;
    }
    softmax_rows(scratch, group, n);
    for (std::size_t i = 0; i < group * head_dim; ++i) out[i] = 0.0f;
    for (std::size_t j = 0; j < n; ++j) {
        const E* v = src.value_blocks[j / src.block_size] + (j % src.block_size) * head_dim + offset;
        for (std::size_t h = 0; h < group; ++h) axpy_mixed(scratch[h * n + j], v, out + h * head_dim, head_dim);
    }
}

} // namespace

namespace {

#ifdef WEFT_SERVE_X86
const bool has_f16c = __builtin_cpu_supports("f16c");
using attention_simd::attend_avx2;
using attention_simd::attend_rows_avx512;
using attention_simd::has_avx512vl;
using attention_simd::max_rows_head_dim;
#endif

template <class E>
void attend_any(const float* q, std::size_t group, std::size_t head_dim, std::size_t kv_head, std::size_t pos,
                const basic_attention_source<E>& src, float* out, float* scratch) noexcept {
#ifdef WEFT_SERVE_X86
    if (has_avx2 && has_f16c && head_dim % 8 == 0) return attend_avx2(q, group, head_dim, kv_head, pos, src, out, scratch);
#endif
    attend_scalar(q, group, head_dim, kv_head, pos, src, out, scratch);
}

} // namespace

void attend(const float* q, std::size_t group, std::size_t head_dim, std::size_t kv_head, std::size_t pos,
            const attention_source& src, float* out, float* scratch) noexcept {
    attend_any(q, group, head_dim, kv_head, pos, src, out, scratch);
}

void attend(const float* q, std::size_t group, std::size_t head_dim, std::size_t kv_head, std::size_t pos,
            const attention_source_f16& src, float* out, float* scratch) noexcept {
    attend_any(q, group, head_dim, kv_head, pos, src, out, scratch);
}

namespace {

template <class E>
void attend_heads_any(const float* q, std::size_t group, std::size_t head_dim, std::size_t kv_begin,
                      std::size_t kv_end, std::size_t pos, const basic_attention_source<E>& src, float* out,
                      float* scratch) noexcept {
#ifdef WEFT_SERVE_X86
    if (has_avx2 && has_f16c && head_dim % 8 == 0) {
        return attention_simd::attend_heads_avx2(q, group, head_dim, kv_begin, kv_end, pos, src, out, scratch);
    }
#endif
    for (std::size_t g = kv_begin; g < kv_end; ++g) {
        const std::size_t at = (g - kv_begin) * group * head_dim;
        attend_scalar(q + at, group, head_dim, g, pos, src, out + at, scratch);
    }
}

} // namespace

void attend_heads(const float* q, std::size_t group, std::size_t head_dim, std::size_t kv_begin, std::size_t kv_end,
                  std::size_t pos, const attention_source& src, float* out, float* scratch) noexcept {
    attend_heads_any(q, group, head_dim, kv_begin, kv_end, pos, src, out, scratch);
}

void attend_heads(const float* q, std::size_t group, std::size_t head_dim, std::size_t kv_begin, std::size_t kv_end,
                  std::size_t pos, const attention_source_f16& src, float* out, float* scratch) noexcept {
    attend_heads_any(q, group, head_dim, kv_begin, kv_end, pos, src, out, scratch);
}

namespace {

template <class E>
void attend_rows_any(const float* q, std::size_t q_stride, std::size_t tokens, std::size_t group,
                     std::size_t head_dim, std::size_t kv_head, std::size_t first_pos,
                     const basic_attention_source<E>& src, float* out, std::size_t out_stride,
                     float* scratch) noexcept {
#ifdef WEFT_SERVE_X86
    if (tokens > 1 && has_avx2 && has_f16c && has_avx512vl && head_dim % 16 == 0 && head_dim <= max_rows_head_dim) {
        return attend_rows_avx512(q, q_stride, tokens, group, head_dim, kv_head, first_pos, src, out, out_stride,
                                  scratch);
    }
#endif
    for (std::size_t t = 0; t < tokens; ++t) {
        attend_any(q + t * q_stride, group, head_dim, kv_head, first_pos + t, src, out + t * out_stride, scratch);
    }
}

} // namespace

void attend_rows(const float* q, std::size_t q_stride, std::size_t tokens, std::size_t group, std::size_t head_dim,
                 std::size_t kv_head, std::size_t first_pos, const attention_source& src, float* out,
                 std::size_t out_stride, float* scratch) noexcept {
    attend_rows_any(q, q_stride, tokens, group, head_dim, kv_head, first_pos, src, out, out_stride, scratch);
}

void attend_rows(const float* q, std::size_t q_stride, std::size_t tokens, std::size_t group, std::size_t head_dim,
                 std::size_t kv_head, std::size_t first_pos, const attention_source_f16& src, float* out,
                 std::size_t out_stride, float* scratch) noexcept {
    attend_rows_any(q, q_stride, tokens, group, head_dim, kv_head, first_pos, src, out, out_stride, scratch);
}

} // namespace weft::serve::kernels
