/// \file
/// Internal plumbing between matmul.cpp and the per-isa kernel files: the
/// register-tile function type, the loop that walks a row range in tiles,
/// and each isa's table of kernels.
///
/// Threading: stateless; safe from any thread.
#pragma once

#include "kernels/matmul.hpp"

#include <weft/serve/quant.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <cstddef>
#include <utility>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define WEFT_KERNELS_X86 1
#define WEFT_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define WEFT_TARGET_AVX512                                                                                         \
    __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#else
#define WEFT_KERNELS_X86 0
#endif

namespace weft::serve::kernels {

/// One register tile: `rows` weight rows times `tokens` activation rows, `k`
/// elements each; writes out[t * rows + r]. With `pf` non-zero, each weight
/// row stream is also prefetched `pf` bytes ahead: the same place in a later
/// row tile, weight rows being contiguous.
using tile_fn = void (*)(const std::byte* const* w, const std::byte* const* x, std::size_t k, std::size_t pf,
                         float* out);

/// Prefetches the cache line at `p` into L2 (never faults, whatever `p` is).
/// L2, not L1: a whole row tile ahead would not fit in L1 next to the tile
/// being read.
inline void prefetch(const std::byte* p) noexcept {
    __builtin_prefetch(p, 0, 2);
}

/// Prefetches at 64-byte steps over the `Bytes` bytes at `p`: for spans that
/// follow each other, as blocks of a row do, no point is more than 64 bytes
/// from the next, so every cache line of the stream gets one.
template <std::size_t Bytes>
inline void prefetch_span(const std::byte* p) noexcept {
    for (std::size_t i = 0; i < Bytes; i += 64) {
        prefetch(p + i);
    }
}

inline constexpr int max_tile_rows = 8;
inline constexpr int max_tile_tokens = 8;

/// The tiles of one weight type on one isa.
struct tile_set {
    int rows;                 ///< weight rows of the batched tiles
    int tokens;               ///< their most activation rows
    const tile_fn* by_tokens; ///< [n - 1]: `rows` x n tile, n in 1..tokens
    int decode_rows;          ///< weight rows of the one-token tile
    tile_fn decode;           ///< decode_rows x 1 tile
    bool packed;              ///< the tiles read activations::packed rows
};

/// The tile_set of `Tiles`, a class with `template <int R, int T> static void
/// run(...)` (a tile_fn): batched tiles of R rows x 1..T tokens, and an RD x 1
/// decode tile; `Packed`: they read activations::packed.
template <class Tiles, int R, int T, int RD, bool Packed = false>
struct tile_table {
    static_assert(R <= max_tile_rows && RD <= max_tile_rows && T <= max_tile_tokens);
    template <std::size_t... I>
    static constexpr std::array<tile_fn, T> make(std::index_sequence<I...>) {
        return {&Tiles::template run<R, static_cast<int>(I) + 1>...};
    }
    static constexpr std::array<tile_fn, T> batched = make(std::make_index_sequence<T>{});
    static constexpr tile_set set{R, T, batched.data(), RD, &Tiles::template run<RD, 1>, Packed};
};

/// Multiplies weight rows [row_begin, row_end) by every row of `x` in tiles.
/// Rows past the end of a partial row tile repeat the last row (results
/// dropped): a tile computes each (r, t) alone, so padding changes nothing.
inline void run_tiles(const tile_set& ts, const std::byte* w, std::size_t w_row_bytes, std::size_t row_begin,
                      std::size_t row_end, const activations& x, float* y, std::size_t y_stride) {
    const bool one = x.rows == 1;
    const auto rows = static_cast<std::size_t>(one ? ts.decode_rows : ts.rows);
    const auto tokens = static_cast<std::size_t>(one ? 1 : ts.tokens);
    const std::byte* wp[max_tile_rows];
    const std::byte* xp[max_tile_tokens];
    float out[max_tile_rows * max_tile_tokens];
    for (std::size_t r0 = row_begin; r0 < row_end; r0 += rows) {
        const std::size_t nr = std::min(rows, row_end - r0);
        for (std::size_t i = 0; i < rows; ++i) {
            wp[i] = w + (r0 + std::min(i, nr - 1)) * w_row_bytes;
        }
        for (std::size_t t0 = 0; t0 < x.rows; t0 += tokens) {
            const std::size_t nt = std::min(tokens, x.rows - t0);
            for (std::size_t j = 0; j < nt; ++j) {
                xp[j] = ts.packed ? x.packed + (t0 + j) * x.packed_row_bytes : x.data + (t0 + j) * x.row_bytes;
            }
            // Each row tile's weights come from memory once, in its first
            // token tile: meanwhile fetch those of a later row tile (the one
            // after next when decoding, where a row tile takes little time).
            const std::size_t ahead = (one ? 2 : 1) * rows;
            const bool fetch = t0 == 0 && r0 + ahead + rows <= row_end; // only rows of this call
            const std::size_t pf = fetch ? ahead * w_row_bytes : 0;
            (one ? ts.decode : ts.by_tokens[nt - 1])(wp, xp, x.k, pf, out);
            for (std::size_t j = 0; j < nt; ++j) {
                float* dst = y + (t0 + j) * y_stride + r0;
                const float* src = out + j * rows;
                if (nr == 4) { // a whole row tile of the common shapes: one fixed-size move
                    std::memcpy(dst, src, 4 * sizeof(float));
                } else if (nr == 8) {
                    std::memcpy(dst, src, 8 * sizeof(float));
                } else {
                    std::memcpy(dst, src, nr * sizeof(float));
                }
            }
        }
    }
}

#if WEFT_KERNELS_X86
/// The tiles for weight type `wt`, nullptr when the isa has none of its own.
const tile_set* avx2_tiles(ggml_type wt) noexcept;
const tile_set* avx512_tiles(ggml_type wt) noexcept;

/// Activation quantizers, bit-identical to quantize_row (AVX2).
void quantize_q8_0_avx2(const float* x, block_q8_0* y, std::size_t n);
void quantize_q8_k_avx2(const float* x, block_q8_k* y, std::size_t n);

/// Bytes of one Q8_0 row of `k` elements packed for the AVX-512 tiles
/// (matmul_avx512.cpp).
std::size_t q8_0_packed_bytes(std::size_t k) noexcept;
/// A row of `k` floats quantized to Q8_0 into `y` (for finite inputs the
/// bytes of quantize_row) and, in the same pass, packed for the AVX-512
/// tiles into `dst` (the layout of avx512::group_bytes).
void quantize_pack_q8_0_avx512(const float* x, std::size_t k, block_q8_0* y, std::byte* dst);

/// Q8_0 weights prepacked in panels of 16 rows for the AVX-512 kernels
/// (matmul_avx512_panels.cpp): the bytes of one panel, the packing of one
/// panel (`rows` <= 16 plain rows from `w`; the rest padded), and the
/// product over rows [row_begin, row_end) of panels that start at `packed`.
inline constexpr std::size_t q8_0_panel_rows = 16;
std::size_t q8_0_panel_bytes(std::size_t k) noexcept;
void prepack_q8_0_panel(const std::byte* w, std::size_t rows, std::size_t k, std::byte* dst);
void matmul_q8_0_panels(const std::byte* packed, std::size_t k, std::size_t row_begin, std::size_t row_end,
                        const activations& x, float* y, std::size_t y_stride);
#endif

} // namespace weft::serve::kernels
