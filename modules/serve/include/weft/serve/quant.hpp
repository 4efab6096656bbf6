/// \file
/// Quantized block formats (bit-compatible with llama.cpp's ggml) and the
/// row conversions between them and float.
///
/// Supported weight types: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K. Q8_K is the
/// activation format the k-quant dot products pair with (Q8_0 pairs with
/// Q8_0 and Q4_0). Every function converts whole rows: `n` must be a multiple
/// of the type's block size (std::invalid_argument otherwise), and an
/// unsupported type gives std::invalid_argument naming it.
///
/// Threading: pure functions over caller-owned memory; safe from any thread.
#pragma once

#include <weft/serve/ggml_type.hpp>

#include <cstddef>
#include <cstdint>

namespace weft::serve {

/// 32 weights: w = d * q, q in [-127, 127].
struct block_q8_0 {
    std::uint16_t d; ///< f16 scale
    std::int8_t qs[32];
};
static_assert(sizeof(block_q8_0) == 34);

/// 32 weights: w = d * (q - 8); byte j holds element j (low nibble) and
/// element j + 16 (high nibble).
struct block_q4_0 {
    std::uint16_t d; ///< f16 scale
    std::uint8_t qs[16];
};
static_assert(sizeof(block_q4_0) == 18);

/// 256 weights in 8 sub-blocks of 32: w = d * sc[j] * q - dmin * m[j], with
/// 6-bit sub-block scales and mins packed in `scales` (llama.cpp's
/// get_scale_min_k4 layout) and 4-bit q: byte l of 32-byte group g holds
/// element 64g + l (low nibble) and 64g + 32 + l (high nibble).
struct block_q4_k {
    std::uint16_t d;    ///< f16 super-block scale of the scales
    std::uint16_t dmin; ///< f16 super-block scale of the mins
    std::uint8_t scales[12];
    std::uint8_t qs[128];
};
static_assert(sizeof(block_q4_k) == 144);

/// 256 weights in 16 sub-blocks of 16: w = d * scales[j] * (q - 32), 6-bit q
/// split into low 4 bits (`ql`) and high 2 bits (`qh`), llama.cpp's layout.
struct block_q6_k {
    std::uint8_t ql[128];
    std::uint8_t qh[64];
    std::int8_t scales[16];
    std::uint16_t d; ///< f16 super-block scale
};
static_assert(sizeof(block_q6_k) == 210);

/// 256 activations: x = d * q; `bsums[j]` is the sum of q over elements
/// 16j .. 16j+15 (used by the k-quant dot products for the mins).
struct block_q8_k {
    float d;
    std::int8_t qs[256];
    std::int16_t bsums[16];
};
static_assert(sizeof(block_q8_k) == 292);

/// The type of the activation row a weight row of type `t` is multiplied
/// with: Q8_0 for Q8_0/Q4_0, Q8_K for Q4_K/Q6_K, F32 for F32/F16/BF16.
ggml_type vec_dot_type(ggml_type t);

/// Converts `n` elements of type `t` at `src` to float.
void dequantize_row(ggml_type t, const void* src, float* dst, std::size_t n);

/// Converts `n` floats to type `t` at `dst` (row_bytes(t, n) bytes), the way
/// llama.cpp's reference quantizers do (round to nearest, scales chosen from
/// each block's largest magnitude; Q4_K/Q6_K search the sub-block scales).
void quantize_row(ggml_type t, const float* src, void* dst, std::size_t n);

/// Reference dot product of one weight row of type `t` with one activation
/// row of type `vec_dot_type(t)`, both `n` elements, computed block by block
/// in plain scalar code: the oracle the SIMD kernels are tested against.
float vec_dot_reference(ggml_type t, const void* w, const void* x, std::size_t n);

} // namespace weft::serve
