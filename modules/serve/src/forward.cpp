#include "forward.hpp"

#include <weft/serve/quant.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <stdexcept>

namespace weft::serve {

namespace {

/// In a step worth splitting (cpu_backend_options::split_step_us), a job
/// below this runs on the calling thread alone: handing parts to the team
/// and joining them costs about 10 us (docs/pitfalls.md §18).
constexpr double fork_join_ns = 20'000;

/// Rough costs per element of the per-token kernels, in nanoseconds, for
/// the decisions to split (results never depend on them).
constexpr double norm_ns = 0.15;     // rmsnorm: one pass to sum, one to scale
constexpr double quantize_ns = 1.5;  // Q8_0 activations: block maxima, rounding, packing
constexpr double rotate_ns = 1.0;    // RoPE, and storing K/V into the cache
constexpr double gate_ns = 0.5;      // swiglu: an exponential and a division

/// The same for products and attention: one thread's multiply-add rate, and
/// its rate of streaming weights from memory (a decode step of few tokens
/// is bound by that).
constexpr double float_mac_ns = 0.02;    // F32 / F16 / BF16 weights: ~50 G/s on one AVX-512 core
constexpr double integer_mac_ns = 0.01;  // quantized weights: integer dot products
constexpr double weight_byte_ns = 0.06;  // ~16 GB/s
constexpr double attend_call_ns = 150;   // one token's query heads of one KV head, before the positions
constexpr double attend_mac_ns = 0.06;   // per multiply-add of the scores and of the weighted sum

/// About how long `tokens` rows times `w` take on one thread.
double matmul_ns(const weight_matrix& w, std::size_t tokens) noexcept {
    const bool float_weights = w.type == ggml_type::f32 || w.type == ggml_type::f16 || w.type == ggml_type::bf16;
    const double macs = static_cast<double>(tokens) * static_cast<double>(w.rows) * static_cast<double>(w.cols);
    const double bytes = static_cast<double>(w.bytes());
    return std::max(macs * (float_weights ? float_mac_ns : integer_mac_ns), bytes * weight_byte_ns);
}

} // namespace

cpu_forward::cpu_forward(std::shared_ptr<const model> m, kernels::compute_team& team, kv_cache& cache,
                         double split_step_ns)
    : m_model(std::move(m)), m_config(m_model->config()), m_team(team), m_cache(cache), m_split_step_ns(split_step_ns),
      m_rope(m_config.rope_dim, m_config.rope_freq_base, m_config.rope),
      m_scratch(team.size()) {
    // F32 weights go to the panel kernel, which batches far better than
    // dot products over plain rows (see packed_f32.hpp); the copy costs the
    // F32 matrices' size once more in memory.
    auto pack = [&](const weight_matrix& w) {
        if (w.type == ggml_type::f32 && !m_packed.contains(w.data)) {
            m_packed.emplace(w.data, kernels::packed_f32(reinterpret_cast<const float*>(w.data), w.rows, w.cols, w.cols));
        }
    };
    // Q8_0 rows go once into the 16-row panels the AVX-512 kernel reads
    // (bitwise the same products as the tiles over plain rows, without
    // their horizontal sums); the plain rows stay in the file's mapping,
    // unread.
    auto prepack = [&](const weight_matrix& w) {
        if (w.type == ggml_type::q8_0 && kernels::q8_0_prepack_supported() && !m_prepacked.contains(w.data)) {
            kernels::huge_buffer buf = kernels::allocate_huge(kernels::q8_0_prepacked_bytes(w.rows, w.cols));
            kernels::prepack_q8_0(w.data, w.rows, w.cols, buf.get());
            m_prepacked.emplace(w.data, std::move(buf));
        }
    };
    for (const layer_weights& l : m_model->layers) {
        for (const weight_matrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
            pack(*w);
            prepack(*w);
        }
    }
    pack(m_model->output);
    prepack(m_model->output);
}

void cpu_forward::validate(const batch& b) const {
    const std::size_t bs = m_cache.block_size();
    for (const batch_chunk& c : b.chunks) {
        if (c.tokens.empty()) {
            throw std::invalid_argument(fmt::format("sequence {}: empty chunk", c.id));
        }
        const std::size_t end = c.start + c.tokens.size();
        if (c.blocks.size() * bs < end) {
            throw std::invalid_argument(fmt::format("sequence {}: {} blocks cannot hold {} positions", c.id,
                                                    c.blocks.size(), end));
        }
        for (std::size_t i = 0; i < (end + bs - 1) / bs; ++i) {
            if (c.blocks[i] >= m_cache.num_blocks()) {
                throw std::invalid_argument(fmt::format("sequence {}: block {} out of range", c.id, c.blocks[i]));
            }
        }
        for (token_id t : c.tokens) {
            if (t < 0 || static_cast<std::size_t>(t) >= m_config.n_vocab) {
                throw std::invalid_argument(fmt::format("sequence {}: token {} outside the vocabulary", c.id, t));
            }
        }
    }
}

kernels::activations cpu_forward::prepare(ggml_type wt, const float* x, std::size_t tokens, std::size_t k) {
    const double ns_per_token = quantize_ns * static_cast<double>(k);
    if (vec_dot_type(wt) == ggml_type::f32 || !worth_forking(static_cast<double>(tokens) * ns_per_token)) {
        return kernels::prepare_activations(wt, x, k, tokens, k, m_act);
    }
    // Quantizing a big batch's rows is worth sharing between the threads.
    const kernels::activations a = kernels::layout_activations(wt, tokens, k, m_act);
    per_token(tokens, ns_per_token, [&](std::size_t t) { kernels::fill_activations(a, x, k, t, t + 1); });
    return a;
}

std::pair<std::size_t, std::size_t> cpu_forward::matmul_part(const weight_matrix& w, const kernels::activations& x,
                                                             float* y, std::size_t part, std::size_t parts) {
    // Rows in multiples of 32, so each chunk keeps whole kernel tiles and
    // whole pairs of F32 panels (the batched tile's 32 rows).
    static_assert(kernels::packed_f32::panel_rows * 2 == matmul_grain);
    const auto [begin, end] = kernels::compute_team::split(w.rows, part, parts, matmul_grain);
    if (begin >= end) return {begin, end};
    if (auto it = m_packed.find(w.data); it != m_packed.end()) {
        // F32 activations are the caller's rows as they are.
        const auto* xf = reinterpret_cast<const float*>(x.data);
        it->second.multiply(xf, x.row_bytes / sizeof(float), x.rows, begin, end, y, w.rows);
    } else if (auto pre = m_prepacked.find(w.data); pre != m_prepacked.end() && x.packed != nullptr) {
        kernels::matmul_prepacked_q8_0(pre->second.get(), w.cols, begin, end, x, y, w.rows);
    } else {
        kernels::matmul(w.type, w.data, begin, end, x, y, w.rows);
    }
    return {begin, end};
}

std::size_t cpu_forward::matmul_chunks(std::size_t rows, double ns) const noexcept {
    if (!worth_forking(ns)) return 1;
    // A few chunks per thread: a thread descheduled mid-product delays one
    // chunk while the other threads take the rest, yet each chunk stays
    // long enough (tens of rows at least) to stream its weights. Results do
    // not depend on the split: every output element is computed alone.
    const std::size_t units = (rows + matmul_grain - 1) / matmul_grain;
    return std::max<std::size_t>(1, std::min(units, m_team.size() * 4));
}

void cpu_forward::matmul(const weight_matrix& w, const kernels::activations& x, float* y) {
    m_team.run_chunks(matmul_chunks(w.rows, matmul_ns(w, x.rows)),
                      [&](std::size_t part, std::size_t parts) { matmul_part(w, x, y, part, parts); });
}

bool cpu_forward::worth_forking(double ns) const noexcept {
    return m_team.size() > 1 && ns >= m_job_split_ns;
}

void cpu_forward::plan_split(const batch& b) {
    const model_config& c = m_config;
    const std::size_t T = m_slots.size();
    // One layer's attention: a call per (token, KV head), then its positions.
    const double macs_per_position = 2.0 * static_cast<double>(c.n_head / c.n_head_kv * c.head_dim);
    m_attention_ns = 0;
    for (const token_slot& s : m_slots) {
        m_attention_ns += static_cast<double>(c.n_head_kv) *
                          (attend_call_ns + attend_mac_ns * macs_per_position * static_cast<double>(s.pos + 1));
    }
    if (m_split_step_ns <= 0) {
        m_job_split_ns = 0; // every job, however small
        return;
    }
    double step = m_attention_ns * static_cast<double>(c.n_layer) + matmul_ns(m_model->output, b.num_logits());
    for (const layer_weights& w : m_model->layers) {
        for (const weight_matrix* x : {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down}) {
            step += matmul_ns(*x, T);
        }
    }
    m_job_split_ns = step < m_split_step_ns ? std::numeric_limits<double>::infinity() : fork_join_ns;
}

template <class F>
void cpu_forward::per_token(std::size_t tokens, double ns_per_token, F&& fn) {
    if (!worth_forking(static_cast<double>(tokens) * ns_per_token)) {
        for (std::size_t t = 0; t < tokens; ++t) fn(t);
        return;
    }
    m_team.run([&](std::size_t part, std::size_t parts) {
        const auto [begin, end] = kernels::compute_team::split(tokens, part, parts);
        for (std::size_t t = begin; t < end; ++t) fn(t);
    });
}

void cpu_forward::run(const batch& b, step_output& out) {
    validate(b);
    const model& m = *m_model;
    const model_config& c = m_config;
    const std::size_t E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff;

    // Where each token of the batch sits: chunk and position.
    m_slots.clear();
    std::size_t max_pos = 0;
    for (std::size_t ci = 0; ci < b.chunks.size(); ++ci) {
        const batch_chunk& ch = b.chunks[ci];
        for (std::size_t i = 0; i < ch.tokens.size(); ++i) m_slots.push_back({ci, ch.start + i});
        max_pos = std::max(max_pos, ch.start + ch.tokens.size());
    }
    const std::size_t T = m_slots.size();
    plan_split(b);
    m_rope.reserve(max_pos);
    for (auto& s : m_scratch) s.resize(c.n_head / c.n_head_kv * max_pos);
    m_x.resize(T * E); m_xn.resize(T * E);
    m_q.resize(T * Q); m_k.resize(T * KV); m_v.resize(T * KV); m_att.resize(T * Q);
    m_gate.resize(T * F); m_up.resize(T * F);

    // x[T][E] = token embeddings.
    {
        std::size_t t = 0;
        for (const batch_chunk& ch : b.chunks) {
            for (token_id tok : ch.tokens) {
                dequantize_row(m.token_embd.type, m.token_embd.row(static_cast<std::size_t>(tok)), &m_x[t * E], E);
                ++t;
            }
        }
    }

    for (std::size_t l = 0; l < c.n_layer; ++l) {
        const layer_weights& w = m.layers[l];

        // xn[T][E] = rmsnorm(x) * attn_norm
        per_token(T, norm_ns * static_cast<double>(E),
                  [&](std::size_t t) { kernels::rmsnorm(&m_x[t * E], w.attn_norm.data(), &m_xn[t * E], E, c.rms_eps); });

        // q[T][Q], k[T][KV], v[T][KV] = xn . W^T (+ bias)
        kernels::activations xa = prepare(w.wq.type, m_xn.data(), T, E);
        if (w.wk.type == w.wq.type && w.wv.type == w.wq.type) {
            // One fork-join for the three products (they share the activations).
            const std::size_t chunks = matmul_chunks(std::min({w.wq.rows, w.wk.rows, w.wv.rows}),
                                                     matmul_ns(w.wq, T) + matmul_ns(w.wk, T) + matmul_ns(w.wv, T));
            m_team.run_chunks(chunks, [&](std::size_t part, std::size_t parts) {
                matmul_part(w.wq, xa, m_q.data(), part, parts);
                matmul_part(w.wk, xa, m_k.data(), part, parts);
                matmul_part(w.wv, xa, m_v.data(), part, parts);
            });
        } else {
            matmul(w.wq, xa, m_q.data());
            xa = prepare(w.wk.type, m_xn.data(), T, E);
            matmul(w.wk, xa, m_k.data());
            xa = prepare(w.wv.type, m_xn.data(), T, E);
            matmul(w.wv, xa, m_v.data());
        }
        if (!w.bq.empty()) {
            for (std::size_t t = 0; t < T; ++t) {
                kernels::add_inplace(&m_q[t * Q], w.bq.data(), Q);
                kernels::add_inplace(&m_k[t * KV], w.bk.data(), KV);
                kernels::add_inplace(&m_v[t * KV], w.bv.data(), KV);
            }
        }

        // RoPE on q and k at each token's position; k and v into the cache.
        // (The table covers every position already: apply only reads it.)
        per_token(T, rotate_ns * static_cast<double>(Q + 3 * KV), [&](std::size_t t) {
            const token_slot& s = m_slots[t];
            m_rope.apply(&m_q[t * Q], c.n_head, c.head_dim, s.pos);
            m_rope.apply(&m_k[t * KV], c.n_head_kv, c.head_dim, s.pos);
            const batch_chunk& ch = b.chunks[s.chunk];
            const block_id blk = ch.blocks[s.pos / m_cache.block_size()];
            const std::size_t slot = s.pos % m_cache.block_size();
            m_cache.store(l, blk, slot, &m_k[t * KV], &m_v[t * KV]);
        });

        // att[T][Q] = softmax(q k^T / sqrt(d)) v, causal, per sequence
        attention(b, l);

        // x += att . Wo^T
        xa = prepare(w.wo.type, m_att.data(), T, Q);
        matmul(w.wo, xa, m_xn.data());
        // xn = rmsnorm(x) * ffn_norm; x += (silu(xn . Wgate^T) * (xn . Wup^T)) . Wdown^T
        per_token(T, 2 * norm_ns * static_cast<double>(E), [&](std::size_t t) {
            kernels::add_inplace(&m_x[t * E], &m_xn[t * E], E);
            kernels::rmsnorm(&m_x[t * E], w.ffn_norm.data(), &m_xn[t * E], E, c.rms_eps);
        });
        xa = prepare(w.w_gate.type, m_xn.data(), T, E);
        if (w.w_up.type == w.w_gate.type) {
            // One fork-join: each part multiplies its rows of gate and up
            // (the same split: both have F rows), then gates exactly those
            // rows (nothing crosses parts). The row splits are multiples of
            // 32, so every element takes the same SIMD or scalar path as in a
            // whole-row swiglu.
            const double ns = matmul_ns(w.w_gate, T) + matmul_ns(w.w_up, T) + gate_ns * static_cast<double>(T * F);
            m_team.run_chunks(matmul_chunks(F, ns), [&](std::size_t part, std::size_t parts) {
                matmul_part(w.w_gate, xa, m_gate.data(), part, parts);
                const auto [begin, end] = matmul_part(w.w_up, xa, m_up.data(), part, parts);
                for (std::size_t t = 0; begin < end && t < T; ++t) {
                    kernels::swiglu(&m_gate[t * F + begin], &m_up[t * F + begin], &m_gate[t * F + begin], end - begin);
                }
            });
        } else {
            matmul(w.w_gate, xa, m_gate.data());
            xa = prepare(w.w_up.type, m_xn.data(), T, E);
            matmul(w.w_up, xa, m_up.data());
            per_token(T, gate_ns * static_cast<double>(F),
                      [&](std::size_t t) { kernels::swiglu(&m_gate[t * F], &m_up[t * F], &m_gate[t * F], F); });
        }
        xa = prepare(w.w_down.type, m_gate.data(), T, F);
        // The residual add joins the product: each part adds the rows it
        // computed, one fork-join for both.
        m_team.run_chunks(matmul_chunks(E, matmul_ns(w.w_down, T)), [&](std::size_t part, std::size_t parts) {
            const auto [begin, end] = matmul_part(w.w_down, xa, m_xn.data(), part, parts);
            for (std::size_t t = 0; begin < end && t < T; ++t) {
                kernels::add_inplace(&m_x[t * E + begin], &m_xn[t * E + begin], end - begin);
            }
        });
    }

    // logits[S][V] = rmsnorm(x of each chunk's last `logits` tokens) . Wout^T
    const std::size_t S = b.num_logits();
    m_out_x.resize(S * E);
    {
        std::size_t t = 0, s = 0;
        for (const batch_chunk& ch : b.chunks) {
            t += ch.tokens.size();
            for (std::size_t k = t - ch.logits; k < t; ++k, ++s) {
                kernels::rmsnorm(&m_x[k * E], m.output_norm.data(), &m_out_x[s * E], E, c.rms_eps);
            }
        }
    }
    // The CPU computes the logits anyway; argmax_only is a GPU transfer saving.
    out.vocab = c.n_vocab;
    out.argmax.clear();
    out.logits.resize(S * c.n_vocab);
    if (S > 0) {
        const kernels::activations xa = prepare(m.output.type, m_out_x.data(), S, E);
        matmul(m.output, xa, out.logits.data());
    }
}

void cpu_forward::attention(const batch& b, std::size_t layer) {
    if (m_cache.type() == ggml_type::f16) {
        attention_over<std::uint16_t>(b, layer, m_key_blocks_f16, m_value_blocks_f16);
    } else {
        attention_over<float>(b, layer, m_key_blocks, m_value_blocks);
    }
}

template <class E>
void cpu_forward::attention_over(const batch& b, std::size_t layer, std::vector<const E*>& keys,
                                 std::vector<const E*>& values) {
    const model_config& c = m_config;
    const std::size_t group = c.n_head / c.n_head_kv;
    const std::size_t Q = c.q_dim();

    // Block pointers of every chunk for this layer, concatenated.
    keys.clear();
    values.clear();
    m_chunk_block_offset.clear();
    for (const batch_chunk& ch : b.chunks) {
        m_chunk_block_offset.push_back(keys.size());
        const std::size_t used = (ch.start + ch.tokens.size() + m_cache.block_size() - 1) / m_cache.block_size();
        for (std::size_t i = 0; i < used; ++i) {
            keys.push_back(m_cache.keys_as<E>(layer, ch.blocks[i]));
            values.push_back(m_cache.values_as<E>(layer, ch.blocks[i]));
        }
    }

    // Work items taken in turn by whichever thread is free: later positions
    // cost more, and a descheduled thread then holds up one item, not a
    // fixed share. An item is one token with all its KV heads when there
    // are tokens enough to share: a block keeps its heads side by side, so
    // the item reads each block's keys (and values) as one run, which the
    // hardware prefetcher follows, where items of one head each would read
    // every other run of it. Few tokens (a lone decode): one item per
    // (token, KV head), so the threads still split the work.
    const std::size_t heads_per_item = m_slots.size() >= 4 * m_team.size() ? c.n_head_kv : 1;
    const std::size_t items = m_slots.size() * c.n_head_kv / heads_per_item;
    auto run_item = [&](std::size_t item, std::size_t, std::size_t part) {
        for (std::size_t i = item * heads_per_item; i < (item + 1) * heads_per_item; ++i) {
            const std::size_t t = i / c.n_head_kv;
            const std::size_t g = i % c.n_head_kv;
            const token_slot& s = m_slots[t];
            const std::size_t off = m_chunk_block_offset[s.chunk];
            const kernels::basic_attention_source<E> src{keys.data() + off, values.data() + off,
                                                         m_cache.block_size()};
            const std::size_t at = t * Q + g * group * c.head_dim; // this KV head's query heads
            kernels::attend(&m_q[at], group, c.head_dim, g, s.pos, src, &m_att[at], m_scratch[part].data());
        }
    };
    if (!worth_forking(m_attention_ns)) {
        for (std::size_t item = 0; item < items; ++item) run_item(item, items, 0);
        return;
    }
    m_team.run_chunks(items, run_item);
}

} // namespace weft::serve
