/// \file
/// Test helpers for the model: random models built in memory, a naive
/// float64 reference forward pass, and a little driver that runs sequences
/// through a backend with their own block tables.
#pragma once

#include <weft/serve/cpu_backend.hpp>
#include <weft/serve/demo_model.hpp>
#include <weft/serve/gguf.hpp>
#include <weft/serve/model.hpp>
#include <weft/serve/quant.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

namespace weft::serve::test {

/// A small llama (or qwen2) config with the given shape.
inline model_config small_config(std::size_t vocab, std::size_t embd, std::size_t layers, std::size_t heads,
                                 std::size_t kv_heads, std::size_t ff, std::string arch = "llama") {
    model_config c;
    c.architecture = arch;
    c.n_vocab = vocab;
    c.n_embd = embd;
    c.n_layer = layers;
    c.n_head = heads;
    c.n_head_kv = kv_heads;
    c.head_dim = embd / heads;
    c.n_ff = ff;
    c.n_ctx_train = 1024;
    c.rope_dim = c.head_dim;
    c.rope_freq_base = 10000.0f;
    c.rms_eps = 1e-5f;
    c.rope = arch == "qwen2" ? rope_style::halves : rope_style::adjacent;
    c.qkv_bias = arch == "qwen2";
    return c;
}

/// A random model of `config`, weights stored as `type`, built in memory.
inline std::shared_ptr<const model> random_model(const model_config& config, ggml_type type = ggml_type::f32,
                                                 std::uint64_t seed = 7, bool tied = false) {
    gguf_writer w;
    add_random_model(w, config, demo_tokenizer(config.n_vocab), type, seed, "test", tied);
    auto bytes = std::make_shared<std::vector<std::byte>>(w.to_bytes());
    // The file views `bytes`; keep them alive as long as the file.
    struct owning {
        std::shared_ptr<std::vector<std::byte>> bytes;
        gguf_file file;
    };
    auto holder = std::make_shared<owning>(owning{bytes, gguf_file::from_memory(*bytes)});
    return model::from_gguf(std::shared_ptr<const gguf_file>(holder, &holder->file));
}

/// Logits of every position of `tokens`, computed in double with plain
/// loops and no cache, from the model's weights (dequantized). With
/// `kv_f16`, keys and values are rounded to F16 as an F16 cache stores them.
inline std::vector<std::vector<double>> reference_logits(const model& m, const std::vector<token_id>& tokens,
                                                         bool kv_f16 = false) {
    const model_config& c = m.config();
    const std::size_t E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff, T = tokens.size();
    auto row = [](const weight_matrix& w, std::size_t r) {
        std::vector<float> f(w.cols);
        dequantize_row(w.type, w.row(r), f.data(), w.cols);
        return std::vector<double>(f.begin(), f.end());
    };
    auto matvec = [&](const weight_matrix& w, const std::vector<double>& x) {
        std::vector<double> y(w.rows);
        for (std::size_t r = 0; r < w.rows; ++r) {
            const std::vector<double> wr = row(w, r);
            y[r] = std::inner_product(wr.begin(), wr.end(), x.begin(), 0.0);
        }
        return y;
    };
    auto rmsnorm = [&](const std::vector<double>& x, const std::vector<float>& wt) {
        double ss = 0;
        for (double v : x) ss += v * v;
        const double s = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + c.rms_eps);
        std::vector<double> y(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] * s * wt[i];
        return y;
    };
    auto rope = [&](std::vector<double>& v, std::size_t heads, std::size_t pos) {
        const std::size_t half = c.rope_dim / 2;
        for (std::size_t h = 0; h < heads; ++h) {
            for (std::size_t i = 0; i < half; ++i) {
                const double theta = static_cast<double>(pos) *
                                     std::pow(static_cast<double>(c.rope_freq_base), -2.0 * i / static_cast<double>(c.rope_dim));
                const std::size_t a = h * c.head_dim + (c.rope == rope_style::adjacent ? 2 * i : i);
                const std::size_t b = h * c.head_dim + (c.rope == rope_style::adjacent ? 2 * i + 1 : i + half);
                const double x0 = v[a], x1 = v[b];
                v[a] = x0 * std::cos(theta) - x1 * std::sin(theta);
                v[b] = x0 * std::sin(theta) + x1 * std::cos(theta);
            }
        }
    };

    std::vector<std::vector<double>> x(T);
    for (std::size_t t = 0; t < T; ++t) x[t] = row(m.token_embd, static_cast<std::size_t>(tokens[t]));
    for (const layer_weights& w : m.layers) {
        std::vector<std::vector<double>> q(T), k(T), v(T);
        for (std::size_t t = 0; t < T; ++t) {
            const auto xn = rmsnorm(x[t], w.attn_norm);
            q[t] = matvec(w.wq, xn);
            k[t] = matvec(w.wk, xn);
            v[t] = matvec(w.wv, xn);
            for (std::size_t i = 0; i < w.bq.size(); ++i) q[t][i] += w.bq[i];
            for (std::size_t i = 0; i < w.bk.size(); ++i) k[t][i] += w.bk[i];
            for (std::size_t i = 0; i < w.bv.size(); ++i) v[t][i] += w.bv[i];
            rope(q[t], c.n_head, t);
            rope(k[t], c.n_head_kv, t);
            if (kv_f16) {
                for (double& e : k[t]) e = f16_to_f32(f32_to_f16(static_cast<float>(e)));
                for (double& e : v[t]) e = f16_to_f32(f32_to_f16(static_cast<float>(e)));
            }
        }
        const std::size_t group = c.n_head / c.n_head_kv;
        for (std::size_t t = 0; t < T; ++t) {
            std::vector<double> att(Q, 0.0);
            for (std::size_t h = 0; h < c.n_head; ++h) {
                const std::size_t g = h / group;
                std::vector<double> s(t + 1);
                double mx = -1e300;
                for (std::size_t j = 0; j <= t; ++j) {
                    double d = 0;
                    for (std::size_t i = 0; i < c.head_dim; ++i) d += q[t][h * c.head_dim + i] * k[j][g * c.head_dim + i];
                    s[j] = d / std::sqrt(static_cast<double>(c.head_dim));
                    mx = std::max(mx, s[j]);
                }
                double sum = 0;
                for (double& e : s) sum += (e = std::exp(e - mx));
                for (std::size_t j = 0; j <= t; ++j) {
                    for (std::size_t i = 0; i < c.head_dim; ++i) att[h * c.head_dim + i] += s[j] / sum * v[j][g * c.head_dim + i];
                }
            }
            const auto o = matvec(w.wo, att);
            for (std::size_t i = 0; i < E; ++i) x[t][i] += o[i];
            const auto xn = rmsnorm(x[t], w.ffn_norm);
            const auto g = matvec(w.w_gate, xn);
            const auto u = matvec(w.w_up, xn);
            std::vector<double> h(F);
            for (std::size_t i = 0; i < F; ++i) h[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
            const auto d = matvec(w.w_down, h);
            for (std::size_t i = 0; i < E; ++i) x[t][i] += d[i];
        }
        (void)KV;
    }
    std::vector<std::vector<double>> logits(T);
    for (std::size_t t = 0; t < T; ++t) logits[t] = matvec(m.output, rmsnorm(x[t], m.output_norm));
    return logits;
}

/// max |a - b| / max |b|.
inline double relative_error(std::span<const float> a, const std::vector<double>& b) {
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < b.size(); ++i) {
        diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
        scale = std::max(scale, std::abs(b[i]));
    }
    return diff / scale;
}

/// One sequence's state for driving a backend by hand: its tokens and a
/// block table of distinct blocks handed out by the caller.
struct test_sequence {
    seq_id id = 0;
    std::vector<token_id> tokens;
    std::vector<block_id> blocks;
    std::size_t computed = 0;

    /// A chunk of the next `n` tokens (all that remain if n is 0).
    batch_chunk next_chunk(std::size_t n, bool logits) {
        if (n == 0 || computed + n > tokens.size()) n = tokens.size() - computed;
        batch_chunk c;
        c.id = id;
        c.start = computed;
        c.tokens = std::span<const token_id>(tokens).subspan(computed, n);
        c.blocks = blocks;
        c.logits = logits;
        computed += n;
        return c;
    }
};

/// Pseudo-random tokens below `vocab`.
inline std::vector<token_id> random_tokens(std::size_t n, std::size_t vocab, std::uint64_t seed) {
    std::vector<token_id> t(n);
    std::uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (auto& v : t) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v = static_cast<token_id>(s % vocab);
    }
    return t;
}

inline test_sequence make_sequence(seq_id id, std::vector<token_id> tokens, std::vector<block_id> blocks) {
    test_sequence s;
    s.id = id;
    s.tokens = std::move(tokens);
    s.blocks = std::move(blocks);
    return s;
}

/// Block ids first, first + 1, ..., n of them.
inline std::vector<block_id> block_range(block_id first, std::size_t n) {
    std::vector<block_id> b(n);
    std::iota(b.begin(), b.end(), first);
    return b;
}

/// The batch-invariance scenario, for any backend with `step_sync`: one
/// sequence (a 20-token prompt, then 5 fixed decode tokens) runs alone, then
/// again in steps shared with five other sequences that, in changing numbers,
/// prefill in chunks of 5 or decode. Returns the sequence's logits of each of
/// its steps, {alone, shared}. Uses blocks 0..33 and 40..43.
template <class Backend>
std::pair<std::vector<std::vector<float>>, std::vector<std::vector<float>>> shared_step_logits(Backend& backend,
                                                                                             const model_config& c) {
    const std::vector<token_id> prompt = random_tokens(20, c.n_vocab, 1);
    std::vector<token_id> all = prompt;
    for (token_id t : random_tokens(5, c.n_vocab, 2)) all.push_back(t);
    std::vector<std::vector<float>> alone_logits, shared_logits;

    test_sequence alone = make_sequence(1, all, block_range(0, 4));
    alone.tokens.resize(prompt.size());
    step_output out;
    for (std::size_t i = prompt.size(); i <= all.size(); ++i) {
        batch b;
        b.chunks.push_back(alone.next_chunk(i == prompt.size() ? 0 : 1, true));
        backend.step_sync(b, out);
        alone_logits.emplace_back(out.row(0).begin(), out.row(0).end());
        if (i < all.size()) alone.tokens.push_back(all[i]);
    }

    test_sequence busy = make_sequence(1, all, block_range(40, 4));
    busy.tokens.resize(prompt.size());
    std::vector<test_sequence> others;
    for (seq_id o = 0; o < 5; ++o) {
        others.push_back(make_sequence(10 + o, random_tokens(9 + 7 * o, c.n_vocab, 100 + o),
                                       block_range(static_cast<block_id>(4 + 6 * o), 6)));
    }
    for (std::size_t step = 0; shared_logits.size() < alone_logits.size(); ++step) {
        batch b;
        for (std::size_t i = 0; i < others.size(); ++i) {
            test_sequence& o = others[i];
            if ((step + i) % 3 == 0 || o.computed >= 40) continue;
            if (o.computed == o.tokens.size()) o.tokens.push_back(static_cast<token_id>((step * 31 + i) % c.n_vocab));
            b.chunks.push_back(o.next_chunk(5, true));
        }
        const std::size_t mine = b.chunks.size();
        const std::size_t got = shared_logits.size();
        if (got > 0) busy.tokens.push_back(all[prompt.size() + got - 1]);
        b.chunks.push_back(busy.next_chunk(got == 0 ? 0 : 1, true));
        backend.step_sync(b, out);
        shared_logits.emplace_back(out.row(mine).begin(), out.row(mine).end());
    }
    return {std::move(alone_logits), std::move(shared_logits)};
}

} // namespace weft::serve::test
