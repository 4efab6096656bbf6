// Internal: a model's weights in device memory, converted once at load to
// the backend's precision (bf16 or f32) whatever their type in the file, in
// one allocation. Q, K and V of a layer are stacked into one
// [q_dim + 2 kv_dim][n_embd] matrix, gate and up into one [2 n_ff][n_embd],
// so each takes one GEMM; their biases (Qwen2) likewise into one vector.
// Norm weights and biases stay f32. A tied output projection shares the
// token embedding's memory.
//
// Construct with the target device current. Lifetime: owns the memory;
// immutable afterwards. Threading: read-only after construction.
#pragma once

#include "cuda/cuda_check.hpp"
#include "cuda/launch.hpp"

#include <weft/serve/model.hpp>

#include <cstddef>
#include <vector>

namespace weft::serve::cuda {

struct device_layer {
    const void* wqkv = nullptr;      ///< [q_dim + 2 kv_dim][n_embd]
    const void* wo = nullptr;        ///< [n_embd][q_dim]
    const void* w_gate_up = nullptr; ///< [2 n_ff][n_embd]: gate rows, then up rows
    const void* w_down = nullptr;    ///< [n_embd][n_ff]
    const float* attn_norm = nullptr;
    const float* ffn_norm = nullptr;
    const float* bias_qkv = nullptr; ///< [q_dim + 2 kv_dim], or null
};

class device_weights {
public:
    device_weights(const model& m, dtype t);

    [[nodiscard]] dtype type() const noexcept { return m_type; }
    [[nodiscard]] const void* token_embd() const noexcept { return m_token_embd; }
    [[nodiscard]] const void* output() const noexcept { return m_output; }
    [[nodiscard]] const float* output_norm() const noexcept { return m_output_norm; }
    [[nodiscard]] const device_layer& layer(std::size_t l) const noexcept { return m_layers[l]; }
    /// Device bytes of everything uploaded.
    [[nodiscard]] std::size_t bytes() const noexcept { return m_arena.bytes(); }
    /// Device bytes of the matrices one decode step reads.
    [[nodiscard]] std::size_t step_bytes() const noexcept { return m_step_bytes; }

private:
    /// Lays out (dry run, base null) or uploads everything; returns the bytes used.
    std::size_t place(const model& m, std::byte* base);

    dtype m_type;
    device_buffer m_arena;
    const void* m_token_embd = nullptr;
    const void* m_output = nullptr;
    const float* m_output_norm = nullptr;
    std::vector<device_layer> m_layers;
    std::size_t m_step_bytes = 0;
};

} // namespace weft::serve::cuda
