// Row conversions and reference dot products for the float types and the
// 32-element block formats (Q8_0, Q4_0); the k-quants live in quant_k.cpp.
#include <weft/serve/quant.hpp>

#include "kernels/matmul_blocks.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace weft::serve {

namespace {

enum class operation { quantize, dequantize, dot };

const char* operation_name(operation op) noexcept {
    switch (op) {
    case operation::quantize: return "quantize_row";
    case operation::dequantize: return "dequantize_row";
    case operation::dot: return "vec_dot_reference";
    }
    return "?";
}

/// Throws unless `op` handles `t` and `n` is a whole number of its blocks.
void check(operation op, ggml_type t, std::size_t n) {
    const ggml_type_info info = type_info(t);
    // Q8_K is an activation format: it converts, but is never a weight row.
    const bool handled = info.supported || (t == ggml_type::q8_k && op != operation::dot);
    if (!handled) {
        throw std::invalid_argument(std::string(operation_name(op)) + ": unsupported type " +
                                    std::string(info.name) + " (" +
                                    std::to_string(static_cast<std::uint32_t>(t)) + ")");
    }
    if (n % info.block_size != 0) {
        throw std::invalid_argument(std::string(operation_name(op)) + ": " + std::to_string(n) +
                                    " elements is not a multiple of the " + std::string(info.name) +
                                    " block size " + std::to_string(info.block_size));
    }
}

// --- Q8_0 ------------------------------------------------------------------------

void quantize_q8_0(const float* x, block_q8_0* y, std::size_t n) {
    for (std::size_t b = 0; b < n / qk_32; ++b, x += qk_32) {
        float amax = 0.0f;
        for (std::size_t j = 0; j < qk_32; ++j) {
            amax = std::max(amax, std::fabs(x[j]));
        }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = f32_to_f16(d);
        for (std::size_t j = 0; j < qk_32; ++j) {
            // roundf: halves away from zero, as llama.cpp.
            y[b].qs[j] = static_cast<std::int8_t>(std::round(x[j] * id));
        }
    }
}

void dequantize_q8_0(const block_q8_0* x, float* y, std::size_t n) {
    for (std::size_t b = 0; b < n / qk_32; ++b, y += qk_32) {
        const float d = f16_to_f32(x[b].d);
        for (std::size_t j = 0; j < qk_32; ++j) {
            y[j] = d * static_cast<float>(x[b].qs[j]);
        }
    }
}

float dot_q8_0_q8_0(const block_q8_0* w, const block_q8_0* x, std::size_t n) {
    float sum = 0.0f;
    for (std::size_t b = 0; b < n / qk_32; ++b) {
        int sumi = 0;
        for (std::size_t j = 0; j < qk_32; ++j) {
            sumi += w[b].qs[j] * x[b].qs[j];
        }
        sum += static_cast<float>(sumi) * (f16_to_f32(w[b].d) * f16_to_f32(x[b].d));
    }
    return sum;
}

// --- Q4_0 ------------------------------------------------------------------------

void quantize_q4_0(const float* x, block_q4_0* y, std::size_t n) {
    for (std::size_t b = 0; b < n / qk_32; ++b, x += qk_32) {
        // The scale comes from the value of largest magnitude with its sign,
        // so that value lands exactly on -8 (the side with one more level).
        float amax = 0.0f;
        float max = 0.0f;
        for (std::size_t j = 0; j < qk_32; ++j) {
            if (std::fabs(x[j]) > amax) {
                amax = std::fabs(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = f32_to_f16(d);
        for (std::size_t j = 0; j < qk_32 / 2; ++j) {
            const int lo = std::min(15, static_cast<int>(x[j] * id + 8.5f));
            const int hi = std::min(15, static_cast<int>(x[j + qk_32 / 2] * id + 8.5f));
            y[b].qs[j] = static_cast<std::uint8_t>(lo | (hi << 4));
        }
    }
}

void dequantize_q4_0(const block_q4_0* x, float* y, std::size_t n) {
    for (std::size_t b = 0; b < n / qk_32; ++b, y += qk_32) {
        const float d = f16_to_f32(x[b].d);
        for (std::size_t j = 0; j < qk_32 / 2; ++j) {
            y[j] = d * static_cast<float>((x[b].qs[j] & 0xf) - 8);
            y[j + qk_32 / 2] = d * static_cast<float>((x[b].qs[j] >> 4) - 8);
        }
    }
}

float dot_q4_0_q8_0(const block_q4_0* w, const block_q8_0* x, std::size_t n) {
    float sum = 0.0f;
    for (std::size_t b = 0; b < n / qk_32; ++b) {
        int sumi = 0;
        for (std::size_t j = 0; j < qk_32 / 2; ++j) {
            sumi += ((w[b].qs[j] & 0xf) - 8) * x[b].qs[j];
            sumi += ((w[b].qs[j] >> 4) - 8) * x[b].qs[j + qk_32 / 2];
        }
        sum += static_cast<float>(sumi) * (f16_to_f32(w[b].d) * f16_to_f32(x[b].d));
    }
    return sum;
}

// --- float types -----------------------------------------------------------------

template <float (*Convert)(std::uint16_t)>
float dot_half(const std::uint16_t* w, const float* x, std::size_t n) {
    float sum = 0.0f;
    for (std::size_t i = 0; i < n; ++i) {
        sum += Convert(w[i]) * x[i];
    }
    return sum;
}

} // namespace

ggml_type vec_dot_type(ggml_type t) {
    switch (t) {
    case ggml_type::f32:
    case ggml_type::f16:
    case ggml_type::bf16: return ggml_type::f32;
    case ggml_type::q8_0:
    case ggml_type::q4_0: return ggml_type::q8_0;
    case ggml_type::q4_k:
    case ggml_type::q6_k: return ggml_type::q8_k;
    default: break;
    }
    throw std::invalid_argument("vec_dot_type: unsupported weight type " + std::string(type_info(t).name));
}

void dequantize_row(ggml_type t, const void* src, float* dst, std::size_t n) {
    check(operation::dequantize, t, n);
    switch (t) {
    case ggml_type::f32: std::copy_n(static_cast<const float*>(src), n, dst); return;
    case ggml_type::f16:
        for (std::size_t i = 0; i < n; ++i) {
            dst[i] = f16_to_f32(static_cast<const std::uint16_t*>(src)[i]);
        }
        return;
    case ggml_type::bf16:
        for (std::size_t i = 0; i < n; ++i) {
            dst[i] = bf16_to_f32(static_cast<const std::uint16_t*>(src)[i]);
        }
        return;
    case ggml_type::q8_0: dequantize_q8_0(static_cast<const block_q8_0*>(src), dst, n); return;
    case ggml_type::q4_0: dequantize_q4_0(static_cast<const block_q4_0*>(src), dst, n); return;
    case ggml_type::q4_k: kernels::dequantize_row_q4_k(static_cast<const block_q4_k*>(src), dst, n); return;
    case ggml_type::q6_k: kernels::dequantize_row_q6_k(static_cast<const block_q6_k*>(src), dst, n); return;
    case ggml_type::q8_k: kernels::dequantize_row_q8_k(static_cast<const block_q8_k*>(src), dst, n); return;
    default: break;
    }
}

void quantize_row(ggml_type t, const float* src, void* dst, std::size_t n) {
    check(operation::quantize, t, n);
    switch (t) {
    case ggml_type::f32: std::copy_n(src, n, static_cast<float*>(dst)); return;
    case ggml_type::f16:
        for (std::size_t i = 0; i < n; ++i) {
            static_cast<std::uint16_t*>(dst)[i] = f32_to_f16(src[i]);
        }
        return;
    case ggml_type::bf16:
        for (std::size_t i = 0; i < n; ++i) {
            static_cast<std::uint16_t*>(dst)[i] = f32_to_bf16(src[i]);
        }
        return;
    case ggml_type::q8_0: quantize_q8_0(src, static_cast<block_q8_0*>(dst), n); return;
    case ggml_type::q4_0: quantize_q4_0(src, static_cast<block_q4_0*>(dst), n); return;
    case ggml_type::q4_k: kernels::quantize_row_q4_k(src, static_cast<block_q4_k*>(dst), n); return;
    case ggml_type::q6_k: kernels::quantize_row_q6_k(src, static_cast<block_q6_k*>(dst), n); return;
    case ggml_type::q8_k: kernels::quantize_row_q8_k(src, static_cast<block_q8_k*>(dst), n); return;
    default: break;
    }
}

float vec_dot_reference(ggml_type t, const void* w, const void* x, std::size_t n) {
    check(operation::dot, t, n);
    switch (t) {
    case ggml_type::f32: {
        const auto* a = static_cast<const float*>(w);
        const auto* b = static_cast<const float*>(x);
        float sum = 0.0f;
        for (std::size_t i = 0; i < n; ++i) {
            sum += a[i] * b[i];
        }
        return sum;
    }
    case ggml_type::f16:
        return dot_half<f16_to_f32>(static_cast<const std::uint16_t*>(w), static_cast<const float*>(x), n);
    case ggml_type::bf16:
        return dot_half<bf16_to_f32>(static_cast<const std::uint16_t*>(w), static_cast<const float*>(x), n);
    case ggml_type::q8_0:
        return dot_q8_0_q8_0(static_cast<const block_q8_0*>(w), static_cast<const block_q8_0*>(x), n);
    case ggml_type::q4_0:
        return dot_q4_0_q8_0(static_cast<const block_q4_0*>(w), static_cast<const block_q8_0*>(x), n);
    case ggml_type::q4_k:
        return kernels::vec_dot_q4_k_q8_k(static_cast<const block_q4_k*>(w), static_cast<const block_q8_k*>(x), n);
    case ggml_type::q6_k:
        return kernels::vec_dot_q6_k_q8_k(static_cast<const block_q6_k*>(w), static_cast<const block_q8_k*>(x), n);
    default: break;
    }
    return 0.0f;
}

} // namespace weft::serve
