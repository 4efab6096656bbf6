// cuda_backend: the model_backend over cuda_forward, awaiting the GPU with
// cuda::stream_ready, plus the device queries.
#include "cuda/cuda_forward.hpp"

#include <chrono>
#include <weft/serve/cuda/stream_ready.hpp>
#include <weft/serve/cuda_backend.hpp>
#include <weft/sync_wait.hpp>
#include <weft/thread_pool.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <utility>

namespace weft::serve {

struct cuda_backend::impl {
    impl(std::shared_ptr<const model> m, cuda_backend_options o)
        : options(std::move(o)), forward(std::move(m), options) {}

    cuda_backend_options options;
    /// The backend's own thread: where a step's awaiter resumes once the
    /// stream callback has posted it. Declared before `forward`, so that it
    /// outlives the stream whose callbacks post to it.
    thread_pool resume_pool{1};
    cuda::cuda_forward forward;
};

cuda_backend::cuda_backend(std::shared_ptr<const model> m, cuda_backend_options opts)
    : m_impl(std::make_unique<impl>(std::move(m), std::move(opts))) {}

cuda_backend::~cuda_backend() = default;

const model_config& cuda_backend::config() const noexcept { return m_impl->forward.config(); }
std::size_t cuda_backend::num_kv_blocks() const noexcept { return m_impl->forward.kv_blocks(); }
std::size_t cuda_backend::kv_block_size() const noexcept { return m_impl->forward.kv_block_size(); }
const model& cuda_backend::weights() const noexcept { return m_impl->forward.weights(); }
const cuda_backend_options& cuda_backend::options() const noexcept { return m_impl->options; }
std::size_t cuda_backend::step_weight_bytes() const noexcept { return m_impl->forward.step_weight_bytes(); }
std::size_t cuda_backend::graphs_captured() const noexcept { return m_impl->forward.graphs_captured(); }

std::string cuda_backend::describe() const {
    const cuda::cuda_forward& f = m_impl->forward;
    const auto& sizes = m_impl->options.graph_batch_sizes;
    std::string graphs = "no graphs";
    if (!sizes.empty()) {
        graphs = fmt::format("graphs for decode batches up to {}", *std::max_element(sizes.begin(), sizes.end()));
    }
    return fmt::format("cuda (device {}: {}, {}, kv cache {} blocks of {} tokens, {:.1f} MiB, {})", f.device(),
                       f.device_name(), m_impl->options.precision == cuda_precision::bf16 ? "bf16" : "f32",
                       f.kv_blocks(), f.kv_block_size(), static_cast<double>(f.kv_bytes()) / (1 << 20), graphs);
}

task<void> cuda_backend::step(const batch& b, step_output& out) {
    impl& s = *m_impl;
    const auto start = std::chrono::steady_clock::now();
    const std::size_t rows = s.forward.enqueue(b, b.argmax_only);
    co_await cuda::stream_ready(s.forward.stream(), s.resume_pool);
    out.compute_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (b.argmax_only) {
        out.vocab = config().n_vocab;
        out.logits.clear();
        s.forward.read_argmax(out.argmax, rows);
    } else {
        out.argmax.clear();
        s.forward.read_logits(out, rows);
    }
}

task<void> cuda_backend::step_argmax(const batch& b, std::vector<token_id>& tokens) {
    impl& s = *m_impl;
    const std::size_t rows = s.forward.enqueue(b, true);
    co_await cuda::stream_ready(s.forward.stream(), s.resume_pool);
    s.forward.read_argmax(tokens, rows);
}

void cuda_backend::step_sync(const batch& b, step_output& out) { sync_wait(step(b, out)); }

void cuda_backend::step_argmax_sync(const batch& b, std::vector<token_id>& tokens) {
    sync_wait(step_argmax(b, tokens));
}

bool cuda_available() noexcept {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        cudaGetLastError(); // not sticky: leave no error behind
        return false;
    }
    return count > 0;
}

std::string cuda_describe_devices() {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return fmt::format("no CUDA device: {}: {}", cudaGetErrorName(e), cudaGetErrorString(e));
    }
    if (count == 0) return "no CUDA device";
    std::string out;
    for (int d = 0; d < count; ++d) {
        cudaDeviceProp p{};
        if (cudaGetDeviceProperties(&p, d) != cudaSuccess) {
            cudaGetLastError();
            out += fmt::format("{}{}: (properties unavailable)", d == 0 ? "" : "\n", d);
            continue;
        }
        out += fmt::format("{}{}: {}, {:.1f} GiB, sm_{}{}, {} SMs", d == 0 ? "" : "\n", d, p.name,
                           static_cast<double>(p.totalGlobalMem) / (1u << 30), p.major, p.minor,
                           p.multiProcessorCount);
    }
    return out;
}

} // namespace weft::serve
