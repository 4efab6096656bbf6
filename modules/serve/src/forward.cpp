#include "forward.hpp"

#include <weft/serve/quant.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <exception>
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

/// A step runs one lane per thread (cpu_forward::plan_lanes) when a lane's
/// multiply-adds take at least this share of the time to stream the weights
/// once, and its most costly lane is within `lane_balance` of an even share.
constexpr double lane_compute_share = 0.5;
constexpr double lane_balance = 1.15;

/// About how long one token's multiply-adds with `w` take on one thread.
double macs_ns(const weight_matrix& w) noexcept {
    const bool float_weights = w.type == ggml_type::f32 || w.type == ggml_type::f16 || w.type == ggml_type::bf16;
    return static_cast<double>(w.rows) * static_cast<double>(w.cols) * (float_weights ? float_mac_ns : integer_mac_ns);
}

/// About how long `tokens` rows times `w` take on one thread: the
/// multiply-adds, or streaming the weights, whichever is longer.
double matmul_ns(const weight_matrix& w, std::size_t tokens) noexcept {
    return std::max(static_cast<double>(tokens) * macs_ns(w), static_cast<double>(w.bytes()) * weight_byte_ns);
}

} // namespace

cpu_forward::cpu_forward(std::shared_ptr<const model> m, kernels::compute_team& team, kv_cache& cache,
                         double split_step_ns, bool sequence_lanes)
    : m_model(std::move(m)), m_config(m_model->config()), m_team(team), m_cache(cache), m_split_step_ns(split_step_ns),
      m_sequence_lanes(sequence_lanes),
      m_rope(m_config.rope_dim, m_config.rope_freq_base, m_config.rope),
      m_scratch(team.size()), m_lanes(team.size()) {
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
    for (const layer_weights& w : m_model->layers) {
        for (const weight_matrix* x : {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down}) {
            m_matmul_token_ns += macs_ns(*x);
            m_weights_ns += static_cast<double>(x->bytes()) * weight_byte_ns;
        }
    }
    m_logits_token_ns = macs_ns(m_model->output);
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

kernels::activations cpu_forward::prepare(ggml_type wt, const float* x, std::size_t tokens, std::size_t k,
                                          std::vector<std::byte>& buffer) {
    const double ns_per_token = quantize_ns * static_cast<double>(k);
    if (vec_dot_type(wt) == ggml_type::f32 || !worth_forking(static_cast<double>(tokens) * ns_per_token)) {
        return kernels::prepare_activations(wt, x, k, tokens, k, buffer);
    }
    // Quantizing a big batch's rows is worth sharing between the threads.
    const kernels::activations a = kernels::layout_activations(wt, tokens, k, buffer);
    per_token(tokens, ns_per_token, [&](std::size_t t) { kernels::fill_activations(a, x, k, t, t + 1); });
    return a;
}

std::pair<std::size_t, std::size_t> cpu_forward::matmul_part(const weight_matrix& w, const kernels::activations& x,
                                                             float* y, std::size_t part, std::size_t parts) {
    // Rows in multiples of 48, so each chunk keeps whole kernel tiles and
    // whole groups of three F32 panels (the batched tile's 48 rows).
    static_assert(kernels::packed_f32::panel_rows * 3 == matmul_grain);
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
    m_attention_ns = 0;
    for (const token_slot& s : m_slots) m_attention_ns += attention_ns(s);
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

double cpu_forward::attention_ns(const token_slot& s) const noexcept {
    // A call per KV head, then its positions.
    const model_config& c = m_config;
    const double macs_per_position = 2.0 * static_cast<double>(c.n_head / c.n_head_kv * c.head_dim);
    return static_cast<double>(c.n_head_kv) *
           (attend_call_ns + attend_mac_ns * macs_per_position * static_cast<double>(s.pos + 1));
}

bool cpu_forward::plan_lanes(const batch& b) {
    // A step of many sequences is bound by arithmetic, not by streaming the
    // weights. Split by rows, each of its ~5 products and its attention per
    // layer is a fork-join whose last chunk the other thread waits for: on
    // two cores, 7-15% of a 32-sequence step of `small` went to those joins
    // (per product against one thread's time). Split by sequences instead,
    // every thread runs the whole layer stack over its own tokens and the
    // step has one join. Nothing crosses sequences in a layer (a token's
    // attention reads its own sequence's cache), and every product and
    // attention gives a token the same bits whichever tokens share its call.
    // Each thread then reads all the weights, but the threads go through the
    // layers together, so the second read comes from the L3 cache: this is
    // for steps bound by arithmetic, with tokens enough per thread to reuse
    // each weight many times.
    const std::size_t parts = m_team.size();
    m_spans.clear();
    // Tokens enough that a lane's products are bound by arithmetic, not by
    // streaming the weights, which each lane does (F32 weights of `small`
    // with 4 tokens a lane: 20% slower than split by rows; Q8_0, from the L3
    // cache: 35% faster).
    const double lane_macs_ns = m_matmul_token_ns * static_cast<double>(m_slots.size() / parts);
    if (!m_sequence_lanes || parts < 2 || !worth_forking(fork_join_ns) || lane_macs_ns < lane_compute_share * m_weights_ns ||
        b.chunks.size() < parts) {
        return false;
    }
    // Contiguous runs of chunks of about equal cost: each run ends at the
    // chunk boundary nearest its share of the total.
    m_chunk_cost.assign(b.chunks.size(), 0.0);
    double total = 0;
    const auto layers = static_cast<double>(m_config.n_layer);
    for (const token_slot& s : m_slots) m_chunk_cost[s.chunk] += m_matmul_token_ns + layers * attention_ns(s);
    for (std::size_t ci = 0; ci < b.chunks.size(); ++ci) {
        m_chunk_cost[ci] += m_logits_token_ns * static_cast<double>(b.chunks[ci].logits);
        total += m_chunk_cost[ci];
    }
    batch_span sp;
    double done = 0, worst = 0, before = 0;
    for (std::size_t ci = 0; ci < b.chunks.size(); ++ci) {
        const double target = total * static_cast<double>(m_spans.size() + 1) / static_cast<double>(parts);
        const double after = done + m_chunk_cost[ci];
        const std::size_t left = b.chunks.size() - ci; // chunks from ci on
        const std::size_t lanes_left = parts - m_spans.size() - 1;
        // Close the span before chunk ci when that is nearer the target, or
        // when the lanes after it need every chunk left.
        const bool close = sp.chunk_end > sp.chunk_begin && m_spans.size() + 1 < parts &&
                           (left <= lanes_left || target - done < after - target);
        if (close) {
            worst = std::max(worst, done - before);
            before = done;
            m_spans.push_back(sp);
            sp = batch_span{ci, ci, sp.t_end, sp.t_end, sp.s_end, sp.s_end};
        }
        sp.chunk_end = ci + 1;
        sp.t_end += b.chunks[ci].tokens.size();
        sp.s_end += b.chunks[ci].logits;
        done = after;
    }
    worst = std::max(worst, done - before);
    m_spans.push_back(sp);
    // Uneven runs (one long prompt beside a few decodes) keep the row split:
    // a step waits for its slowest lane.
    if (m_spans.size() != parts || worst > lane_balance * total / static_cast<double>(parts)) {
        m_spans.clear();
        return false;
    }
    return true;
}

template <class F>
void cpu_forward::per_token_run(std::size_t tokens, double ns_per_token, F&& fn) {
    if (!worth_forking(static_cast<double>(tokens) * ns_per_token)) {
        fn(std::size_t{0}, tokens);
        return;
    }
    m_team.run([&](std::size_t part, std::size_t parts) {
        const auto [begin, end] = kernels::compute_team::split(tokens, part, parts);
        fn(begin, end);
    });
}

template <class F>
void cpu_forward::per_token(std::size_t tokens, double ns_per_token, F&& fn) {
    per_token_run(tokens, ns_per_token, [&](std::size_t begin, std::size_t end) {
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
    for (auto& s : m_scratch) {
        s.resize(std::max(kernels::attend_rows_scratch_size(attention_run, c.n_head / c.n_head_kv, max_pos),
                          kernels::attend_heads_scratch_size(c.n_head_kv, c.n_head / c.n_head_kv, max_pos)));
    }
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
    // The CPU computes the logits anyway; argmax_only is a GPU transfer saving.
    const std::size_t S = b.num_logits();
    out.vocab = c.n_vocab;
    out.argmax.clear();
    out.logits.resize(S * c.n_vocab);
    m_out_x.resize(S * E);

    if (plan_lanes(b)) {
        // Inside a lane every job runs on the lane's thread.
        const double split = m_job_split_ns;
        m_job_split_ns = std::numeric_limits<double>::infinity();
        m_lane_steps.fetch_add(1, std::memory_order_relaxed);
        // A team's job must not throw: a lane's failure (a buffer it could
        // not grow) is rethrown here once every lane is done.
        std::vector<std::exception_ptr> errors(m_spans.size());
        m_team.run([&](std::size_t part, std::size_t) {
            try {
                run_span(b, m_spans[part], part, out);
            } catch (...) {
                errors[part] = std::current_exception();
            }
        });
        m_job_split_ns = split;
        for (const std::exception_ptr& e : errors) {
            if (e) std::rethrow_exception(e);
        }
        return;
    }
    run_span(b, batch_span{0, b.chunks.size(), 0, T, 0, S}, 0, out);
}

void cpu_forward::run_span(const batch& b, const batch_span& sp, std::size_t ln, step_output& out) {
    const model& m = *m_model;
    const model_config& c = m_config;
    const std::size_t E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff;
    const std::size_t t0 = sp.t_begin;
    const std::size_t S = sp.s_end - sp.s_begin; // logits rows
    // The tokens the layers run on: the span's, until the last layer keeps
    // only those whose logits are asked for (see keep_logits_rows).
    std::size_t T = sp.tokens();
    std::vector<std::byte>& act = m_lanes[ln].act;
    // This span's rows of the step's buffers.
    // (data() + offset: a buffer may be empty, and [] of an empty vector is undefined.)
    float* const x = m_x.data() + t0 * E;
    float* const xn = m_xn.data() + t0 * E;
    float* const q = m_q.data() + t0 * Q;
    float* const k = m_k.data() + t0 * KV;
    float* const v = m_v.data() + t0 * KV;
    float* const att = m_att.data() + t0 * Q;
    float* const gate = m_gate.data() + t0 * F;
    float* const up = m_up.data() + t0 * F;

    for (std::size_t l = 0; l < c.n_layer; ++l) {
        const layer_weights& w = m.layers[l];

        // xn[T][E] = rmsnorm(x) * attn_norm
        per_token_run(T, norm_ns * static_cast<double>(E), [&](std::size_t begin, std::size_t end) {
            kernels::rmsnorm_rows(&x[begin * E], w.attn_norm.data(), &xn[begin * E], end - begin, E, c.rms_eps);
        });

        // q[T][Q], k[T][KV], v[T][KV] = xn . W^T (+ bias). The last layer's
        // output is read only by the logits: when not every token's are asked
        // for, its queries wait for the tokens whose logits are (below).
        const bool narrow = l + 1 == c.n_layer && S < T;
        const projection qkv[] = {{&w.wq, q, &w.bq}, {&w.wk, k, &w.bk}, {&w.wv, v, &w.bv}};
        project(narrow ? std::span(qkv).subspan(1) : std::span(qkv), xn, T, act);

        // RoPE on q and k at each token's position; k and v into the cache.
        // (The table covers every position already: apply only reads it.)
        per_token(T, rotate_ns * static_cast<double>(Q + 3 * KV), [&](std::size_t t) {
            const token_slot& s = m_slots[t0 + t];
            if (!narrow) m_rope.apply(&q[t * Q], c.n_head, c.head_dim, s.pos);
            m_rope.apply(&k[t * KV], c.n_head_kv, c.head_dim, s.pos);
            const batch_chunk& ch = b.chunks[s.chunk];
            const block_id blk = ch.blocks[s.pos / m_cache.block_size()];
            const std::size_t slot = s.pos % m_cache.block_size();
            m_cache.store(l, blk, slot, &k[t * KV], &v[t * KV]);
        });

        // Every token's K and V are in the cache now, where later tokens
        // attend to them. The rest of the last layer runs on the tokens whose
        // logits are asked for: a prompt chunk's last token, not the rest of
        // it. x[S][E], xn[S][E] and q[S][Q] from here.
        if (narrow) {
            keep_logits_rows(b, sp, x, xn);
            T = S;
            if (T == 0) break;
            project(std::span(qkv).first(1), xn, T, act);
            per_token(T, rotate_ns * static_cast<double>(Q), [&](std::size_t t) {
                m_rope.apply(&q[t * Q], c.n_head, c.head_dim, m_slots[t0 + t].pos);
            });
        }

        // att[T][Q] = softmax(q k^T / sqrt(d)) v, causal, per sequence
        batch_span tokens = sp;
        tokens.t_end = t0 + T;
        attention(b, l, tokens, ln);

        // x += att . Wo^T
        kernels::activations xa = prepare(w.wo.type, att, T, Q, act);
        matmul(w.wo, xa, xn);
        // xn = rmsnorm(x) * ffn_norm; x += (silu(xn . Wgate^T) * (xn . Wup^T)) . Wdown^T
        per_token_run(T, 2 * norm_ns * static_cast<double>(E), [&](std::size_t begin, std::size_t end) {
            kernels::add_inplace(&x[begin * E], &xn[begin * E], (end - begin) * E);
            kernels::rmsnorm_rows(&x[begin * E], w.ffn_norm.data(), &xn[begin * E], end - begin, E, c.rms_eps);
        });
        xa = prepare(w.w_gate.type, xn, T, E, act);
        if (w.w_up.type == w.w_gate.type) {
            // One fork-join: each part multiplies its rows of gate and up
            // (the same split: both have F rows), then gates exactly those
            // rows (nothing crosses parts). The row splits are multiples of
            // 48, so every element takes the same SIMD or scalar path as in a
            // whole-row swiglu.
            const double ns = matmul_ns(w.w_gate, T) + matmul_ns(w.w_up, T) + gate_ns * static_cast<double>(T * F);
            m_team.run_chunks(matmul_chunks(F, ns), [&](std::size_t part, std::size_t parts) {
                matmul_part(w.w_gate, xa, gate, part, parts);
                const auto [begin, end] = matmul_part(w.w_up, xa, up, part, parts);
                for (std::size_t t = 0; begin < end && t < T; ++t) {
                    kernels::swiglu(&gate[t * F + begin], &up[t * F + begin], &gate[t * F + begin], end - begin);
                }
            });
        } else {
            matmul(w.w_gate, xa, gate);
            xa = prepare(w.w_up.type, xn, T, E, act);
            matmul(w.w_up, xa, up);
            per_token(T, gate_ns * static_cast<double>(F),
                      [&](std::size_t t) { kernels::swiglu(&gate[t * F], &up[t * F], &gate[t * F], F); });
        }
        xa = prepare(w.w_down.type, gate, T, F, act);
        // The residual add joins the product: each part adds the rows it
        // computed, one fork-join for both.
        m_team.run_chunks(matmul_chunks(E, matmul_ns(w.w_down, T)), [&](std::size_t part, std::size_t parts) {
            const auto [begin, end] = matmul_part(w.w_down, xa, xn, part, parts);
            for (std::size_t t = 0; begin < end && t < T; ++t) {
                kernels::add_inplace(&x[t * E + begin], &xn[t * E + begin], end - begin);
            }
        });
    }

    // logits[S][V] = rmsnorm(x) . Wout^T: x's rows are the logits rows now
    float* const out_x = m_out_x.data() + sp.s_begin * E;
    kernels::rmsnorm_rows(x, m.output_norm.data(), out_x, S, E, c.rms_eps);
    if (S > 0) {
        const kernels::activations xa = prepare(m.output.type, out_x, S, E, act);
        matmul(m.output, xa, out.logits.data() + sp.s_begin * c.n_vocab);
    }
}

void cpu_forward::project(std::span<const projection> ps, const float* xn, std::size_t T,
                          std::vector<std::byte>& act) {
    const std::size_t E = m_config.n_embd;
    const ggml_type type = ps.front().w->type;
    if (std::all_of(ps.begin(), ps.end(), [&](const projection& p) { return p.w->type == type; })) {
        // One fork-join for the products (they share the activations).
        const kernels::activations xa = prepare(type, xn, T, E, act);
        std::size_t rows = ps.front().w->rows;
        double ns = 0;
        for (const projection& p : ps) {
            rows = std::min(rows, p.w->rows);
            ns += matmul_ns(*p.w, T);
        }
        m_team.run_chunks(matmul_chunks(rows, ns), [&](std::size_t part, std::size_t parts) {
            for (const projection& p : ps) matmul_part(*p.w, xa, p.out, part, parts);
        });
    } else {
        for (const projection& p : ps) matmul(*p.w, prepare(p.w->type, xn, T, E, act), p.out);
    }
    for (const projection& p : ps) {
        if (p.bias->empty()) continue;
        for (std::size_t t = 0; t < T; ++t) kernels::add_inplace(&p.out[t * p.w->rows], p.bias->data(), p.w->rows);
    }
}

void cpu_forward::keep_logits_rows(const batch& b, const batch_span& sp, float* x, float* xn) {
    const std::size_t E = m_config.n_embd;
    // Each chunk's last `logits` tokens move to the front, in order: a row
    // moves to a lower or the same index, after every row it could overwrite
    // has moved.
    std::size_t t = 0, kept = 0;
    for (std::size_t ci = sp.chunk_begin; ci < sp.chunk_end; ++ci) {
        const batch_chunk& ch = b.chunks[ci];
        t += ch.tokens.size();
        for (std::size_t i = t - ch.logits; i < t; ++i, ++kept) {
            if (i == kept) continue;
            std::copy_n(&x[i * E], E, &x[kept * E]);
            std::copy_n(&xn[i * E], E, &xn[kept * E]);
            m_slots[sp.t_begin + kept] = m_slots[sp.t_begin + i];
        }
    }
}

} // namespace weft::serve
