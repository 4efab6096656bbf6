// Decode attention over a paged F16 cache for grouped-query shapes: the
// kernel as the CPU backend calls it (a KV head's query heads together,
// sharing each read of the cache) against the same kernel one query head at
// a time (what a kernel unaware of the grouping does: the group's heads each
// read the cache), and against one call for all of a token's KV heads
// (attend_heads, as the backend takes a lone decoding token: one softmax
// over all the rows, two KV heads' weighted sums interleaved). Reports
// microseconds per layer per token and the ratios.
// Then a prompt chunk's attention late in a long prompt: attend_rows over
// 16 consecutive positions (the keys and values read once for all of them)
// against attend once per position, with each one's multiply-add rate (a
// position p costs 2 * (p + 1) * head_dim multiply-adds per query head:
// scores and weighted sum). Writes JSON.
//
// Usage: weft_bench_serve_attention [--json PATH] [--seconds S]
#include "kernels/kernels.hpp"

#include <weft/serve/ggml_type.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace k = weft::serve::kernels;
using clock_type = std::chrono::steady_clock;

namespace {

struct shape {
    const char* name;
    std::size_t group, head_dim, kv_heads, context;
};

struct cache {
    std::vector<std::vector<std::uint16_t>> keys, values;
    std::vector<const std::uint16_t*> key_ptrs, value_ptrs;
};

constexpr std::size_t block_size = 16;

cache make_cache(const shape& s, std::mt19937& gen) {
    std::uniform_real_distribution<float> d(-1.0f, 1.0f);
    cache c;
    const std::size_t blocks = (s.context + block_size - 1) / block_size;
    for (std::size_t b = 0; b < blocks; ++b) {
        std::vector<std::uint16_t> kb(s.kv_heads * block_size * s.head_dim), vb(kb.size());
        for (auto& x : kb) x = weft::serve::f32_to_f16(d(gen));
        for (auto& x : vb) x = weft::serve::f32_to_f16(d(gen));
        c.keys.push_back(std::move(kb));
        c.values.push_back(std::move(vb));
    }
    // Blocks in shuffled order, as a block table hands them out.
    std::vector<std::size_t> order(blocks);
    for (std::size_t i = 0; i < blocks; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), gen);
    for (std::size_t i : order) {
        c.key_ptrs.push_back(c.keys[i].data());
        c.value_ptrs.push_back(c.values[i].data());
    }
    return c;
}

/// Seconds per layer (every KV head once) of `run`, the median of rounds of
/// about `seconds` each.
template <class F>
double per_layer(F&& run, double seconds) {
    std::vector<double> rounds;
    for (int r = 0; r < 5; ++r) {
        std::size_t iters = 0;
        const auto t0 = clock_type::now();
        double elapsed = 0;
        do {
            run();
            ++iters;
            elapsed = std::chrono::duration<double>(clock_type::now() - t0).count();
        } while (elapsed < seconds / 5);
        rounds.push_back(elapsed / static_cast<double>(iters));
    }
    std::sort(rounds.begin(), rounds.end());
    return rounds[rounds.size() / 2];
}

} // namespace

int main(int argc, char** argv) {
    std::string json_path = "build/bench-attention.json";
    double seconds = 1.0;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
            json_path = argv[++i];
        } else if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = std::atof(argv[++i]);
        } else {
            std::fprintf(stderr, "usage: %s [--json PATH] [--seconds S]\n", argv[0]);
            return 2;
        }
    }
    const shape shapes[] = {
        // Short contexts: a prompt's first positions, and the serving goals'
        // 16-token prompts; most of their keys are in a partial group of 8.
        {"tiny demo (2 per KV head, dim 16)", 2, 16, 2, 20},
        {"small demo (2 per KV head, dim 64)", 2, 64, 4, 77},
        {"small demo (2 per KV head, dim 64)", 2, 64, 4, 512},
        {"Llama-3 8B (4 per KV head, dim 128)", 4, 128, 8, 512},
        {"Llama-3 8B (4 per KV head, dim 128)", 4, 128, 8, 4096},
        {"Qwen2 7B (7 per KV head, dim 128)", 7, 128, 4, 4096},
    };
    std::mt19937 gen(7);
    std::printf("%-38s %8s %14s %14s %7s %14s %7s\n", "shape", "context", "grouped us", "per-head us", "ratio",
                "all-heads us", "ratio");
    std::string json = "{\"block_size\": 16, \"cache\": \"f16\", \"results\": [";
    bool first = true;
    for (const shape& s : shapes) {
        cache c = make_cache(s, gen);
        const k::attention_source_f16 src{c.key_ptrs.data(), c.value_ptrs.data(), block_size};
        std::uniform_real_distribution<float> d(-1.0f, 1.0f);
        std::vector<float> q(s.kv_heads * s.group * s.head_dim), out(q.size());
        std::vector<float> scratch(k::attend_heads_scratch_size(s.kv_heads, s.group, s.context - 1));
        for (float& x : q) x = d(gen);
        const std::size_t pos = s.context - 1;
        const double grouped = per_layer(
            [&] {
                for (std::size_t h = 0; h < s.kv_heads; ++h) {
                    const std::size_t at = h * s.group * s.head_dim;
                    k::attend(&q[at], s.group, s.head_dim, h, pos, src, &out[at], scratch.data());
                }
            },
            seconds);
        const double all_heads = per_layer(
            [&] { k::attend_heads(q.data(), s.group, s.head_dim, 0, s.kv_heads, pos, src, out.data(), scratch.data()); },
            seconds);
        const double per_head = per_layer(
            [&] {
                for (std::size_t h = 0; h < s.kv_heads; ++h) {
                    for (std::size_t g = 0; g < s.group; ++g) {
                        const std::size_t at = (h * s.group + g) * s.head_dim;
                        k::attend(&q[at], 1, s.head_dim, h, pos, src, &out[at], scratch.data());
                    }
                }
            },
            seconds);
        std::printf("%-38s %8zu %14.2f %14.2f %6.2fx %14.2f %6.2fx\n", s.name, s.context, grouped * 1e6,
                    per_head * 1e6, per_head / grouped, all_heads * 1e6, grouped / all_heads);
        char buf[512];
        std::snprintf(buf, sizeof buf,
                      "%s{\"shape\": \"%s\", \"group\": %zu, \"head_dim\": %zu, \"kv_heads\": %zu, \"context\": %zu, "
                      "\"grouped_us_per_layer\": %.3f, \"per_head_us_per_layer\": %.3f, \"speedup\": %.3f, "
                      "\"all_heads_us_per_layer\": %.3f, \"all_heads_speedup\": %.3f}",
                      first ? "" : ", ", s.name, s.group, s.head_dim, s.kv_heads, s.context, grouped * 1e6,
                      per_head * 1e6, per_head / grouped, all_heads * 1e6, grouped / all_heads);
        json += buf;
        first = false;
    }
    json += "], \"rows\": [";
    // A prompt chunk of 16 positions ending at `context`.
    const shape row_shapes[] = {
        {"small demo (2 per KV head, dim 64)", 2, 64, 4, 512},
        {"small demo (2 per KV head, dim 64)", 2, 64, 4, 2000},
        {"Llama-3 8B (4 per KV head, dim 128)", 4, 128, 8, 2000},
    };
    constexpr std::size_t chunk = 16;
    std::printf("\nprompt chunk of %zu positions\n%-38s %8s %14s %14s %7s %9s %9s\n", chunk, "shape", "context",
                "rows us/tok", "attend us/tok", "ratio", "rows GMAC", "att GMAC");
    first = true;
    for (const shape& s : row_shapes) {
        cache c = make_cache(s, gen);
        const k::attention_source_f16 src{c.key_ptrs.data(), c.value_ptrs.data(), block_size};
        std::uniform_real_distribution<float> d(-1.0f, 1.0f);
        const std::size_t width = s.kv_heads * s.group * s.head_dim;
        const std::size_t first_pos = s.context - chunk;
        std::vector<float> q(chunk * width), out(q.size());
        std::vector<float> scratch(std::max(k::attend_rows_scratch_size(chunk, s.group, first_pos),
                                            k::attend_scratch_size(s.group, s.context - 1)));
        for (float& x : q) x = d(gen);
        const double rows = per_layer(
            [&] {
                for (std::size_t h = 0; h < s.kv_heads; ++h) {
                    const std::size_t at = h * s.group * s.head_dim;
                    k::attend_rows(&q[at], width, chunk, s.group, s.head_dim, h, first_pos, src, &out[at], width,
                                   scratch.data());
                }
            },
            seconds);
        const double single = per_layer(
            [&] {
                for (std::size_t t = 0; t < chunk; ++t) {
                    for (std::size_t h = 0; h < s.kv_heads; ++h) {
                        const std::size_t at = t * width + h * s.group * s.head_dim;
                        k::attend(&q[at], s.group, s.head_dim, h, first_pos + t, src, &out[at], scratch.data());
                    }
                }
            },
            seconds);
        double macs = 0;
        for (std::size_t t = 0; t < chunk; ++t) {
            macs += 2.0 * static_cast<double>((first_pos + t + 1) * s.head_dim * s.kv_heads * s.group);
        }
        const double per_tok = 1e6 / static_cast<double>(chunk);
        std::printf("%-38s %8zu %14.1f %14.1f %6.2fx %9.1f %9.1f\n", s.name, s.context, rows * per_tok,
                    single * per_tok, single / rows, macs / rows * 1e-9, macs / single * 1e-9);
        char buf[512];
        std::snprintf(buf, sizeof buf,
                      "%s{\"shape\": \"%s\", \"group\": %zu, \"head_dim\": %zu, \"kv_heads\": %zu, "
                      "\"context\": %zu, \"chunk\": %zu, \"rows_us_per_token_layer\": %.2f, "
                      "\"attend_us_per_token_layer\": %.2f, \"speedup\": %.3f, \"rows_gmacs\": %.2f, "
                      "\"attend_gmacs\": %.2f}",
                      first ? "" : ", ", s.name, s.group, s.head_dim, s.kv_heads, s.context, chunk, rows * per_tok,
                      single * per_tok, single / rows, macs / rows * 1e-9, macs / single * 1e-9);
        json += buf;
        first = false;
    }
    json += "]}\n";
    if (FILE* f = std::fopen(json_path.c_str(), "w")) {
        std::fputs(json.c_str(), f);
        std::fclose(f);
        std::printf("wrote %s\n", json_path.c_str());
    } else {
        std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
        return 1;
    }
    return 0;
}
