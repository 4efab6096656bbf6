// Internal: the CUDA forward pass. Owns the device (stream, cuBLAS handle,
// weights, KV cache, activation buffers, CUDA graphs) and turns a batch
// into work on the stream; cuda_backend adds the awaiting.
//
// enqueue() validates the batch, writes its metadata into pinned host
// memory, copies it to the device, enqueues the forward pass (eagerly, or
// by replaying the CUDA graph captured for the padded decode batch) and the
// copy of the results back into pinned host memory, and returns without
// waiting. Once the stream has passed that point, read_logits /
// read_argmax copy the results out.
//
// Buffers have capacities (tokens, logits rows, attention partitions,
// block-table entries); a batch beyond them reallocates, which drops the
// graphs (they hold the old addresses) so that they are captured again.
//
// Threading: one step at a time (enqueue, wait, read); not synchronized.
#pragma once

#include "cuda/cuda_check.hpp"
#include "cuda/device_weights.hpp"
#include "cuda/launch.hpp"

#include <weft/serve/batch.hpp>
#include <weft/serve/cuda_backend.hpp>
#include <weft/serve/model.hpp>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace weft::serve::cuda {

class cuda_forward {
public:
    cuda_forward(std::shared_ptr<const model> m, const cuda_backend_options& opts);
    ~cuda_forward();
    cuda_forward(const cuda_forward&) = delete;
    cuda_forward& operator=(const cuda_forward&) = delete;

    /// See the file comment; returns the number of logits rows. Throws
    /// std::invalid_argument for a batch that does not fit (nothing is
    /// enqueued then), cuda_error when CUDA or cuBLAS fails.
    std::size_t enqueue(const batch& b, bool argmax_only);
    void read_logits(step_output& out, std::size_t rows) const;
    void read_argmax(std::vector<token_id>& out, std::size_t rows) const;

    [[nodiscard]] cudaStream_t stream() const noexcept { return m_stream; }
    [[nodiscard]] int device() const noexcept { return m_device; }
    [[nodiscard]] const model& weights() const noexcept { return *m_model; }
    [[nodiscard]] const model_config& config() const noexcept { return m_config; }
    [[nodiscard]] std::size_t kv_blocks() const noexcept { return m_kv_blocks; }
    [[nodiscard]] std::size_t kv_block_size() const noexcept { return m_block_size; }
    [[nodiscard]] std::size_t kv_bytes() const noexcept { return m_kv.bytes(); }
    [[nodiscard]] std::size_t step_weight_bytes() const noexcept { return m_weights->step_bytes(); }
    [[nodiscard]] std::size_t graphs_captured() const noexcept { return m_graphs_captured; }
    [[nodiscard]] const std::string& device_name() const noexcept { return m_device_name; }

private:
    struct capacity {
        std::size_t tokens = 0;
        std::size_t rows = 0;
        std::size_t parts = 0;
        std::size_t tables = 0;
    };

    void validate(const batch& b) const;
    /// Waits for the stream, then destroys graphs, the cuBLAS handle and the stream.
    void release() noexcept;
    void ensure_capacity(const capacity& need);
    void allocate(const capacity& cap);
    void drop_graphs() noexcept;
    [[nodiscard]] step_meta meta() const noexcept;
    /// Enqueues the forward pass over the metadata already on the device.
    void forward(std::size_t tokens, std::size_t rows, int parts);
    void gemm(const void* w, std::size_t n, std::size_t k, const void* x, std::size_t rows, float* y, float beta);
    void* kv_layer(std::size_t layer) const noexcept;
    cudaGraphExec_t graph_for(std::size_t tokens, int parts);

    std::shared_ptr<const model> m_model;
    const model_config& m_config;
    dtype m_type;
    int m_device;
    std::string m_device_name;
    std::vector<std::size_t> m_graph_sizes; // sorted, distinct

    cudaStream_t m_stream = nullptr;
    cublasHandle_t m_cublas = nullptr;
    device_buffer m_cublas_workspace;
    std::unique_ptr<device_weights> m_weights;
    device_buffer m_inv_freq; // double [rope_dim / 2]

    std::size_t m_block_size;
    std::size_t m_kv_blocks = 0;  // usable; one more exists, for padding tokens
    std::size_t m_kv_layer_elems = 0;
    device_buffer m_kv;

    capacity m_cap;
    device_buffer m_meta;   // int: tokens, positions, table offsets, logits rows [cap.tokens each], tables
    pinned_buffer m_meta_host;
    device_buffer m_x, m_xn, m_qkv, m_att, m_gate_up, m_h, m_logits, m_argmax, m_partial;
    pinned_buffer m_logits_host, m_argmax_host;

    std::map<std::pair<std::size_t, int>, cudaGraphExec_t> m_graphs;
    std::size_t m_graphs_captured = 0;
    bool m_unfinished = false; // the last enqueue threw part-way: work may still be queued
};

} // namespace weft::serve::cuda
