// Q8_0 weights in panels of 16 rows, one row per 32-bit lane, for the
// AVX-512 VNNI kernels (the model prepacks its Q8_0 matrices this way once,
// at load).
//
// Why rows in lanes: the tiles over plain rows keep one accumulator per
// (row, token) and end each with a horizontal reduction, so at k = 512 a
// third of a product goes to that reduction and to moving the sums out. Here
// a vector holds the same 4 bytes of 16 rows, each token's 4 bytes are
// broadcast from memory as vpdpbusd's second operand, and a 16-lane
// accumulator ends as 16 finished outputs of one token: no shuffles at all.
//
// Results are bitwise those of the other tiles (the model stays batch
// invariant whichever kernel a step uses): they keep, per (row, token), 8
// partial sums, partial l taking blocks l, l + 8, l + 16, ... in order, each
// block as one exact integer dot product times (weight scale x token scale)
// by one FMA; then the tree ((p0 + p4) + (p1 + p5)) + ((p2 + p6) + (p3 + p7))
// (avx2::reduce8). Here partial l is a pass of its own over those blocks, and
// the tree adds whole vectors. A row with no block for some l leaves +0 there,
// as the zero-padded groups of the other tiles do.
#include "kernels/matmul_impl.hpp"

#if WEFT_KERNELS_X86

#include "kernels/matmul_avx512.hpp"

#include <weft/serve/quant.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

namespace weft::serve::kernels {

namespace {

/// One block of a panel: 8 vectors of 64 bytes, vector j holding bytes
/// 4j..4j+3 of the block's 32 levels for row i in lane i, as unsigned levels
/// (w + 128: vpdpbusd multiplies unsigned by signed bytes; the activations'
/// seeds take the offset back), then the 16 rows' scales as floats. Rows
/// past the matrix's end are zero levels (128) with scale 0.
constexpr std::size_t slot_bytes = 576;
constexpr std::size_t slot_scales = 512;

inline std::int32_t load_i32(const std::byte* p) noexcept {
    std::int32_t v = 0;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline float load_f32(const std::byte* p) noexcept {
    float v = 0;
    std::memcpy(&v, p, sizeof v);
    return v;
}

/// s += w x (the 4 bytes at `x` in every lane), the bytes at `x` as
/// vpdpbusd's broadcast memory operand: one instruction where the
/// intrinsics give a separate vpbroadcastd (GCC does not fold it).
WEFT_TARGET_AVX512 inline void dpbusd_broadcast(__m512i& s, __m512i w, const std::byte* x) {
    asm("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(s) : "v"(w), "m"(*reinterpret_cast<const std::int32_t*>(x)));
}

/// The products of one panel (`nb` blocks a row) with T tokens' packed
/// activation rows `xp`, stored to y[t * y_stride + i] for the lanes i in
/// `mask`. With `pf` non-zero, the weights `pf` bytes ahead are prefetched
/// alongside (a later panel: panels are contiguous).
template <int T>
WEFT_TARGET_AVX512 void panel_tile(const std::byte* slot, std::size_t nb, const std::byte* const* xp, std::size_t pf,
                                   float* y, std::size_t y_stride, __mmask16 mask) {
    using avx512::group_bytes;
    __m512 partial[8][T];
    for (std::size_t l = 0; l < 8; ++l) {
        __m512 acc[T];
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            acc[t] = _mm512_setzero_ps();
        }
        for (std::size_t b = l; b < nb; b += 8, slot += slot_bytes) {
            if (pf != 0) {
                prefetch_span<slot_bytes>(slot + pf);
            }
            // Block b of each token: lane l of its packed group b / 8.
            const std::size_t xo = b / 8 * group_bytes + 4 * l;
            __m512i sums[T];
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) {
                sums[t] = _mm512_set1_epi32(load_i32(xp[t] + xo + avx512::group_seeds));
            }
            // The tokens' chains interleaved, for latency.
#pragma GCC unroll 8
            for (int j = 0; j < 8; ++j) {
                const __m512i w = _mm512_loadu_si512(slot + 64 * j);
#pragma GCC unroll 8
                for (int t = 0; t < T; ++t) {
                    dpbusd_broadcast(sums[t], w, xp[t] + xo + 32 * j);
                }
            }
            const __m512 dw = _mm512_loadu_ps(reinterpret_cast<const float*>(slot + slot_scales));
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) {
                const __m512 dx = _mm512_set1_ps(load_f32(xp[t] + xo + avx512::group_scales));
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[t]), _mm512_mul_ps(dw, dx), acc[t]);
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            partial[l][t] = acc[t];
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
        const __m512 a = _mm512_add_ps(_mm512_add_ps(partial[0][t], partial[4][t]),
                                       _mm512_add_ps(partial[1][t], partial[5][t]));
        const __m512 b = _mm512_add_ps(_mm512_add_ps(partial[2][t], partial[6][t]),
                                       _mm512_add_ps(partial[3][t], partial[7][t]));
        _mm512_mask_storeu_ps(y + t * y_stride, mask, _mm512_add_ps(a, b));
    }
}

using panel_fn = void (*)(const std::byte*, std::size_t, const std::byte* const*, std::size_t, float*, std::size_t,
                          __mmask16);

constexpr std::size_t max_tokens = 8;

template <std::size_t... I>
constexpr std::array<panel_fn, max_tokens> make_panel_table(std::index_sequence<I...>) {
    return {&panel_tile<static_cast<int>(I) + 1>...};
}

constexpr std::array<panel_fn, max_tokens> panel_tiles = make_panel_table(std::make_index_sequence<max_tokens>{});

} // namespace

std::size_t q8_0_panel_bytes(std::size_t k) noexcept {
    return k / qk_32 * slot_bytes;
}

void prepack_q8_0_panel(const std::byte* w, std::size_t rows, std::size_t k, std::byte* dst) {
    const std::size_t nb = k / qk_32;
    const std::size_t rb = nb * sizeof(block_q8_0);
    for (std::size_t l = 0; l < 8; ++l) {
        for (std::size_t b = l; b < nb; b += 8, dst += slot_bytes) {
            for (std::size_t i = 0; i < q8_0_panel_rows; ++i) {
                float d = 0.0f;
                std::uint8_t levels[qk_32];
                std::memset(levels, 0x80, sizeof levels);
                if (i < rows) {
                    block_q8_0 blk;
                    std::memcpy(&blk, w + i * rb + b * sizeof(block_q8_0), sizeof blk);
                    d = f16_to_f32(blk.d);
                    for (std::size_t e = 0; e < qk_32; ++e) {
                        levels[e] = static_cast<std::uint8_t>(static_cast<std::uint8_t>(blk.qs[e]) ^ 0x80u);
                    }
                }
                for (std::size_t j = 0; j < 8; ++j) {
                    std::memcpy(dst + 64 * j + 4 * i, levels + 4 * j, 4);
                }
                std::memcpy(dst + slot_scales + 4 * i, &d, sizeof d);
            }
        }
    }
}

WEFT_TARGET_AVX512 void matmul_q8_0_panels(const std::byte* packed, std::size_t k, std::size_t row_begin,
                                           std::size_t row_end, const activations& x, float* y,
                                           std::size_t y_stride) {
    constexpr std::size_t P = q8_0_panel_rows;
    const std::size_t nb = k / qk_32;
    const std::size_t pb = q8_0_panel_bytes(k);
    const std::byte* xp[max_tokens];
    for (std::size_t p = row_begin / P; p * P < row_end; ++p) {
        const std::size_t r0 = p * P;
        const std::size_t lo = std::max(row_begin, r0) - r0;
        const std::size_t hi = std::min(row_end, r0 + P) - r0;
        const auto mask = static_cast<__mmask16>(((1u << hi) - 1u) & ~((1u << lo) - 1u));
        for (std::size_t t0 = 0; t0 < x.rows; t0 += max_tokens) {
            const std::size_t nt = std::min(max_tokens, x.rows - t0);
            for (std::size_t j = 0; j < nt; ++j) {
                xp[j] = x.packed + (t0 + j) * x.packed_row_bytes;
            }
            // A panel's weights come from memory once, in its first token
            // tile: meanwhile fetch those of a later panel (the one after
            // next for a single token, whose tile takes little time).
            const std::size_t ahead = x.rows == 1 ? 2 : 1;
            const bool fetch = t0 == 0 && r0 + (ahead + 1) * P <= row_end; // only rows of this call
            panel_tiles[nt - 1](packed + p * pb, nb, xp, fetch ? ahead * pb : 0, y + t0 * y_stride + r0, y_stride,
                                mask);
        }
    }
}

} // namespace weft::serve::kernels

#endif
