/// \file
/// `ggml_type`: the tensor element types of the GGUF format (numbered as in
/// llama.cpp's ggml), their block geometry, and the half-precision
/// conversions every quantized type builds on.
///
/// Quantized types store a row as consecutive blocks: `block_size(t)`
/// elements take `type_size(t)` bytes. F32/F16/BF16 are "blocks" of one
/// element. Types weft cannot compute with are still named, so that an error
/// can say which type a file uses (`is_supported`).
///
/// Threading: pure functions and constants; safe from any thread.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace weft::serve {

enum class ggml_type : std::uint32_t {
    f32 = 0,
    f16 = 1,
    q4_0 = 2,
    q4_1 = 3,
    q5_0 = 6,
    q5_1 = 7,
    q8_0 = 8,
    q8_1 = 9,
    q2_k = 10,
    q3_k = 11,
    q4_k = 12,
    q5_k = 13,
    q6_k = 14,
    q8_k = 15,
    iq2_xxs = 16,
    iq2_xs = 17,
    iq3_xxs = 18,
    iq1_s = 19,
    iq4_nl = 20,
    iq3_s = 21,
    iq2_s = 22,
    iq4_xs = 23,
    i8 = 24,
    i16 = 25,
    i32 = 26,
    i64 = 27,
    f64 = 28,
    iq1_m = 29,
    bf16 = 30,
};

/// Elements per block of the k-quants.
inline constexpr std::size_t qk_k = 256;
/// Elements per block of Q4_0 / Q8_0.
inline constexpr std::size_t qk_32 = 32;

struct ggml_type_info {
    std::string_view name;  ///< llama.cpp's spelling: "f32", "q8_0", "q4_K", ...
    std::size_t block_size; ///< elements per block (0: unknown type)
    std::size_t type_size;  ///< bytes per block
    bool supported;         ///< weft can load and compute with it
};

/// Geometry and name of `t`; for a number that names no type, block_size is 0
/// and the name "unknown".
constexpr ggml_type_info type_info(ggml_type t) noexcept {
    switch (t) {
    case ggml_type::f32: return {"f32", 1, 4, true};
    case ggml_type::f16: return {"f16", 1, 2, true};
    case ggml_type::bf16: return {"bf16", 1, 2, true};
    case ggml_type::q4_0: return {"q4_0", 32, 18, true};
    case ggml_type::q8_0: return {"q8_0", 32, 34, true};
    case ggml_type::q4_k: return {"q4_K", 256, 144, true};
    case ggml_type::q6_k: return {"q6_K", 256, 210, true};
    case ggml_type::q8_k: return {"q8_K", 256, 292, false}; // activations only
    case ggml_type::q4_1: return {"q4_1", 32, 20, false};
    case ggml_type::q5_0: return {"q5_0", 32, 22, false};
    case ggml_type::q5_1: return {"q5_1", 32, 24, false};
    case ggml_type::q8_1: return {"q8_1", 32, 36, false};
    case ggml_type::q2_k: return {"q2_K", 256, 84, false};
    case ggml_type::q3_k: return {"q3_K", 256, 110, false};
    case ggml_type::q5_k: return {"q5_K", 256, 176, false};
    case ggml_type::iq2_xxs: return {"iq2_xxs", 256, 66, false};
    case ggml_type::iq2_xs: return {"iq2_xs", 256, 74, false};
    case ggml_type::iq3_xxs: return {"iq3_xxs", 256, 98, false};
    case ggml_type::iq1_s: return {"iq1_s", 256, 50, false};
    case ggml_type::iq4_nl: return {"iq4_nl", 32, 18, false};
    case ggml_type::iq3_s: return {"iq3_s", 256, 110, false};
    case ggml_type::iq2_s: return {"iq2_s", 256, 82, false};
    case ggml_type::iq4_xs: return {"iq4_xs", 256, 136, false};
    case ggml_type::i8: return {"i8", 1, 1, false};
    case ggml_type::i16: return {"i16", 1, 2, false};
    case ggml_type::i32: return {"i32", 1, 4, false};
    case ggml_type::i64: return {"i64", 1, 8, false};
    case ggml_type::f64: return {"f64", 1, 8, false};
    case ggml_type::iq1_m: return {"iq1_m", 256, 56, false};
    }
    return {"unknown", 0, 0, false};
}

/// Bytes taken by `n` elements of `t`; `n` must be a multiple of the block size.
constexpr std::size_t row_bytes(ggml_type t, std::size_t n) noexcept {
    const ggml_type_info i = type_info(t);
    return i.block_size == 0 ? 0 : n / i.block_size * i.type_size;
}

/// IEEE half to float (exact).
inline float f16_to_f32(std::uint16_t h) noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    std::uint32_t exp = (h >> 10) & 0x1fu;
    std::uint32_t mant = h & 0x3ffu;
    std::uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13); // inf / nan
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {
        // Subnormal half: normalise.
        exp = 113;
        while ((mant & 0x400u) == 0) {
            mant <<= 1;
            --exp;
        }
        bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
    }
    return std::bit_cast<float>(bits);
}

/// Float to IEEE half, rounding to nearest even; overflow gives infinity.
inline std::uint16_t f32_to_f16(float f) noexcept {
    const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
    const std::uint32_t sign = (x >> 16) & 0x8000u;
    const std::uint32_t abs = x & 0x7fffffffu;
    if (abs >= 0x7f800000u) { // inf or nan
        return static_cast<std::uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
    }
    if (abs >= 0x477ff000u) { // rounds to >= 65520: infinity
        return static_cast<std::uint16_t>(sign | 0x7c00u);
    }
    if (abs < 0x38800000u) { // below the smallest normal half: subnormal or zero
        // Adding 0.5 (as a float) aligns the subnormal half's bits at the
        // bottom of the mantissa, and the FPU rounds to nearest even.
        const float shifted = std::bit_cast<float>(abs) + 0.5f;
        return static_cast<std::uint16_t>(sign | (std::bit_cast<std::uint32_t>(shifted) - 0x3f000000u));
    }
    const std::uint32_t odd = (abs >> 13) & 1u;
    const std::uint32_t rounded = abs + 0xc8000fffu + odd; // rebias exponent, round half to even
    return static_cast<std::uint16_t>(sign | (rounded >> 13));
}

/// bfloat16 to float (exact).
inline float bf16_to_f32(std::uint16_t h) noexcept {
    return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

/// Float to bfloat16, rounding to nearest even; NaN stays NaN.
inline std::uint16_t f32_to_bf16(float f) noexcept {
    const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) {
        return static_cast<std::uint16_t>((x >> 16) | 0x40u);
    }
    return static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

} // namespace weft::serve
