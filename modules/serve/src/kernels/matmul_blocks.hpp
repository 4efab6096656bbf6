/// \file
/// Internal helpers shared by the row conversions (quant*.cpp) and the matmul
/// kernels: the k-quant scale unpacking, llama.cpp's rounding, and the
/// k-quant row functions that quant.cpp dispatches to.
///
/// Threading: pure functions; safe from any thread.
#pragma once

#include <weft/serve/quant.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace weft::serve::kernels {

/// Round to nearest, ties to even, as llama.cpp's nearest_int: adding 1.5 * 2^23
/// leaves the rounded integer in the low mantissa bits. Exact for |v| < 2^22;
/// defined (if meaningless) for any input, NaN included.
inline int nearest_int(float v) noexcept {
    const std::int32_t bits = std::bit_cast<std::int32_t>(v + 12582912.0f);
    return (bits & 0x007fffff) - 0x00400000;
}

/// Sub-block `j` (0..7) scale and min of a Q4_K block (6 bits each).
inline void q4_k_scale_min(int j, const std::uint8_t* s, std::uint8_t& sc, std::uint8_t& m) noexcept {
    if (j < 4) {
        sc = s[j] & 63u;
        m = s[j + 4] & 63u;
    } else {
        sc = static_cast<std::uint8_t>((s[j + 4] & 0xfu) | ((s[j - 4] >> 6) << 4));
        m = static_cast<std::uint8_t>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/// All eight scales and mins of a Q4_K block, four at a time: bytes 0..3
/// hold scales 0..3 (+ top bits of scales 4..7), bytes 4..7 mins 0..3 (+ top
/// bits of mins 4..7), bytes 8..11 the low nibbles of scales and mins 4..7.
/// The masks act on every byte alike, so byte order does not matter.
inline void q4_k_unpack_scales(const std::uint8_t* s, std::uint8_t* sc, std::uint8_t* m) noexcept {
    std::uint32_t w[3];
    std::memcpy(w, s, sizeof w);
    const std::uint32_t low6 = 0x3f3f3f3fu;
    const std::uint32_t low4 = 0x0f0f0f0fu;
    const std::uint32_t low2 = 0x03030303u;
    const std::uint32_t out[4] = {
        w[0] & low6,
        (w[2] & low4) | (((w[0] >> 6) & low2) << 4),
        w[1] & low6,
        ((w[2] >> 4) & low4) | (((w[1] >> 6) & low2) << 4),
    };
    std::memcpy(sc, out, 8);
    std::memcpy(m, out + 2, 8);
}

// k-quant rows (quant_k.cpp); n is a multiple of qk_k, checked by the caller.
void quantize_row_q4_k(const float* x, block_q4_k* y, std::size_t n);
void dequantize_row_q4_k(const block_q4_k* x, float* y, std::size_t n);
void quantize_row_q6_k(const float* x, block_q6_k* y, std::size_t n);
void dequantize_row_q6_k(const block_q6_k* x, float* y, std::size_t n);
void quantize_row_q8_k(const float* x, block_q8_k* y, std::size_t n);
void dequantize_row_q8_k(const block_q8_k* x, float* y, std::size_t n);
float vec_dot_q4_k_q8_k(const block_q4_k* w, const block_q8_k* x, std::size_t n);
float vec_dot_q6_k_q8_k(const block_q6_k* w, const block_q8_k* x, std::size_t n);

} // namespace weft::serve::kernels
