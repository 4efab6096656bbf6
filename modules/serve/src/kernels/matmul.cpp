// matmul dispatch: isa detection, activation preparation, and the scalar
// path (the reference dot product per (row, token): batch invariant by
// construction, and the fallback on CPUs without AVX2).
#include "kernels/matmul.hpp"

#include "kernels/matmul_impl.hpp"

#include <weft/serve/quant.hpp>

#include <atomic>
#include <stdexcept>
#include <string>

namespace weft::serve::kernels {

namespace {

isa detect() noexcept {
#if WEFT_KERNELS_X86
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                      __builtin_cpu_supports("f16c");
    if (!avx2) {
        return isa::scalar;
    }
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                        __builtin_cpu_supports("avx512vnni");
    return avx512 ? isa::avx512 : isa::avx2;
#else
    return isa::scalar;
#endif
}

std::atomic<isa>& active() noexcept {
    static std::atomic<isa> a{best_isa()};
    return a;
}

[[noreturn]] void fail(const std::string& what) {
    throw std::invalid_argument(what);
}

std::string name_of(ggml_type t) {
    return std::string(type_info(t).name);
}

void quantize_activation_row(ggml_type vt, const float* x, std::byte* dst, std::size_t k, isa path) {
#if WEFT_KERNELS_X86
    if (path != isa::scalar) {
        if (vt == ggml_type::q8_0) {
            quantize_q8_0_avx2(x, reinterpret_cast<block_q8_0*>(dst), k);
        } else {
            quantize_q8_k_avx2(x, reinterpret_cast<block_q8_k*>(dst), k);
        }
        return;
    }
#endif
    (void)path;
    quantize_row(vt, x, dst, k);
}

} // namespace

const char* isa_name(isa i) noexcept {
    switch (i) {
    case isa::scalar: return "scalar";
    case isa::avx2: return "avx2";
    case isa::avx512: return "avx512";
    }
    return "?";
}

isa best_isa() noexcept {
    static const isa best = detect();
    return best;
}

isa active_isa() noexcept {
    return active().load(std::memory_order_relaxed);
}

void set_isa(isa i) noexcept {
    active().store(static_cast<unsigned char>(i) <= static_cast<unsigned char>(best_isa()) ? i : best_isa(),
                   std::memory_order_relaxed);
}

namespace {

/// Activations for `wt` weights have rows of whole blocks.
void check_whole_blocks(ggml_type wt, std::size_t k) {
    const std::size_t block = type_info(wt).block_size;
    if (k % block != 0) {
        fail("prepare_activations: k = " + std::to_string(k) + " is not a multiple of the " + name_of(wt) +
             " block size " + std::to_string(block));
    }
}

} // namespace

activations layout_activations(ggml_type wt, std::size_t tokens, std::size_t k, std::vector<std::byte>& buffer) {
    const ggml_type vt = vec_dot_type(wt);
    check_whole_blocks(wt, k);
    if (vt == ggml_type::f32) {
        fail("layout_activations: " + name_of(wt) + " weights multiply the float rows as they are");
    }
    const std::size_t rb = row_bytes(vt, k);
#if WEFT_KERNELS_X86
    // The AVX-512 Q8_0 tiles read the rows in transposed groups; made here
    // once rather than by every tile.
    const std::size_t packed_rb = active_isa() == isa::avx512 && vt == ggml_type::q8_0 ? q8_0_packed_bytes(k) : 0;
#else
    const std::size_t packed_rb = 0;
#endif
    const std::size_t total = (rb + packed_rb) * tokens;
    if (buffer.size() < total) {
        buffer.resize(total);
    }
    activations out{vt, buffer.data(), rb, tokens, k};
    if (packed_rb != 0) {
        out.packed = buffer.data() + rb * tokens;
        out.packed_row_bytes = packed_rb;
    }
    return out;
}

void fill_activations(const activations& a, const float* x, std::size_t x_stride, std::size_t begin,
                      std::size_t end) {
    const isa path = active_isa();
    auto* rows = const_cast<std::byte*>(a.data);
    for (std::size_t t = begin; t < end; ++t) {
#if WEFT_KERNELS_X86
        if (a.packed != nullptr) {
            // Packed rows exist only for Q8_0 under AVX-512 (layout_activations).
            quantize_pack_q8_0_avx512(x + t * x_stride, a.k, reinterpret_cast<block_q8_0*>(rows + t * a.row_bytes),
                                      const_cast<std::byte*>(a.packed) + t * a.packed_row_bytes);
            continue;
        }
#endif
        quantize_activation_row(a.type, x + t * x_stride, rows + t * a.row_bytes, a.k, path);
    }
}

activations prepare_activations(ggml_type wt, const float* x, std::size_t x_stride, std::size_t tokens,
                                std::size_t k, std::vector<std::byte>& buffer) {
    if (tokens > 1 && x_stride < k) {
        fail("prepare_activations: row stride " + std::to_string(x_stride) + " is shorter than k = " +
             std::to_string(k));
    }
    if (vec_dot_type(wt) == ggml_type::f32) {
        check_whole_blocks(wt, k);
        return {ggml_type::f32, reinterpret_cast<const std::byte*>(x), x_stride * sizeof(float), tokens, k};
    }
    const activations out = layout_activations(wt, tokens, k, buffer);
    fill_activations(out, x, x_stride, 0, tokens);
    return out;
}

void matmul(ggml_type wt, const std::byte* w, std::size_t row_begin, std::size_t row_end, const activations& x,
            float* y, std::size_t y_stride) {
    const ggml_type vt = vec_dot_type(wt);
    if (x.type != vt) {
        fail("matmul: " + name_of(wt) + " weights need " + name_of(vt) + " activations, got " + name_of(x.type));
    }
    if (x.k % type_info(wt).block_size != 0 || x.row_bytes < row_bytes(vt, x.k)) {
        fail("matmul: activations of k = " + std::to_string(x.k) + " do not fit " + name_of(wt) + " rows");
    }
    if (row_begin > row_end) {
        fail("matmul: row range [" + std::to_string(row_begin) + ", " + std::to_string(row_end) + ") is reversed");
    }
    if (row_begin == row_end || x.rows == 0) {
        return;
    }
    const std::size_t w_row_bytes = row_bytes(wt, x.k);
#if WEFT_KERNELS_X86
    const isa path = active_isa();
    const tile_set* tiles = nullptr;
    // Float weights with short rows go to the AVX2 tiles: at k < 256 the
    // 16-lane tiles spend more on their horizontal sums than on FMAs. The
    // choice depends on k only, so batch invariance is kept.
    const bool short_float_rows =
        x.k < 256 && (wt == ggml_type::f32 || wt == ggml_type::f16 || wt == ggml_type::bf16);
    if (path == isa::avx512 && !short_float_rows) {
        tiles = avx512_tiles(wt);
    }
    if (tiles != nullptr && tiles->packed && x.packed == nullptr) {
        tiles = nullptr; // prepared under another isa: its rows suit the AVX2 tiles
    }
    if (tiles == nullptr && path != isa::scalar) {
        tiles = avx2_tiles(wt);
    }
    if (tiles != nullptr) {
        run_tiles(*tiles, w, w_row_bytes, row_begin, row_end, x, y, y_stride);
        return;
    }
#endif
    for (std::size_t r = row_begin; r < row_end; ++r) {
        for (std::size_t t = 0; t < x.rows; ++t) {
            y[t * y_stride + r] = vec_dot_reference(wt, w + r * w_row_bytes, x.data + t * x.row_bytes, x.k);
        }
    }
}

bool q8_0_prepack_supported() noexcept {
#if WEFT_KERNELS_X86
    return active_isa() == isa::avx512;
#else
    return false;
#endif
}

std::size_t q8_0_prepacked_bytes(std::size_t rows, std::size_t k) {
#if WEFT_KERNELS_X86
    if (q8_0_prepack_supported() && k % qk_32 == 0) {
        return (rows + q8_0_panel_rows - 1) / q8_0_panel_rows * q8_0_panel_bytes(k);
    }
#endif
    fail("q8_0_prepacked_bytes: prepacking needs the avx512 isa and k a multiple of 32");
}

void prepack_q8_0(const std::byte* w, std::size_t rows, std::size_t k, std::byte* dst) {
#if WEFT_KERNELS_X86
    (void)q8_0_prepacked_bytes(rows, k); // the same checks
    const std::size_t plain = row_bytes(ggml_type::q8_0, k);
    for (std::size_t r = 0; r < rows; r += q8_0_panel_rows, dst += q8_0_panel_bytes(k)) {
        prepack_q8_0_panel(w + r * plain, std::min(q8_0_panel_rows, rows - r), k, dst);
    }
#else
    (void)w, (void)rows, (void)k, (void)dst;
    fail("prepack_q8_0: prepacking needs the avx512 isa");
#endif
}

void matmul_prepacked_q8_0(const std::byte* packed, std::size_t k, std::size_t row_begin, std::size_t row_end,
                           const activations& x, float* y, std::size_t y_stride) {
#if WEFT_KERNELS_X86
    if (x.type != ggml_type::q8_0 || x.k != k || x.packed == nullptr || !q8_0_prepack_supported()) {
        fail("matmul_prepacked_q8_0: activations must be Q8_0 rows of k = " + std::to_string(k) +
             " prepared under the avx512 isa");
    }
    if (row_begin > row_end) {
        fail("matmul_prepacked_q8_0: row range [" + std::to_string(row_begin) + ", " + std::to_string(row_end) +
             ") is reversed");
    }
    if (row_begin == row_end || x.rows == 0) return;
    matmul_q8_0_panels(packed, k, row_begin, row_end, x, y, y_stride);
#else
    (void)packed, (void)k, (void)row_begin, (void)row_end, (void)x, (void)y, (void)y_stride;
    fail("matmul_prepacked_q8_0: prepacking needs the avx512 isa");
#endif
}

} // namespace weft::serve::kernels
