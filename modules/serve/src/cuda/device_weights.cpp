#include "cuda/device_weights.hpp"

#include <weft/serve/ggml_type.hpp>
#include <weft/serve/quant.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>

namespace weft::serve::cuda {

namespace {

constexpr std::size_t alignment = 256;
// Host staging per cudaMemcpy: large enough to keep the copy engine busy,
// small enough not to matter next to the model.
constexpr std::size_t staging_bytes = std::size_t{32} << 20;

constexpr std::size_t align_up(std::size_t n) noexcept { return (n + alignment - 1) / alignment * alignment; }

/// Hands out aligned pieces of the arena; with a null base it only counts.
struct cursor {
    std::byte* base = nullptr;
    std::size_t offset = 0;

    std::byte* take(std::size_t bytes) {
        std::byte* p = base != nullptr ? base + offset : nullptr;
        offset = align_up(offset + bytes);
        return p;
    }
};

/// Row r of w as `t` elements at `out`. Same-format rows are copied as they
/// are; everything else goes through float (dequantize_row), then to bf16
/// rounding to nearest even.
void convert_row(const weight_matrix& w, std::size_t r, dtype t, std::byte* out, std::vector<float>& tmp) {
    if ((w.type == ggml_type::bf16 && t == dtype::bf16) || (w.type == ggml_type::f32 && t == dtype::f32)) {
        std::memcpy(out, w.row(r), w.row_bytes());
        return;
    }
    dequantize_row(w.type, w.row(r), tmp.data(), w.cols);
    if (t == dtype::f32) {
        std::memcpy(out, tmp.data(), w.cols * sizeof(float));
        return;
    }
    for (std::size_t i = 0; i < w.cols; ++i) {
        const std::uint16_t b = f32_to_bf16(tmp[i]);
        std::memcpy(out + 2 * i, &b, sizeof b);
    }
}

void upload_rows(const weight_matrix& w, dtype t, std::byte* dst) {
    const std::size_t row_out = w.cols * dtype_size(t);
    const std::size_t rows_per_chunk = std::max<std::size_t>(1, staging_bytes / row_out);
    std::vector<std::byte> staging(std::min(w.rows, rows_per_chunk) * row_out);
    std::vector<float> tmp(w.cols);
    for (std::size_t r0 = 0; r0 < w.rows; r0 += rows_per_chunk) {
        const std::size_t n = std::min(rows_per_chunk, w.rows - r0);
        for (std::size_t i = 0; i < n; ++i) convert_row(w, r0 + i, t, staging.data() + i * row_out, tmp);
        check(cudaMemcpy(dst + r0 * row_out, staging.data(), n * row_out, cudaMemcpyHostToDevice),
              "cudaMemcpy (weights)");
    }
}

} // namespace

device_weights::device_weights(const model& m, dtype t) : m_type(t) {
    const std::size_t total = place(m, nullptr);
    std::size_t free = 0, device_total = 0;
    check(cudaMemGetInfo(&free, &device_total), "cudaMemGetInfo");
    if (total > free) {
        throw cuda_error(fmt::format("the weights need {:.2f} GiB of device memory, {:.2f} GiB are free",
                                     static_cast<double>(total) / (1u << 30), static_cast<double>(free) / (1u << 30)),
                         static_cast<int>(cudaErrorMemoryAllocation));
    }
    m_arena = device_buffer(total, "cudaMalloc (weights)");
    place(m, m_arena.as<std::byte>());
}

std::size_t device_weights::place(const model& m, std::byte* base) {
    const model_config& c = m.config();
    const std::size_t elt = dtype_size(m_type);
    cursor cur{base};

    // Stacks matrices of equal width into one, row blocks in the order given.
    auto matrix = [&](std::initializer_list<const weight_matrix*> parts) -> const void* {
        std::size_t rows = 0;
        for (const weight_matrix* p : parts) rows += p->rows;
        const std::size_t cols = (*parts.begin())->cols;
        std::byte* dst = cur.take(rows * cols * elt);
        if (dst != nullptr) {
            std::size_t r = 0;
            for (const weight_matrix* p : parts) {
                upload_rows(*p, m_type, dst + r * cols * elt);
                r += p->rows;
            }
        }
        return dst;
    };
    auto floats = [&](std::initializer_list<const std::vector<float>*> parts) -> const float* {
        std::size_t n = 0;
        for (const std::vector<float>* p : parts) n += p->size();
        std::byte* dst = cur.take(n * sizeof(float));
        if (dst != nullptr) {
            std::size_t at = 0;
            for (const std::vector<float>* p : parts) {
                check(cudaMemcpy(dst + at * sizeof(float), p->data(), p->size() * sizeof(float),
                                 cudaMemcpyHostToDevice),
                      "cudaMemcpy (norms, biases)");
                at += p->size();
            }
        }
        return reinterpret_cast<const float*>(dst);
    };

    m_token_embd = matrix({&m.token_embd});
    m_output = m.tied_output ? m_token_embd : matrix({&m.output});
    m_output_norm = floats({&m.output_norm});
    m_step_bytes = m.output.rows * m.output.cols * elt;
    m_layers.assign(c.n_layer, device_layer{});
    for (std::size_t l = 0; l < c.n_layer; ++l) {
        const layer_weights& w = m.layers[l];
        device_layer& d = m_layers[l];
        d.wqkv = matrix({&w.wq, &w.wk, &w.wv});
        d.wo = matrix({&w.wo});
        d.w_gate_up = matrix({&w.w_gate, &w.w_up});
        d.w_down = matrix({&w.w_down});
        d.attn_norm = floats({&w.attn_norm});
        d.ffn_norm = floats({&w.ffn_norm});
        d.bias_qkv = w.bq.empty() ? nullptr : floats({&w.bq, &w.bk, &w.bv});
        for (const weight_matrix* p : {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down}) {
            m_step_bytes += p->rows * p->cols * elt;
        }
    }
    return cur.offset;
}

} // namespace weft::serve::cuda
