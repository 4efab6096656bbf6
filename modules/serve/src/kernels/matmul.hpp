/// \file
/// The CPU matrix multiplication behind every projection of the model:
/// weight rows of any supported type times a batch of activation rows.
///
/// Use: convert the batch once with `prepare_activations` (quantizing it to
/// the weight type's vec_dot_type when that is Q8_0 / Q8_K), then call
/// `matmul` for the output rows, from one thread or from several that split
/// [0, rows) between them.
///
/// Batch invariance: for a given isa, the float result for (weight row r,
/// activation row t) is bitwise the same whatever the number of activation
/// rows, their contents, and the row range the call covers. Every (r, t) pair
/// gets its own SIMD accumulator fed in the same order by every tile shape.
/// Different isas may differ in the last bits.
///
/// Lifetime: `activations` points into the caller's float rows (F32 weight
/// types) or into the `buffer` given to prepare_activations; both must
/// outlive the matmul calls that use it.
///
/// Threading: prepare_activations and matmul are reentrant; concurrent matmul
/// calls may share one `activations` and write disjoint parts of `y`.
/// set_isa is a process-wide switch meant for tests and benchmarks.
#pragma once

#include <weft/serve/ggml_type.hpp>

#include <cstddef>
#include <vector>

namespace weft::serve::kernels {

/// The activations of one matmul, converted once to the weight type's
/// vec_dot_type: f32 rows as given, or Q8_0 / Q8_K quantized rows.
struct activations {
    ggml_type type = ggml_type::f32; ///< vec_dot_type of the weights
    const std::byte* data = nullptr; ///< first row
    std::size_t row_bytes = 0;       ///< distance between rows
    std::size_t rows = 0;            ///< tokens
    std::size_t k = 0;               ///< elements per row
    /// The same rows rearranged for the active isa's kernels (AVX-512 with
    /// Q8_0: blocks in transposed groups of 8), or null; matmul falls back
    /// to another path when its kernels need them and they are missing.
    const std::byte* packed = nullptr;
    std::size_t packed_row_bytes = 0;
};

/// Converts `tokens` rows of `k` floats (row stride `x_stride` floats) for
/// multiplication with weights of type `wt`. Quantized rows are stored in
/// `buffer` (resized as needed; reuse it between calls to avoid allocation);
/// F32 rows are used in place. Throws std::invalid_argument for an
/// unsupported `wt`, or `k` not a multiple of its block size.
activations prepare_activations(ggml_type wt, const float* x, std::size_t x_stride, std::size_t tokens,
                                std::size_t k, std::vector<std::byte>& buffer);

/// prepare_activations in two steps, for quantized activation types, so
/// that several threads can convert the rows: layout_activations sizes
/// `buffer` and returns the activations with their rows not yet written;
/// fill_activations converts rows [begin, end) of `x` into them (concurrent
/// calls on disjoint ranges are safe). layout_activations throws
/// std::invalid_argument for weights whose activations stay f32.
activations layout_activations(ggml_type wt, std::size_t tokens, std::size_t k, std::vector<std::byte>& buffer);
void fill_activations(const activations& a, const float* x, std::size_t x_stride, std::size_t begin,
                      std::size_t end);

/// y[t * y_stride + r] = dot(weight row r, activation row t) for r in
/// [row_begin, row_end) and every activation row t. Weight rows are
/// `row_bytes(wt, x.k)` apart starting at `w` (row 0). Throws
/// std::invalid_argument when `x` was not prepared for `wt`.
void matmul(ggml_type wt, const std::byte* w, std::size_t row_begin, std::size_t row_end, const activations& x,
            float* y, std::size_t y_stride);

/// Q8_0 weights rearranged once for the AVX-512 kernels: panels of 16 rows,
/// one row per 32-bit lane, with unsigned levels and float scales, so that
/// a product ends in 16 finished outputs per vector instead of a horizontal
/// sum per output (matmul_avx512_panels.cpp). A panel holds
/// `q8_0_prepacked_bytes(16, k)` bytes; row r is in panel r / 16, and calls
/// may split the rows anywhere. matmul_prepacked_q8_0 gives bitwise the
/// results of `matmul` on the plain rows. Supported while the active isa is avx512; `x` must have been
/// prepared for Q8_0 weights under it (x.packed set), else
/// std::invalid_argument.
bool q8_0_prepack_supported() noexcept;
std::size_t q8_0_prepacked_bytes(std::size_t rows, std::size_t k);
void prepack_q8_0(const std::byte* w, std::size_t rows, std::size_t k, std::byte* dst);
void matmul_prepacked_q8_0(const std::byte* packed, std::size_t k, std::size_t row_begin, std::size_t row_end,
                           const activations& x, float* y, std::size_t y_stride);

/// Instruction-set paths of the kernels. avx2 needs AVX2+FMA+F16C; avx512
/// needs AVX-512 F/BW/VL/VNNI as well.
enum class isa : unsigned char { scalar, avx2, avx512 };

/// "scalar", "avx2" or "avx512".
const char* isa_name(isa i) noexcept;

/// The best path this CPU runs (detected once).
isa best_isa() noexcept;

/// The path matmul and prepare_activations use now (best_isa() unless set).
isa active_isa() noexcept;

/// Forces a path, clamped to best_isa(); for tests and benchmarks.
void set_isa(isa i) noexcept;

} // namespace weft::serve::kernels
