// Internal: F32 weights repacked into row panels for batched matrix
// multiplies without horizontal sums.
//
// `packed_f32` holds a [rows x k] F32 matrix as panels of 16 rows stored
// k-major: panel p is k groups of 16 floats, group j holding element j of
// rows 16p .. 16p+15 (rows past the end are zero). The kernel keeps one
// vector accumulator per (16 rows, token) and adds w[k] * x[t][k] for k in
// ascending order with one FMA per lane: each output element is the same
// chain of FMAs whatever the number of tokens or the row range, so batch
// invariance holds as with the dot-product tiles. With no reductions at the
// end, a tile of 48 rows x 8 tokens does 24 FMAs per three weight loads
// (64 rows x 6 tokens: per four), which is what batches need; a single
// token streams the panels like the plain rows.
//
// Threading: a packed matrix is immutable; multiply may run concurrently on
// disjoint row ranges.
#pragma once

#include "kernels/huge_buffer.hpp"

#include <cstddef>
#include <memory>

namespace weft::serve::kernels {

class packed_f32 {
public:
    static constexpr std::size_t panel_rows = 16;

    /// Packs `rows` rows of `k` floats, `row_stride` floats apart.
    packed_f32(const float* w, std::size_t rows, std::size_t k, std::size_t row_stride);

    [[nodiscard]] std::size_t rows() const noexcept { return m_rows; }
    [[nodiscard]] std::size_t k() const noexcept { return m_k; }
    [[nodiscard]] std::size_t bytes() const noexcept { return m_panels * panel_rows * m_k * sizeof(float); }

    /// y[t * y_stride + r] = sum_k w[r][k] * x[t * x_stride + k] for r in
    /// [row_begin, row_end) (row_begin a multiple of panel_rows) and t <
    /// tokens.
    void multiply(const float* x, std::size_t x_stride, std::size_t tokens, std::size_t row_begin,
                  std::size_t row_end, float* y, std::size_t y_stride) const;

    /// The panels, bytes() of them (for benchmarks that stream them).
    [[nodiscard]] const float* panel_data() const noexcept { return data(); }

private:
    [[nodiscard]] float* data() const noexcept { return reinterpret_cast<float*>(m_data.get()); }

    std::size_t m_rows;
    std::size_t m_k;
    std::size_t m_panels;
    huge_buffer m_data; // 64-byte aligned floats, huge pages when large
};

} // namespace weft::serve::kernels
