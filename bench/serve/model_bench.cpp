// weft-model-bench: the CPU backend's speed against the machine's memory
// bandwidth, measured in the same run.
//
//   weft-model-bench [--size small] [--types f32,q8_0] [--threads 2] [--kv-type f16|f32] [--json out.json]
//
// 1. Memory bandwidth: bytes read per second by the threads from a buffer
//    far larger than the caches, and the arithmetic peak: float FMAs and
//    int8 dot products per second on the same threads.
// 2. Single-sequence decode step time against the bandwidth floor: the bytes
//    of every weight matrix a step reads, over the rate at which the threads
//    read a buffer of that size again and again (what decode steps do with
//    the weights; part of them stays in the L3 cache from one to the next).
// 3. Decode throughput at batch 1, 2, 4, ..., 64 (each sequence with a
//    64-token context), each step against its floor: the larger of the
//    bandwidth floor and the compute floor (the step's multiply-adds in its
//    products / the peak of the weight type's arithmetic: float FMAs for
//    float weights, int8 dot products for the quantized ones, whose
//    activations are quantized to 8 bits). From these, the most batch 32
//    could give over batch 1 on this machine.
// 4. Prefill tokens/s for one 512-token prompt.
// With --gap-us N each timed decode step comes N microseconds after the last
// one ends, the threads idle meanwhile: what a shared host's caches keep of
// the weights over that long (docs/pitfalls.md §31).
// The JSON also gives the multiply-adds of a decode token and of a prompt
// token without logits, from which bench/serve/goals.sh derives the most
// tokens/s the arithmetic allows a serving run.
// Times are medians of repeated runs; ratios compare figures of one run.
#include "compute_peak.hpp"

#include <weft/serve/cpu_backend.hpp>
#include <weft/serve/demo_model.hpp>
#include <weft/serve/quant.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <numeric>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace weft::serve;
using clock_type = std::chrono::steady_clock;

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

/// XOR of `passes` passes over `words` words (a multiple of 16) at `p`, two
/// 64-byte lines a step, compiled for the widest vectors the CPU has: read a
/// word at a time, a buffer the L3 cache holds came in at ~45 GB/s, bound by
/// the loads issued rather than by the cache.
__attribute__((target_clones("avx512f", "avx2", "default"))) std::uint64_t xor_passes(const std::uint64_t* p,
                                                                                      std::size_t words,
                                                                                      std::size_t passes) {
    using lanes = std::uint64_t __attribute__((vector_size(64)));
    lanes a{}, b{};
    for (std::size_t pass = 0; pass < passes; ++pass) {
        for (std::size_t i = 0; i + 16 <= words; i += 16) {
            // Both lines asked for 512 bytes ahead: the hardware prefetcher
            // alone read a few percent less. (The address is formed as an
            // integer, since past the buffer's end it points nowhere; a
            // prefetch of it does nothing.)
            const std::uintptr_t ahead = reinterpret_cast<std::uintptr_t>(p + i) + 512;
            __builtin_prefetch(reinterpret_cast<const void*>(ahead), 0, 0);
            __builtin_prefetch(reinterpret_cast<const void*>(ahead + 64), 0, 0);
            lanes x, y;
            std::memcpy(&x, p + i, sizeof x);
            std::memcpy(&y, p + i + 8, sizeof y);
            a ^= x;
            b ^= y;
        }
    }
    a ^= b;
    std::uint64_t out = 0;
    for (int i = 0; i < 8; ++i) out ^= a[i];
    return out;
}

/// Bytes read per second by `threads` threads, each reducing its share of a
/// buffer of `bytes` over and over (passes enough for ~256 MiB a round, so
/// starting the threads costs little); the best of 5 rounds after one that
/// warms the caches. Call it before a backend's threads exist.
///
/// A decode step reads its weights and writes little, so its floor is a read
/// rate, and of a buffer its size: the 32 MiB L3 keeps part of a 96 MB
/// working set from one pass to the next (a 96 MB buffer read at 45-68 GB/s
/// here where 256 MiB read at 34-36). A copy (read + write, the STREAM
/// convention) gave ~25 GB/s, a "floor" that batch-1 steps beat by 40%.
double read_bandwidth(std::size_t threads, std::size_t bytes) {
    const std::size_t words = std::max<std::size_t>(bytes / sizeof(std::uint64_t), 16 * threads);
    std::vector<std::uint64_t> buffer(words);
    std::iota(buffer.begin(), buffer.end(), std::uint64_t{1});
    std::vector<std::uint64_t> sink(threads);
    const std::size_t per = words / threads / 16 * 16;
    const std::size_t passes =
        std::max<std::size_t>(1, (std::size_t{256} << 20) / (per * threads * sizeof(std::uint64_t)));
    double best = 0;
    for (int round = 0; round < 6; ++round) {
        const auto start = clock_type::now();
        std::vector<std::thread> pool;
        for (std::size_t t = 0; t < threads; ++t) {
            pool.emplace_back([&, t] {
                sink[t] = xor_passes(buffer.data() + t * per, per, passes);
            });
        }
        for (auto& th : pool) th.join();
        const double secs = std::chrono::duration<double>(clock_type::now() - start).count();
        if (round > 0) {
            best = std::max(best, static_cast<double>(passes * per * threads * sizeof(std::uint64_t)) / secs);
        }
    }
    if (std::accumulate(sink.begin(), sink.end(), std::uint64_t{0}) == 1) std::abort(); // keep the reads observable
    return best;
}

double macs_of(const weight_matrix& x) { return static_cast<double>(x.rows) * static_cast<double>(x.cols); }

/// Multiply-adds per token in the products of a decode step (the matrices
/// step_weight_bytes counts).
double step_macs_per_token(const model& m) {
    double macs = macs_of(m.output);
    for (const layer_weights& w : m.layers) {
        for (const weight_matrix* x : {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down}) macs += macs_of(*x);
    }
    return macs;
}

/// Multiply-adds of a prompt token whose logits nobody asks for: a decode
/// token's, less the output head and the last layer's products other than
/// its K and V (cpu_forward narrows the rest of that layer to the logits
/// rows).
double prompt_macs_per_token(const model& m) {
    double macs = step_macs_per_token(m) - macs_of(m.output);
    if (m.layers.empty()) return macs;
    const layer_weights& last = m.layers.back();
    for (const weight_matrix* x : {&last.wq, &last.wo, &last.w_gate, &last.w_up, &last.w_down}) macs -= macs_of(*x);
    return macs;
}

/// Sequences of the benchmark, each with its own run of blocks.
struct bench_sequence {
    std::vector<token_id> tokens;
    std::vector<block_id> blocks;
    std::size_t computed = 0;
};

struct bench_run {
    std::shared_ptr<const model> m;
    std::unique_ptr<cpu_backend> backend;
    std::size_t block_size = 16;

    bench_run(std::shared_ptr<const model> loaded, std::size_t threads, std::size_t max_seqs, std::size_t max_len,
              ggml_type kv_type, double split_step_us, bool sequence_lanes)
        : m(std::move(loaded)) {
        const std::size_t blocks_per_seq = (max_len + block_size - 1) / block_size;
        backend = std::make_unique<cpu_backend>(
            m, cpu_backend_options{.threads = threads, .kv_blocks = max_seqs * blocks_per_seq, .kv_block_size = block_size, .kv_type = kv_type,
                                    .split_step_us = split_step_us, .sequence_lanes = sequence_lanes});
    }

    std::vector<bench_sequence> make(std::size_t count, std::size_t prompt, std::size_t max_len) {
        const std::size_t per = (max_len + block_size - 1) / block_size;
        std::vector<bench_sequence> seqs(count);
        for (std::size_t i = 0; i < count; ++i) {
            for (std::size_t t = 0; t < prompt; ++t) {
                seqs[i].tokens.push_back(static_cast<token_id>((i * 131 + t * 17 + 1) % m->config().n_vocab));
            }
            for (std::size_t b = 0; b < per; ++b) seqs[i].blocks.push_back(static_cast<block_id>(i * per + b));
        }
        return seqs;
    }

    /// Runs every sequence's remaining prompt as one chunk per sequence and
    /// appends each one's greedy next token.
    double prefill(std::vector<bench_sequence>& seqs) {
        batch b;
        for (std::size_t i = 0; i < seqs.size(); ++i) {
            auto& s = seqs[i];
            b.chunks.push_back({i, s.computed, std::span<const token_id>(s.tokens).subspan(s.computed), s.blocks, true});
        }
        step_output out;
        const auto start = clock_type::now();
        backend->step_sync(b, out);
        const double secs = std::chrono::duration<double>(clock_type::now() - start).count();
        append_greedy(seqs, out);
        return secs;
    }

    /// One decode step over all sequences (each appends its greedy token).
    double decode(std::vector<bench_sequence>& seqs, step_output& out) {
        batch b;
        for (std::size_t i = 0; i < seqs.size(); ++i) {
            auto& s = seqs[i];
            b.chunks.push_back({i, s.computed, std::span<const token_id>(s.tokens).subspan(s.computed, 1), s.blocks, true});
        }
        const auto start = clock_type::now();
        backend->step_sync(b, out);
        const double secs = std::chrono::duration<double>(clock_type::now() - start).count();
        append_greedy(seqs, out);
        return secs;
    }

    static void append_greedy(std::vector<bench_sequence>& seqs, const step_output& out) {
        for (std::size_t i = 0; i < seqs.size(); ++i) {
            const auto row = out.row(i);
            seqs[i].computed = seqs[i].tokens.size();
            seqs[i].tokens.push_back(static_cast<token_id>(std::max_element(row.begin(), row.end()) - row.begin()));
        }
    }
};

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"CPU backend speed against memory bandwidth"};
    std::string size = "small";
    std::vector<std::string> types{"f32", "q8_0"};
    std::size_t threads = 2;
    std::string json_path = "build/bench-model.json";
    std::string cache = "build/bench-models";
    std::size_t steps = 16;
    std::vector<std::size_t> batches{1, 2, 4, 8, 16, 32, 64};
    std::string kv_type_name = "f16";
    double split_step_us = cpu_backend_options{}.split_step_us;
    bool sequence_lanes = cpu_backend_options{}.sequence_lanes;
    std::size_t rounds = 3;
    std::size_t gap_us = 0;
    app.add_option("--size", size)->capture_default_str();
    app.add_option("--types", types)->delimiter(',')->capture_default_str();
    app.add_option("--threads", threads)->capture_default_str();
    app.add_option("--json", json_path)->capture_default_str();
    app.add_option("--cache", cache, "where demo models are written")->capture_default_str();
    app.add_option("--steps", steps, "decode steps per measurement")->capture_default_str();
    app.add_option("--batches", batches, "decode batch sizes (the first is the reference)")->delimiter(',');
    app.add_option("--rounds", rounds, "rounds over the batch sizes (medians over all)")->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--split-step-us", split_step_us,
                   "steps estimated below this on one thread run unsplit (cpu_backend_options::split_step_us)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    app.add_flag("--sequence-lanes,!--no-sequence-lanes", sequence_lanes,
                 "split steps of many sequences by sequences (cpu_backend_options::sequence_lanes)")
        ->capture_default_str();
    app.add_option("--gap-us", gap_us, "idle microseconds before each timed decode step")
        ->capture_default_str();
    app.add_option("--kv-type", kv_type_name, "KV cache element type: f16 (the backend's default) or f32")
        ->capture_default_str()->check(CLI::IsMember({"f16", "f32"}));
    CLI11_PARSE(app, argc, argv);
    const ggml_type kv_type = parse_weight_type(kv_type_name); // f16 or f32 (checked by the option)

    nlohmann::json report;
    const double bandwidth = read_bandwidth(threads, std::size_t{256} << 20);
    fmt::print("memory bandwidth (read, {} threads, 256 MiB): {:.1f} GB/s\n", threads, bandwidth / 1e9);
    report["threads"] = threads;
    report["bandwidth_gb_s"] = bandwidth / 1e9;
    report["model"] = size;
    report["kv_type"] = kv_type_name;
    report["split_step_us"] = split_step_us;
    report["sequence_lanes"] = sequence_lanes;
    report["rounds"] = rounds;
    report["steps_per_round"] = steps;
    report["gap_us"] = gap_us;
    const weft::bench::compute_peak peak = weft::bench::measure_compute_peak(threads);
    fmt::print("arithmetic peak ({} threads): {:.0f} G float multiply-adds/s ({}), {:.0f} G int8 multiply-adds/s ({})\n",
               threads, peak.f32_macs_per_s / 1e9, peak.f32_isa, peak.int8_macs_per_s / 1e9, peak.int8_isa);
    report["f32_gmacs_per_s"] = peak.f32_macs_per_s / 1e9;
    report["f32_isa"] = peak.f32_isa;
    report["int8_gmacs_per_s"] = peak.int8_macs_per_s / 1e9;
    report["int8_isa"] = peak.int8_isa;

    for (const std::string& type_name : types) {
        const ggml_type type = parse_weight_type(type_name);
        const auto path = ensure_demo_model(size, type, cache);
        const std::size_t context = 64;
        const std::size_t max_batch = *std::max_element(batches.begin(), batches.end());
        // The floor: the bytes of the step's weights read over and over, as
        // steps read them (measured before the backend's threads start).
        std::shared_ptr<const model> loaded = model::load(path);
        const std::size_t step_bytes = loaded->step_weight_bytes();
        const double weight_bandwidth = read_bandwidth(threads, step_bytes);
        bench_run run(std::move(loaded), threads, max_batch + 1, 600, kv_type, split_step_us, sequence_lanes);
        const auto weight_bytes = static_cast<double>(step_bytes);
        const double floor_s = weight_bytes / weight_bandwidth;
        // Float weights multiply float activations; quantized ones, int8
        // activations (when the CPU has an int8 path at all).
        const bool int8 = vec_dot_type(type) != ggml_type::f32 && peak.int8_macs_per_s > 0;
        const double macs_per_s = int8 ? peak.int8_macs_per_s : peak.f32_macs_per_s;
        const double macs_per_token = step_macs_per_token(*run.m);
        // The least time a step of `batch` sequences can take here.
        auto floor_of = [&](std::size_t batch) {
            return std::max(floor_s, static_cast<double>(batch) * macs_per_token / macs_per_s);
        };
        nlohmann::json t;
        t["weight_bytes"] = weight_bytes;
        t["weight_read_gb_s"] = weight_bandwidth / 1e9;
        t["floor_ms"] = floor_s * 1e3;
        t["macs_per_token"] = macs_per_token;
        t["prompt_macs_per_token"] = prompt_macs_per_token(*run.m);
        t["arithmetic"] = int8 ? "int8" : "f32";
        fmt::print("\n{} {} ({} KV cache): {:.1f} MB of weights per step, read again and again at {:.1f} GB/s: "
                   "floor {:.2f} ms\n",
                   size, type_name, kv_type_name, weight_bytes / 1e6, weight_bandwidth / 1e9, floor_s * 1e3);

        // Decode throughput at each batch size (batch 1 doubles as the step
        // time). The batch sizes take turns over `rounds` rounds, so a slow
        // spell of a shared machine falls on all of them rather than on one;
        // each figure is the median over its rounds' steps.
        std::vector<std::vector<double>> times(batches.size());
        for (std::size_t round = 0; round < rounds; ++round) {
            for (std::size_t i = 0; i < batches.size(); ++i) {
                auto seqs = run.make(batches[i], context, 600);
                run.prefill(seqs);
                step_output out;
                run.decode(seqs, out); // warm-up
                for (std::size_t s = 0; s < steps; ++s) {
                    if (gap_us != 0) std::this_thread::sleep_for(std::chrono::microseconds(gap_us));
                    times[i].push_back(run.decode(seqs, out));
                }
            }
        }
        fmt::print("{:>6} {:>10} {:>10} {:>9} {:>10} {:>9}\n", "batch", "step ms", "tokens/s", "x batch1", "floor ms",
                   "of floor");
        double batch1 = 0;
        double batch1_step = 0;
        nlohmann::json rows = nlohmann::json::array();
        for (std::size_t i = 0; i < batches.size(); ++i) {
            const std::size_t bsz = batches[i];
            const double step = median(times[i]);
            const double tps = static_cast<double>(bsz) / step;
            if (batch1 == 0) {
                batch1 = tps;
                batch1_step = step;
            }
            const double floor = floor_of(bsz);
            fmt::print("{:>6} {:>10.2f} {:>10.0f} {:>8.2f}x {:>10.2f} {:>8.0f}%\n", bsz, step * 1e3, tps, tps / batch1,
                       floor * 1e3, 100.0 * floor / step);
            rows.push_back({{"batch", bsz}, {"step_ms", step * 1e3}, {"tokens_per_s", tps}, {"speedup", tps / batch1},
                            {"floor_ms", floor * 1e3}, {"fraction_of_floor", floor / step}});
            if (bsz == 1) {
                t["decode_step_ms"] = step * 1e3;
                t["fraction_of_floor"] = floor_s / step;
                fmt::print("       batch-1 step is {:.0f}% of the bandwidth floor's speed\n", 100.0 * floor_s / step);
            }
        }
        t["decode"] = rows;
        // Batch 32 against the reference batch as measured, if batch 32
        // reached its floor.
        const double ceiling = 32.0 * batch1_step / floor_of(32);
        t["batch32_ceiling_speedup"] = ceiling;
        fmt::print("       at its floor, batch 32 would give {:.2f}x the reference batch's tokens/s\n", ceiling);

        // Prefill of one 512-token prompt.
        std::vector<double> prefill_times;
        for (int r = 0; r < 3; ++r) {
            auto seqs = run.make(1, 512, 600);
            prefill_times.push_back(run.prefill(seqs));
        }
        const double pf = 512.0 / median(prefill_times);
        fmt::print("prefill, 512-token prompt: {:.0f} tokens/s\n", pf);
        t["prefill_tokens_per_s"] = pf;
        report["types"][type_name] = t;
    }
    std::ofstream(json_path) << report.dump(2) << "\n";
    fmt::print("\nwrote {}\n", json_path);
    return 0;
}
