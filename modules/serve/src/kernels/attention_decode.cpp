// Attention of one token at a time on AVX2 and AVX-512 (attend_avx2; see
// attention_simd.hpp).
#include "kernels/attention_simd.hpp"

#if defined(__x86_64__)

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace weft::serve::kernels::attention_simd {

namespace {

/// The eight horizontal sums of a0..a7 as one vector (lane i = sum of a_i).
__attribute__((target("avx2,fma"))) inline __m256 hsum8_avx2(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4,
                                                             __m256 a5, __m256 a6, __m256 a7) noexcept {
    const __m256 t0 = _mm256_hadd_ps(a0, a1);
    const __m256 t1 = _mm256_hadd_ps(a2, a3);
    const __m256 t2 = _mm256_hadd_ps(a4, a5);
    const __m256 t3 = _mm256_hadd_ps(a6, a7);
    const __m256 u0 = _mm256_hadd_ps(t0, t1); // a0..a3 low halves, then a0..a3 high halves
    const __m256 u1 = _mm256_hadd_ps(t2, t3); // the same for a4..a7
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/// For each of `Heads` query heads h: out[h][0 .. 8*Vecs) = sum over
/// positions j (ascending) of p[h][j] * v_j, where v_j starts `offset` floats
/// into position j's row of its value block. The heads share one pass over
/// the values (a grouped-query head's values are read once for the group);
/// each output element is the same ascending chain of FMAs whatever Heads
/// and Vecs are.
template <std::size_t Vecs, std::size_t Heads, class E>
__attribute__((target("avx2,fma,f16c"))) void weighted_sum_avx2(const float* const* p, std::size_t n,
                                                                const E* const* blocks, std::size_t bs,
                                                                std::size_t head_dim, std::size_t offset,
                                                                float* const* out) noexcept {
    // Fully unrolled so the accumulators live in registers (GCC keeps a
    // rolled loop's array on the stack).
    __m256 acc[Heads][Vecs];
#pragma GCC unroll 4
    for (std::size_t h = 0; h < Heads; ++h) {
#pragma GCC unroll 8
        for (std::size_t d = 0; d < Vecs; ++d) acc[h][d] = _mm256_setzero_ps();
    }
    for (std::size_t b = 0; b * bs < n; ++b) {
        const E* row = blocks[b] + offset;
        const std::size_t end = n - b * bs < bs ? n - b * bs : bs;
        for (std::size_t i = 0; i < end; ++i, row += head_dim) {
            // Rows of the next block are a separate run of memory: ask for
            // them ahead (the hardware prefetcher stops at the page).
            if (i + 4 >= end && b * bs + bs < n) {
                const E* next = blocks[b + 1] + offset + (i + 4 - end) * head_dim;
                for (std::size_t l = 0; l < 8 * Vecs; l += 64 / sizeof(E)) {
                    _mm_prefetch(reinterpret_cast<const char*>(next + l), _MM_HINT_T0);
                }
            }
            __m256 v[Vecs];
#pragma GCC unroll 8
            for (std::size_t d = 0; d < Vecs; ++d) v[d] = load8(row + 8 * d);
#pragma GCC unroll 4
            for (std::size_t h = 0; h < Heads; ++h) {
                const __m256 w = _mm256_set1_ps(p[h][b * bs + i]);
#pragma GCC unroll 8
                for (std::size_t d = 0; d < Vecs; ++d) acc[h][d] = _mm256_fmadd_ps(w, v[d], acc[h][d]);
            }
        }
    }
#pragma GCC unroll 4
    for (std::size_t h = 0; h < Heads; ++h) {
#pragma GCC unroll 8
        for (std::size_t d = 0; d < Vecs; ++d) _mm256_storeu_ps(out[h] + 8 * d, acc[h][d]);
    }
}

/// weighted_sum_avx2 over a head's whole row: chunks of 8 * Vecs floats.
template <std::size_t Vecs, std::size_t Heads, class E>
__attribute__((target("avx2,fma,f16c"))) void weighted_rows_avx2(const float* const* p, std::size_t n,
                                                                 const E* const* blocks, std::size_t bs,
                                                                 std::size_t head_dim, std::size_t offset,
                                                                 float* const* out) noexcept {
    const std::size_t vecs = head_dim / 8;
    std::size_t d0 = 0;
    float* at[Heads];
    for (; d0 + Vecs <= vecs; d0 += Vecs) {
        for (std::size_t h = 0; h < Heads; ++h) at[h] = out[h] + 8 * d0;
        weighted_sum_avx2<Vecs, Heads>(p, n, blocks, bs, head_dim, offset + 8 * d0, at);
    }
    // A short head (16 floats: two vectors) in one pass over the positions,
    // not one pass a vector: a pass's cost is mostly per position.
    if constexpr (Vecs > 2) {
        for (; d0 + 2 <= vecs; d0 += 2) {
            for (std::size_t h = 0; h < Heads; ++h) at[h] = out[h] + 8 * d0;
            weighted_sum_avx2<2, Heads>(p, n, blocks, bs, head_dim, offset + 8 * d0, at);
        }
    }
    for (; d0 < vecs; ++d0) {
        for (std::size_t h = 0; h < Heads; ++h) at[h] = out[h] + 8 * d0;
        weighted_sum_avx2<1, Heads>(p, n, blocks, bs, head_dim, offset + 8 * d0, at);
    }
}

/// The scaled scores of 8 positions (keys k[0..8)) for two query heads at
/// once: each key vector is loaded (and for an F16 cache converted) once and
/// feeds both heads' chains. The 16 chains need AVX-512VL's 32 registers.
/// Each chain is the one attend_avx2 runs for a head alone, the same FMAs in
/// the same order and the same horizontal sum, so the scores are bitwise
/// those of one head at a time.
template <class E>
__attribute__((target("avx2,fma,f16c,avx512f,avx512vl"))) void scores8_pair(const float* q0, const float* q1,
                                                                            const E* const (&k)[8],
                                                                            std::size_t vecs, float scale,
                                                                            float* s0, float* s1) noexcept {
    __m256 a[8];
    __m256 b[8];
#pragma GCC unroll 8
    for (std::size_t i = 0; i < 8; ++i) a[i] = b[i] = _mm256_setzero_ps();
    for (std::size_t d = 0; d < vecs; ++d) {
        const __m256 qa = _mm256_loadu_ps(q0 + 8 * d);
        const __m256 qb = _mm256_loadu_ps(q1 + 8 * d);
#pragma GCC unroll 8
        for (std::size_t i = 0; i < 8; ++i) {
            const __m256 kv = load8(k[i] + 8 * d);
            a[i] = _mm256_fmadd_ps(qa, kv, a[i]);
            b[i] = _mm256_fmadd_ps(qb, kv, b[i]);
        }
    }
    const __m256 vs = _mm256_set1_ps(scale);
    _mm256_storeu_ps(s0, _mm256_mul_ps(hsum8_avx2(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]), vs));
    _mm256_storeu_ps(s1, _mm256_mul_ps(hsum8_avx2(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]), vs));
}

/// The scaled scores of 8 positions (keys k[0..8)) for one query head: the
/// chains of scores8_pair, for a head without a partner or a machine
/// without AVX-512VL.
template <class E>
__attribute__((target("avx2,fma,f16c"))) void scores8_one(const float* qh, const E* const (&k)[8], std::size_t vecs,
                                                         float scale, float* s) noexcept {
    __m256 a[8];
#pragma GCC unroll 8
    for (std::size_t i = 0; i < 8; ++i) a[i] = _mm256_setzero_ps();
    for (std::size_t d = 0; d < vecs; ++d) {
        const __m256 qv = _mm256_loadu_ps(qh + 8 * d);
#pragma GCC unroll 8
        for (std::size_t i = 0; i < 8; ++i) a[i] = _mm256_fmadd_ps(qv, load8(k[i] + 8 * d), a[i]);
    }
    const __m256 sums = hsum8_avx2(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
    _mm256_storeu_ps(s, _mm256_mul_ps(sums, _mm256_set1_ps(scale)));
}

/// Within each 128-bit lane, [x0 + x1, x2 + x3, y0 + y1, y2 + y3]: a
/// horizontal add's pairs.
__attribute__((target("avx2,fma,f16c,avx512f,avx512vl"))) inline __m512 pairs16(__m512 x, __m512 y) noexcept {
    return _mm512_add_ps(_mm512_shuffle_ps(x, y, 0x88), _mm512_shuffle_ps(x, y, 0xDD));
}

/// Eight 16-lane chains a[0..8) (a score each) reduced on 16-lane vectors,
/// with the adds that folding each to 8 lanes and hsum8_avx2 would make, in
/// their order: chain i's halves B_i = lo + hi, then ((B_i0 + B_i1) + (B_i2 + B_i3)) + ((B_i4 +
/// B_i5) + (B_i6 + B_i7)). Lane group L of the result (four lanes each):
/// chains 0-3's sums of elements 0-3 (L = 0) and 4-7 (L = 1), chains
/// 4-7's likewise (L = 2, 3); last8 then adds the groups into the eight
/// scores. Each level pairs vectors by shuffles that feed both operands of
/// one add, where the 8-lane sums spent a horizontal add (two shuffles) on
/// every pair of four lanes and an extraction on every fold: about a third
/// fewer shuffles, which were most of a short head's scores.
__attribute__((target("avx2,fma,f16c,avx512f,avx512vl"))) inline __m512 sums8_avx512(const __m512 (&a)[8]) noexcept {
    __m512 p[4];
#pragma GCC unroll 4
    for (std::size_t i = 0; i < 4; ++i) {
        // [B_i | B_(i+4)]: the low 256 bits of both chains, plus the high.
        p[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[i], a[i + 4], 0x44), _mm512_shuffle_f32x4(a[i], a[i + 4], 0xEE));
    }
    return pairs16(pairs16(p[0], p[1]), pairs16(p[2], p[3]));
}

/// The eight scores of sums8_avx512's result x and of y, as [x's | y's]:
/// lane groups 0 + 1 and 2 + 3 of each.
__attribute__((target("avx2,fma,f16c,avx512f,avx512vl"))) inline __m512 last8_avx512(__m512 x, __m512 y) noexcept {
    return _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x88), _mm512_shuffle_f32x4(x, y, 0xDD));
}

/// scores8_pair for head_dim a multiple of 16, on 16-lane vectors: each
/// score is one 16-lane FMA chain over the head, folded to 8 lanes, then
/// the same horizontal sum's adds (sums8_avx512). Half the FMAs (and conversions of an F16
/// cache) of the 8-lane chains: the scores of a 2000-token prompt took a
/// quarter of its prefill with them. A head alone (scores8_one_avx512) runs
/// the same chains, so a group's heads still get bitwise what each gets alone.
template <class E>
__attribute__((target("avx2,fma,f16c,avx512f,avx512vl"))) void scores8_pair_avx512(const float* q0, const float* q1,
                                                                                   const E* const (&k)[8],
                                                                                   std::size_t vecs16, float scale,
                                                                                   float* s0, float* s1) noexcept {
    __m512 a[8];
    __m512 b[8];
#pragma GCC unroll 8
    for (std::size_t i = 0; i < 8; ++i) a[i] = b[i] = _mm512_setzero_ps();
    for (std::size_t d = 0; d < vecs16; ++d) {
        const __m512 qa = _mm512_loadu_ps(q0 + 16 * d);
        const __m512 qb = _mm512_loadu_ps(q1 + 16 * d);
#pragma GCC unroll 8
        for (std::size_t i = 0; i < 8; ++i) {
            const __m512 kv = load16(k[i] + 16 * d);
            a[i] = _mm512_fmadd_ps(qa, kv, a[i]);
            b[i] = _mm512_fmadd_ps(qb, kv, b[i]);
        }
    }
    const __m512 scores = _mm512_mul_ps(last8_avx512(sums8_avx512(a), sums8_avx512(b)), _mm512_set1_ps(scale));
    _mm256_storeu_ps(s0, _mm512_castps512_ps256(scores));
    _mm256_storeu_ps(s1, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(scores), 1)));
}

/// scores8_pair_avx512's chains for one query head.
template <class E>
__attribute__((target("avx2,fma,f16c,avx512f,avx512vl"))) void scores8_one_avx512(const float* qh,
                                                                                  const E* const (&k)[8],
                                                                                  std::size_t vecs16, float scale,
                                                                                  float* s) noexcept {
    __m512 a[8];
#pragma GCC unroll 8
    for (std::size_t i = 0; i < 8; ++i) a[i] = _mm512_setzero_ps();
    for (std::size_t d = 0; d < vecs16; ++d) {
        const __m512 qv = _mm512_loadu_ps(qh + 16 * d);
#pragma GCC unroll 8
        for (std::size_t i = 0; i < 8; ++i) a[i] = _mm512_fmadd_ps(qv, load16(k[i] + 16 * d), a[i]);
    }
    const __m512 sums = sums8_avx512(a);
    _mm256_storeu_ps(s, _mm256_mul_ps(_mm512_castps512_ps256(last8_avx512(sums, sums)), _mm256_set1_ps(scale)));
}

/// The scaled scores of 8 positions for a KV head's `group` query heads
/// (rows `stride` floats apart), in pairs where the machine has the
/// registers: 16-lane chains when head_dim is a multiple of 16, else 8-lane.
/// Which chains a score gets depends only on the machine and head_dim.
template <class E>
__attribute__((target("avx2,fma,f16c"))) void scores8(const float* q, std::size_t group, std::size_t head_dim,
                                                     const E* const (&k)[8], float scale, float* s,
                                                     std::size_t stride) noexcept {
    std::size_t h = 0;
    if (has_avx512vl && head_dim % 16 == 0) {
        const std::size_t vecs16 = head_dim / 16;
        for (; h + 2 <= group; h += 2) {
            scores8_pair_avx512(q + h * head_dim, q + (h + 1) * head_dim, k, vecs16, scale, s + h * stride,
                                s + (h + 1) * stride);
        }
        if (h < group) scores8_one_avx512(q + h * head_dim, k, vecs16, scale, s + h * stride);
        return;
    }
    const std::size_t vecs = head_dim / 8;
    if (has_avx512vl) {
        for (; h + 2 <= group; h += 2) {
            scores8_pair(q + h * head_dim, q + (h + 1) * head_dim, k, vecs, scale, s + h * stride,
                         s + (h + 1) * stride);
        }
    }
    for (; h < group; ++h) scores8_one(q + h * head_dim, k, vecs, scale, s + h * stride);
}

/// One KV head's scores for its `group` query heads (q: their rows), into
/// rows `stride` floats apart from s: eight positions at a time, reduced
/// together, the last group padded. Which path a position takes depends
/// only on the query's own position, so results stay batch invariant. The
/// group's query heads take each run of eight keys in turn while it is in
/// L1: the keys are read from the cache once for the group.
template <class E>
__attribute__((target("avx2,fma,f16c"))) void head_scores(const float* q, std::size_t group, std::size_t head_dim,
                                                          std::size_t kv_head, std::size_t n,
                                                          const basic_attention_source<E>& src, float* s,
                                                          std::size_t stride) noexcept {
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    const cache_rows<E> rows(src, head_dim, kv_head);
    auto key = [&](std::size_t j) { return rows.at(src.key_blocks, j); };
    auto value = [&](std::size_t j) { return rows.at(src.value_blocks, j); };
    const std::size_t row_bytes = head_dim * sizeof(E);
    const bool runs = src.block_size % 8 == 0; // a group of eight lies within one block
    std::size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        // The cache is read in short runs (one block of one head) that the
        // hardware prefetcher barely starts on: ask for the keys two groups
        // ahead, and for this group's values, which the weighted sum reads
        // after the softmax. When a group's rows are one run, its lines are
        // asked for (a tiny head's row is half a line), keys and values in
        // turn (all keys, then all values: 2% slower steps of `small`).
        const E* k[8];
        if (runs) {
            const std::size_t ahead = j + 16 < n ? std::min<std::size_t>(n - j - 16, 8) * row_bytes : 0;
            const char* kp = reinterpret_cast<const char*>(key(ahead != 0 ? j + 16 : j));
            const char* vp = reinterpret_cast<const char*>(value(j));
            for (std::size_t b = 0; b < 8 * row_bytes; b += 64) {
                if (b < ahead) _mm_prefetch(kp + b, _MM_HINT_T0);
                _mm_prefetch(vp + b, _MM_HINT_T1);
            }
            const E* k0 = key(j);
            for (std::size_t i = 0; i < 8; ++i) k[i] = k0 + i * head_dim;
        } else {
            for (std::size_t i = 0; i < 8; ++i) {
                if (j + 16 + i < n) {
                    const char* kp = reinterpret_cast<const char*>(key(j + 16 + i));
                    for (std::size_t b = 0; b < row_bytes; b += 64) _mm_prefetch(kp + b, _MM_HINT_T0);
                }
                const char* vp = reinterpret_cast<const char*>(value(j + i));
                for (std::size_t b = 0; b < row_bytes; b += 64) _mm_prefetch(vp + b, _MM_HINT_T1);
                k[i] = key(j + i);
            }
        }
        scores8(q, group, head_dim, k, scale, s + j, stride);
    }
    if (j < n) {
        // The last, partial group: padded with its last key, its extra scores
        // landing in the row's padding, where the softmax ignores them. One
        // reduction of eight chains costs less than one lone chain's latency
        // a position (a short context is mostly this tail).
        const std::size_t valid = n - j;
        const E* k[8];
        for (std::size_t i = 0; i < 8; ++i) k[i] = key(j + (i < valid ? i : valid - 1));
        scores8(q, group, head_dim, k, scale, s + j, stride);
    }
}

/// One KV head's weighted sums of values for its `group` query heads (their
/// weights: rows `stride` floats apart from s), into out: query heads four,
/// then two, then one at a time sharing each pass over the values; every
/// output element sums its positions in ascending order whichever pass
/// computes it.
template <class E>
__attribute__((target("avx2,fma,f16c"))) void head_values(const float* s, std::size_t stride, std::size_t group,
                                                          std::size_t head_dim, std::size_t kv_head, std::size_t n,
                                                          const basic_attention_source<E>& src, float* out) noexcept {
    const std::size_t bs = src.block_size;
    const std::size_t offset = kv_head * bs * head_dim;
    if (has_avx512f && head_dim % 16 == 0) {
        // 16-lane vectors, bitwise the same sums, block by block.
        std::fill_n(out, group * head_dim, 0.0f);
        for (std::size_t b = 0; b * bs < n; ++b) {
            if ((b + 1) * bs < n) {
                prefetch_rows(src.value_blocks[b + 1] + offset, std::min(bs, n - (b + 1) * bs), head_dim * sizeof(E));
            }
            weighted_block_avx512(s + b * bs, stride, group, std::min(bs, n - b * bs), src.value_blocks[b] + offset,
                                  head_dim, out);
        }
        return;
    }
    std::size_t h = 0;
    const float* p[4];
    float* o[4];
    auto heads = [&](std::size_t count) {
        for (std::size_t i = 0; i < count; ++i) {
            p[i] = s + (h + i) * stride;
            o[i] = out + (h + i) * head_dim;
        }
        h += count;
    };
    for (; h + 4 <= group;) {
        heads(4);
        weighted_rows_avx2<2, 4>(p, n, src.value_blocks, bs, head_dim, offset, o);
    }
    if (h + 2 <= group) {
        heads(2);
        weighted_rows_avx2<4, 2>(p, n, src.value_blocks, bs, head_dim, offset, o);
    }
    if (h < group) {
        heads(1);
        weighted_rows_avx2<8, 1>(p, n, src.value_blocks, bs, head_dim, offset, o);
    }
}

/// head_values for KV heads `kv_head` and `kv_head + 1` together, G (1 or 2)
/// query heads each, rows from s and out as one head's would continue: the
/// two heads' FMA chains interleave, each element's chain the one
/// head_values runs on 16 lanes. With two or four chains of a few positions
/// (`tiny`'s 16-float heads) a lone head's sums were mostly FMA latency.
template <std::size_t G, class E>
__attribute__((target("avx512f,avx2,fma,f16c"))) void head_pair_values(const float* s, std::size_t stride,
                                                                       std::size_t head_dim, std::size_t kv_head,
                                                                       std::size_t n,
                                                                       const basic_attention_source<E>& src,
                                                                       float* out) noexcept {
    const std::size_t bs = src.block_size;
    // A block keeps its KV heads side by side: the pair's rows are one run.
    const std::size_t off_a = kv_head * bs * head_dim, off_b = off_a + bs * head_dim;
    std::fill_n(out, 2 * G * head_dim, 0.0f);
    float* o[2 * G];
    for (std::size_t r = 0; r < 2 * G; ++r) o[r] = out + r * head_dim;
    for (std::size_t b = 0; b * bs < n; ++b) {
        if ((b + 1) * bs < n) {
            prefetch_rows(src.value_blocks[b + 1] + off_a, bs + std::min(bs, n - (b + 1) * bs), head_dim * sizeof(E));
        }
        const float* p[2 * G];
        for (std::size_t r = 0; r < 2 * G; ++r) p[r] = s + r * stride + b * bs;
        const E* rows[2] = {src.value_blocks[b] + off_a, src.value_blocks[b] + off_b};
        weighted_run_avx512<G, 2>(p, std::min(bs, n - b * bs), rows, head_dim, o);
    }
}

} // namespace

/// attend_scalar's computation for head_dim a multiple of 8, kept in
/// registers, for KV heads [kv_begin, kv_end) of one token. Each score is
/// one 8-lane FMA chain over the head followed by one fixed horizontal sum,
/// whether it is computed alone or beside seven others (eight positions at
/// a time hide the FMA latency and keep eight loads in flight); the
/// weighted sum of values runs over positions in ascending order. The query
/// heads of a group share each read of the keys and values, which is what
/// grouped-query attention is for: a Llama-3 8B reads its cache once per
/// step instead of four times. With one or two query heads a KV head, the
/// KV heads' scores come first, then one softmax over all their rows (four
/// in lockstep: a short context's softmax is a chain of latencies), then
/// their weighted sums, two KV heads at a time. Every head's
/// output is bitwise what it gets in a call of its own: `tiny`'s attention
/// (two KV heads of two 16-float query heads, 20 positions) took 0.35
/// microseconds a layer instead of 0.53.
template <class E>
__attribute__((target("avx2,fma,f16c"))) void attend_heads_avx2(const float* q, std::size_t group,
                                                                std::size_t head_dim, std::size_t kv_begin,
                                                                std::size_t kv_end, std::size_t pos,
                                                                const basic_attention_source<E>& src, float* out,
                                                                float* scratch) noexcept {
    const std::size_t n = pos + 1;
    // Each query head's row of scores, padded to whole vectors (see attend_scratch_size).
    const std::size_t stride = (n + 7) & ~std::size_t{7};
    // KV head g's query rows, rows of scores and outputs.
    const std::size_t width = group * head_dim;
    auto q_of = [&](std::size_t g) { return q + (g - kv_begin) * width; };
    auto s_of = [&](std::size_t g) { return scratch + (g - kv_begin) * group * stride; };
    auto out_of = [&](std::size_t g) { return out + (g - kv_begin) * width; };
    if (group > 2) {
        // Groups of three or more fill the softmax's lockstep by themselves,
        // and a KV head's values are best read while its own scores' prefetches
        // are fresh: head by head (all the scores first cost Llama-3 8B's
        // shape 2-4%).
        for (std::size_t g = kv_begin; g < kv_end; ++g) {
            head_scores(q_of(g), group, head_dim, g, n, src, s_of(g), stride);
            softmax_rows_avx2(s_of(g), group, n, stride);
            head_values(s_of(g), stride, group, head_dim, g, n, src, out_of(g));
        }
        return;
    }
    for (std::size_t g = kv_begin; g < kv_end; ++g) head_scores(q_of(g), group, head_dim, g, n, src, s_of(g), stride);
    softmax_rows_avx2(scratch, (kv_end - kv_begin) * group, n, stride);
    std::size_t g = kv_begin;
    if (has_avx512f && head_dim % 16 == 0) {
        for (; g + 2 <= kv_end; g += 2) {
            if (group == 2) {
                head_pair_values<2>(s_of(g), stride, head_dim, g, n, src, out_of(g));
            } else {
                head_pair_values<1>(s_of(g), stride, head_dim, g, n, src, out_of(g));
            }
        }
    }
    for (; g < kv_end; ++g) head_values(s_of(g), stride, group, head_dim, g, n, src, out_of(g));
}

template <class E>
__attribute__((target("avx2,fma,f16c"))) void attend_avx2(const float* q, std::size_t group, std::size_t head_dim,
                                                          std::size_t kv_head, std::size_t pos,
                                                          const basic_attention_source<E>& src, float* out,
                                                          float* scratch) noexcept {
    attend_heads_avx2(q, group, head_dim, kv_head, kv_head + 1, pos, src, out, scratch);
}

template void attend_heads_avx2<float>(const float*, std::size_t, std::size_t, std::size_t, std::size_t, std::size_t,
                                       const basic_attention_source<float>&, float*, float*) noexcept;
template void attend_heads_avx2<std::uint16_t>(const float*, std::size_t, std::size_t, std::size_t, std::size_t,
                                               std::size_t, const basic_attention_source<std::uint16_t>&, float*,
                                               float*) noexcept;
template void attend_avx2<float>(const float*, std::size_t, std::size_t, std::size_t, std::size_t,
                                 const basic_attention_source<float>&, float*, float*) noexcept;
template void attend_avx2<std::uint16_t>(const float*, std::size_t, std::size_t, std::size_t, std::size_t,
                                         const basic_attention_source<std::uint16_t>&, float*, float*) noexcept;

} // namespace weft::serve::kernels::attention_simd

#endif
