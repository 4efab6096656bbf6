// Internal: the CPU forward pass. One `cpu_forward` per backend holds the
// scratch buffers (grown to the largest batch seen) and the RoPE table; its
// `run` reads top to bottom as the transformer does.
#pragma once

#include "kernels/huge_buffer.hpp"
#include "kernels/kernels.hpp"
#include "kernels/matmul.hpp"
#include "kernels/packed_f32.hpp"
#include "kernels/parallel.hpp"

#include <weft/serve/batch.hpp>
#include <weft/serve/kv_cache.hpp>
#include <weft/serve/model.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

namespace weft::serve {

class cpu_forward {
public:
    /// Steps estimated below `split_step_ns` on one thread run on the
    /// calling thread alone (cpu_backend_options::split_step_us); with
    /// `sequence_lanes`, some steps run one lane per thread (plan_lanes).
    cpu_forward(std::shared_ptr<const model> m, kernels::compute_team& team, kv_cache& cache, double split_step_ns,
                bool sequence_lanes);

    /// Runs one step (see batch.hpp); throws std::invalid_argument for a
    /// batch that does not fit the model or the cache, before touching it.
    void run(const batch& b, step_output& out);

    [[nodiscard]] const model& weights() const noexcept { return *m_model; }
    /// Steps run one lane per thread so far.
    [[nodiscard]] std::uint64_t lane_steps() const noexcept { return m_lane_steps.load(std::memory_order_relaxed); }

private:
    /// Per token of the batch: where it sits.
    struct token_slot {
        std::size_t chunk;
        std::size_t pos;
    };

    /// A run of whole chunks of the batch: chunks [chunk_begin, chunk_end),
    /// their tokens [t_begin, t_end) and their logits rows [s_begin, s_end).
    struct batch_span {
        std::size_t chunk_begin = 0, chunk_end = 0;
        std::size_t t_begin = 0, t_end = 0;
        std::size_t s_begin = 0, s_end = 0;
        [[nodiscard]] std::size_t tokens() const noexcept { return t_end - t_begin; }
    };

    /// One of attention's work items: KV heads [head_begin, head_end) of a
    /// run of consecutive positions (see attention_over).
    struct attention_item {
        std::size_t run, head_begin, head_end;
    };

    /// What one lane writes while it runs a span: a step runs one lane over
    /// the whole batch (its jobs split across the team), or one lane per
    /// thread, each over its own sequences (see plan_lanes).
    struct lane {
        std::vector<std::byte> act; // activations converted for the matmul kernels
        // Per chunk block pointers, concatenated; the pair matching the cache's type is used.
        std::vector<const float*> key_blocks, value_blocks;
        std::vector<const std::uint16_t*> key_blocks_f16, value_blocks_f16;
        std::vector<std::size_t> chunk_block_offset;
        /// Attention's runs of consecutive positions of one chunk: first
        /// token (index into the step's slots) and count.
        std::vector<std::pair<std::size_t, std::size_t>> runs;
        /// Attention's work items: a run and a range of its KV heads.
        std::vector<attention_item> items;
    };

    void validate(const batch& b) const;
    /// The layers and the logits of the span's tokens, by lane `ln`.
    void run_span(const batch& b, const batch_span& sp, std::size_t ln, step_output& out);
    /// One of a layer's input products: out[T][w->rows] = xn . w^T (+ bias
    /// when not empty).
    struct projection {
        const weight_matrix* w;
        float* out;
        const std::vector<float>* bias;
    };
    /// The products `ps` of T rows of xn, with one fork-join when their
    /// weights are of one type.
    void project(std::span<const projection> ps, const float* xn, std::size_t T, std::vector<std::byte>& act);
    /// Moves the rows of x[t][E] and xn[t][E] (t from the span's first
    /// token) and the slots of the tokens whose logits are asked for to the
    /// span's first rows, in order.
    void keep_logits_rows(const batch& b, const batch_span& sp, float* x, float* xn);
    /// Attention takes up to this many consecutive positions of a prompt
    /// chunk in one call (kernels::attend_rows), which reads the cache once
    /// for them: their score rows (this many times the group's heads times
    /// the context) stay in L2.
    static constexpr std::size_t attention_run = 16;
    /// Layer `layer`'s attention for the span's tokens (forward_attention.cpp):
    /// m_att from m_q and the cache, which holds the span's K and V already.
    void attention(const batch& b, std::size_t layer, const batch_span& sp, std::size_t ln);
    /// attention() over a cache of element type E, gathering the block
    /// pointers into `keys` and `values`.
    template <class E>
    void attention_over(const batch& b, std::size_t layer, const batch_span& sp, std::size_t ln,
                        std::vector<const E*>& keys, std::vector<const E*>& values);
    /// y[T][w.rows] = x[T][w.cols] . w^T, rows split across the team.
    void matmul(const weight_matrix& w, const kernels::activations& x, float* y);
    /// Rows [begin, end) of chunk `part` of `parts` of that product; returns
    /// [begin, end), so a fused job can finish exactly those rows.
    std::pair<std::size_t, std::size_t> matmul_part(const weight_matrix& w, const kernels::activations& x, float* y,
                                                    std::size_t part, std::size_t parts);
    /// Row granularity of a product's chunks.
    static constexpr std::size_t matmul_grain = 48;
    /// How many chunks the team takes a product of `rows` rows in (for a
    /// fused job: its smallest matrix's rows) that takes about `ns` on one
    /// thread: 1, run by the calling thread alone, when that is too little
    /// to split.
    [[nodiscard]] std::size_t matmul_chunks(std::size_t rows, double ns) const noexcept;
    kernels::activations prepare(ggml_type wt, const float* x, std::size_t tokens, std::size_t k,
                                 std::vector<std::byte>& buffer);
    /// fn(t) for every token, split across the team when the work, about
    /// `ns_per_token` nanoseconds a token, outweighs a fork-join.
    template <class F>
    void per_token(std::size_t tokens, double ns_per_token, F&& fn);
    /// fn(begin, end) over runs of tokens covering [0, tokens), split as
    /// per_token splits them: for kernels that take several rows at once.
    template <class F>
    void per_token_run(std::size_t tokens, double ns_per_token, F&& fn);
    /// Whether a job of about `ns` on one thread is worth a fork-join
    /// across the team in this step.
    [[nodiscard]] bool worth_forking(double ns) const noexcept;
    /// Sets this step's m_attention_ns and m_job_split_ns from its size
    /// (m_slots filled).
    void plan_split(const batch& b);
    /// Whether this step runs one lane per thread, each over a run of whole
    /// sequences (filling m_spans), rather than one lane whose jobs the
    /// team splits: see the definition.
    bool plan_lanes(const batch& b);
    /// About how long token slot `s`'s attention takes in one layer, on one thread.
    [[nodiscard]] double attention_ns(const token_slot& s) const noexcept;

    std::shared_ptr<const model> m_model;
    const model_config& m_config;
    kernels::compute_team& m_team;
    kv_cache& m_cache;
    double m_split_step_ns;
    bool m_sequence_lanes;
    // Written by the step's thread only; atomic so that a test may read it
    // from another thread (relaxed: a count, ordered by the step's hand-off).
    std::atomic<std::uint64_t> m_lane_steps{0};
    double m_job_split_ns = 0;   ///< this step: jobs below this run unsplit (infinity: the whole step)
    double m_attention_ns = 0;   ///< this step: one layer's attention on one thread, estimated
    kernels::rope_table m_rope;

    std::vector<token_slot> m_slots;
    std::vector<float> m_x, m_xn, m_q, m_k, m_v, m_att, m_gate, m_up, m_out_x;
    std::vector<std::vector<float>> m_scratch; // per team part (and lane): attention scores
    std::vector<lane> m_lanes;                 // one per team part
    std::vector<batch_span> m_spans;           // this step's lanes' spans (plan_lanes)
    std::vector<double> m_chunk_cost;          // plan_lanes: each chunk's estimated time
    double m_matmul_token_ns = 0;              // one token's multiply-adds in every layer's products, one thread
    double m_weights_ns = 0;                   // streaming every layer's weights from memory, one thread
    double m_logits_token_ns = 0;              // one token's multiply-adds in the output product, one thread
    /// F32 matrices repacked into row panels, by their data in the file.
    std::unordered_map<const std::byte*, kernels::packed_f32> m_packed;
    /// Q8_0 matrices prepacked in 16-row panels for the AVX-512 kernels, by their data in the file.
    std::unordered_map<const std::byte*, kernels::huge_buffer> m_prepacked;
};

} // namespace weft::serve
