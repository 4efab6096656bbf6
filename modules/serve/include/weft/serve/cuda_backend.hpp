/// \file
/// `cuda_backend`: runs a `model` on an NVIDIA GPU (CUDA), over a paged KV
/// cache in device memory. Same interface and batch semantics as
/// `cpu_backend` (see batch.hpp, model_backend.hpp).
///
/// At construction the weights are uploaded once, converted to the backend's
/// precision (BF16 by default, F32 for exactness checks) whatever their type
/// in the file (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K are dequantized on the
/// host). A step enqueues the whole forward pass on the backend's CUDA stream
/// (cuBLAS for the projections, weft's kernels for the rest; decode batches
/// replay CUDA graphs captured per padded batch size) and suspends the
/// awaiting coroutine until the stream reaches the end of the step: no thread
/// waits for the GPU. Only the logits rows asked for come back, or with
/// `step_argmax` only the greedy token of each row.
///
/// Unlike `cpu_backend`, results are not bitwise batch-invariant: cuBLAS may
/// pick a different kernel for a different number of tokens, so a sequence's
/// logits can differ in the last bits with what shares its step.
///
/// This header needs no CUDA headers. When weft is built without CUDA
/// (WEFT_ENABLE_CUDA=OFF), everything here still exists: `cuda_available()`
/// is false, `cuda_describe_devices()` says so, and constructing a
/// `cuda_backend` throws std::runtime_error("weft was built without CUDA ...").
///
/// Lifetime: keeps the model alive (the host copy is not needed after
/// construction, but `weights()` returns it); destroying the backend with a
/// step in flight is undefined. Threading: `step`/`step_argmax` from one
/// coroutine at a time (one step in flight); the awaiting coroutine resumes
/// on the backend's own thread. `step_sync` blocks the calling thread (tests,
/// benchmarks). The other members are thread-safe.
#pragma once

#include <weft/serve/model.hpp>
#include <weft/serve/model_backend.hpp>
#include <weft/serve/token.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace weft::serve {

/// What the weights, the activations fed to the matrix multiplies and the
/// KV cache are stored as on the device. Accumulation is FP32 either way.
enum class cuda_precision : unsigned char {
    bf16, ///< tensor-core GEMMs, half the bytes: the serving default
    f32,  ///< plain FP32 GEMMs (no TF32): for checks against the CPU backend
};

struct cuda_backend_options {
    /// CUDA device ordinal.
    int device = 0;
    /// KV cache blocks; 0 sizes the cache to `kv_memory_fraction` of the
    /// device memory left once the weights and buffers are allocated.
    std::size_t kv_blocks = 0;
    std::size_t kv_block_size = 16;
    double kv_memory_fraction = 0.8;
    /// Decode batch sizes to capture CUDA graphs for (lazily, on first use);
    /// a decode batch is padded to the next one. Empty: never use graphs.
    std::vector<std::size_t> graph_batch_sizes{1, 2, 4, 8, 16, 32, 64, 128, 256};
    cuda_precision precision = cuda_precision::bf16;
};

class cuda_backend final : public model_backend {
public:
    /// Uploads the weights and allocates the cache on `opts.device`. Throws
    /// cuda_error (weft/serve/cuda/cuda_error.hpp, a std::runtime_error) when
    /// there is no usable device or not enough memory, std::invalid_argument
    /// for a model the kernels cannot run (head_dim over 256 or odd).
    cuda_backend(std::shared_ptr<const model> m, cuda_backend_options opts = {});
    ~cuda_backend() override;
    cuda_backend(const cuda_backend&) = delete;
    cuda_backend& operator=(const cuda_backend&) = delete;

    const model_config& config() const noexcept override;
    std::size_t num_kv_blocks() const noexcept override;
    std::size_t kv_block_size() const noexcept override;
    std::string describe() const override;

    /// Runs the step on the GPU; the awaiter resumes on the backend's thread
    /// once the logits are on the host. A batch that does not fit the model
    /// or the cache is std::invalid_argument before anything is enqueued; a
    /// CUDA or cuBLAS failure is a cuda_error.
    task<void> step(const batch& b, step_output& out) override;

    /// As `step`, but only the greedy choice of each logits row comes back
    /// (argmax, ties to the lowest id, as `sampler` with temperature 0):
    /// `tokens` gets one entry per chunk that asked for logits, in order.
    task<void> step_argmax(const batch& b, std::vector<token_id>& tokens);

    /// `step` from a thread that may block (tests, benchmarks).
    void step_sync(const batch& b, step_output& out);
    void step_argmax_sync(const batch& b, std::vector<token_id>& tokens);

    [[nodiscard]] const model& weights() const noexcept;
    [[nodiscard]] const cuda_backend_options& options() const noexcept;
    /// Device bytes of every matrix a decode step reads (as
    /// model::step_weight_bytes, at the device precision): the bandwidth
    /// floor of a step is this divided by the device's memory bandwidth.
    [[nodiscard]] std::size_t step_weight_bytes() const noexcept;
    /// CUDA graphs captured so far (one per padded batch size and context
    /// bucket used).
    [[nodiscard]] std::size_t graphs_captured() const noexcept;

    /// Device bytes of one KV cache block (all layers, keys and values).
    static std::size_t kv_bytes_per_block(const model_config& c, std::size_t block_size, cuda_precision p) noexcept;

private:
    struct impl;
    std::unique_ptr<impl> m_impl;
};

/// True when weft was built with CUDA and at least one device is usable
/// (driver present, device visible). Never throws.
bool cuda_available() noexcept;

/// One line per device ("0: NVIDIA H200, 139.8 GiB, sm_90"), or why there is
/// none ("no CUDA device: ...", "weft was built without CUDA").
std::string cuda_describe_devices();

} // namespace weft::serve
