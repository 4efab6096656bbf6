/// \file
/// `cpu_backend`: runs a `model` on the CPU, over a paged `kv_cache`.
///
/// A step is the whole forward pass of a ragged batch (see batch.hpp): every
/// projection is one matrix multiply over the batch's tokens, with SIMD
/// kernels chosen at run time (AVX2 or AVX-512 where the CPU has them).
/// Attention reads each sequence's keys and values through its block table.
/// The backend's threads (weft's `thread_pool` plus the backend's own step
/// thread) split a step one of two ways: each product by output rows, or,
/// in a step of many sequences bound by arithmetic, the sequences, each
/// thread running the whole layer stack over its own (`sequence_lanes`).
///
/// Batch invariance: a sequence's logits are bitwise identical whichever
/// other sequences share its step and however its prompt was chunked, for a
/// given thread count or not (every output element is computed by one thread
/// in a fixed order; the split only decides which thread).
///
/// Lifetime: keeps the model alive; destroying the backend with a step in
/// flight is undefined. Threading: `step` from one coroutine at a time;
/// `step_sync` likewise, and never concurrently with `step`.
#pragma once

#include <weft/serve/ggml_type.hpp>
#include <weft/serve/model.hpp>
#include <weft/serve/model_backend.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>

namespace weft::serve {

struct cpu_backend_options {
    /// Compute threads, the step thread included (at least 1).
    std::size_t threads = std::thread::hardware_concurrency();
    std::size_t kv_blocks = 256;
    std::size_t kv_block_size = 16;
    /// Element type of the KV cache: f16 (half the memory and bandwidth) or
    /// f32 (exact keys and values).
    ggml_type kv_type = ggml_type::f16;
    /// A step whose products and attention would take less than this on
    /// one thread runs on the step thread alone. In a longer step, each job
    /// (a product, the attention, a per-token kernel) worth a fork-join is
    /// split across the team. A helper that takes a part spins for the
    /// next one, on a core that other threads (the server's HTTP loop,
    /// clients) may need; a short step's jobs gain less than that costs
    /// (docs/pitfalls.md §22). 0 splits every job of every step, however
    /// small: for tests of the split paths.
    double split_step_us = 500;
    /// A step worth splitting with several sequences, tokens enough that
    /// its products are bound by arithmetic rather than by streaming the
    /// weights, and sequences that divide into runs of about equal cost:
    /// each thread runs all the layers over one run (one fork-join a step
    /// instead of several a layer; 10-20% faster at 16 to 32 sequences on
    /// two cores). false splits every product by rows, as smaller steps are.
    bool sequence_lanes = true;
};

class cpu_backend final : public model_backend {
public:
    cpu_backend(std::shared_ptr<const model> m, cpu_backend_options opts = {});
    ~cpu_backend() override;
    cpu_backend(const cpu_backend&) = delete;
    cpu_backend& operator=(const cpu_backend&) = delete;

    const model_config& config() const noexcept override;
    std::size_t num_kv_blocks() const noexcept override;
    std::size_t kv_block_size() const noexcept override;
    std::string describe() const override;

    /// Runs the step on the backend's step thread; resumes the awaiter there.
    task<void> step(const batch& b, step_output& out) override;
    /// True: the step thread runs the next step as soon as the coroutine it
    /// resumed awaits it, without a hand-off.
    bool continues_on_step_thread() const noexcept override { return true; }
    /// Runs the step on the calling thread (with the pool's help), for tests
    /// and benchmarks.
    void step_sync(const batch& b, step_output& out);

    [[nodiscard]] const model& weights() const noexcept;
    [[nodiscard]] std::size_t threads() const noexcept;
    /// Jobs the compute team has split across its threads so far (the
    /// rest ran on the step thread alone; see split_step_us). For tests
    /// and benchmarks; read it between steps.
    [[nodiscard]] std::uint64_t split_jobs() const noexcept;
    /// Steps run one lane per thread, each over its own sequences (see
    /// cpu_backend_options::sequence_lanes); read it between steps.
    [[nodiscard]] std::uint64_t lane_steps() const noexcept;

private:
    struct impl;
    std::unique_ptr<impl> m_impl;
};

} // namespace weft::serve
