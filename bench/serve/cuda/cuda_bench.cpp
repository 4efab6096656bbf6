// weft-cuda-bench: the CUDA backend's speed against the GPU's memory
// bandwidth, measured in the same run.
//
//   weft-cuda-bench --model weft-demo-1b-bf16.gguf [--batches 1,2,4,...,256] [--json out.json]
//
// 1. Device-to-device copy bandwidth: cudaMemcpyAsync of a 1 GiB buffer,
//    bytes read + written per second (the STREAM "copy" convention, as
//    weft-model-bench on the CPU), best of several rounds.
// 2. Decode step time at batch 1 against the bandwidth floor (the device
//    bytes of every weight matrix a step reads / copy bandwidth). Goal: the
//    step runs at >= 70% of the floor's speed.
// 3. Decode tokens/s at each batch size: every sequence with a 64-token
//    prompt, greedy tokens chosen on the device (step_argmax), and at batch
//    1 and 64 also with the full logits copied back (step).
// 4. Prefill tokens/s for one 512-token prompt.
// 5. Sanity: greedy tokens of a fixed prompt (for the PyTorch peer to compare)
//    and, with --check-f32, how many greedy tokens BF16 keeps in step with
//    F32 precision on the device.
// Times are wall-clock medians (host work, graph launch and copies
// included: what the engine sees).
#include <weft/serve/cuda_backend.hpp>
#include <weft/serve/model.hpp>

#include <CLI/CLI.hpp>
#include <cuda_runtime_api.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <vector>

namespace {

using namespace weft::serve;
using clock_type = std::chrono::steady_clock;

void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw std::runtime_error(fmt::format("{}: {}", what, cudaGetErrorString(e)));
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

double seconds_since(clock_type::time_point start) {
    return std::chrono::duration<double>(clock_type::now() - start).count();
}

/// Bytes read + written per second by device-to-device copies of `bytes`.
double copy_bandwidth(int device, std::size_t bytes) {
    check(cudaSetDevice(device), "cudaSetDevice");
    void* src = nullptr;
    void* dst = nullptr;
    check(cudaMalloc(&src, bytes), "cudaMalloc");
    check(cudaMalloc(&dst, bytes), "cudaMalloc");
    check(cudaMemset(src, 1, bytes), "cudaMemset");
    cudaStream_t s = nullptr;
    cudaEvent_t begin = nullptr, end = nullptr;
    check(cudaStreamCreate(&s), "cudaStreamCreate");
    check(cudaEventCreate(&begin), "cudaEventCreate");
    check(cudaEventCreate(&end), "cudaEventCreate");
    double best = 0;
    for (int round = 0; round < 8; ++round) {
        constexpr int copies = 5;
        check(cudaEventRecord(begin, s), "cudaEventRecord");
        for (int i = 0; i < copies; ++i) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s), "copy");
        check(cudaEventRecord(end, s), "cudaEventRecord");
        check(cudaEventSynchronize(end), "cudaEventSynchronize");
        float ms = 0;
        check(cudaEventElapsedTime(&ms, begin, end), "cudaEventElapsedTime");
        if (round > 0) best = std::max(best, 2.0 * copies * static_cast<double>(bytes) / (ms * 1e-3));
    }
    cudaEventDestroy(begin);
    cudaEventDestroy(end);
    cudaStreamDestroy(s);
    cudaFree(src);
    cudaFree(dst);
    return best;
}

struct sequence {
    std::vector<token_id> tokens;
    std::vector<block_id> blocks;
    std::size_t computed = 0;
};

/// The prompt token t of sequence i; the PyTorch peer uses the same formula.
token_id prompt_token(std::size_t i, std::size_t t, std::size_t vocab) {
    return static_cast<token_id>((i * 131 + t * 17 + 1) % vocab);
}

class runner {
public:
    runner(cuda_backend& b, std::size_t block_size) : m_backend(b), m_block_size(block_size) {}

    std::vector<sequence> make(std::size_t count, std::size_t prompt, std::size_t max_len) const {
        const std::size_t per = (max_len + m_block_size - 1) / m_block_size;
        if (count * per > m_backend.num_kv_blocks()) throw std::runtime_error("benchmark needs more KV blocks");
        const std::size_t vocab = m_backend.config().n_vocab;
        std::vector<sequence> seqs(count);
        for (std::size_t i = 0; i < count; ++i) {
            for (std::size_t t = 0; t < prompt; ++t) seqs[i].tokens.push_back(prompt_token(i, t, vocab));
            for (std::size_t b = 0; b < per; ++b) seqs[i].blocks.push_back(static_cast<block_id>(i * per + b));
        }
        return seqs;
    }

    /// Prefills every prompt, at most `max_tokens` tokens per step, and
    /// appends each sequence's greedy token. Returns the seconds taken.
    double prefill(std::vector<sequence>& seqs, std::size_t max_tokens = 512) {
        const auto start = clock_type::now();
        std::size_t next = 0;
        while (next < seqs.size()) {
            batch b;
            std::size_t tokens = 0;
            const std::size_t first = next;
            while (next < seqs.size() && (tokens == 0 || tokens + seqs[next].tokens.size() <= max_tokens)) {
                sequence& s = seqs[next];
                b.chunks.push_back({next, 0, s.tokens, s.blocks, true});
                tokens += s.tokens.size();
                ++next;
            }
            std::vector<token_id> greedy;
            m_backend.step_argmax_sync(b, greedy);
            for (std::size_t k = 0; k < greedy.size(); ++k) {
                sequence& s = seqs[first + k];
                s.computed = s.tokens.size();
                s.tokens.push_back(greedy[k]);
            }
        }
        return seconds_since(start);
    }

    /// One decode step over all sequences; each appends its greedy token,
    /// chosen on the device or, with `logits`, on the host from the logits.
    double decode(std::vector<sequence>& seqs, bool logits) {
        batch b;
        for (std::size_t i = 0; i < seqs.size(); ++i) {
            sequence& s = seqs[i];
            b.chunks.push_back({i, s.computed, std::span<const token_id>(s.tokens).subspan(s.computed, 1), s.blocks, true});
        }
        std::vector<token_id> greedy;
        const auto start = clock_type::now();
        if (logits) {
            m_backend.step_sync(b, m_out);
            greedy.resize(seqs.size());
            for (std::size_t i = 0; i < seqs.size(); ++i) {
                const auto row = m_out.row(i);
                greedy[i] = static_cast<token_id>(std::max_element(row.begin(), row.end()) - row.begin());
            }
        } else {
            m_backend.step_argmax_sync(b, greedy);
        }
        const double secs = seconds_since(start);
        for (std::size_t i = 0; i < seqs.size(); ++i) {
            seqs[i].computed = seqs[i].tokens.size();
            seqs[i].tokens.push_back(greedy[i]);
        }
        return secs;
    }

private:
    cuda_backend& m_backend;
    std::size_t m_block_size;
    step_output m_out;
};

/// Greedy continuation of sequence 0's prompt.
std::vector<token_id> greedy_tokens(cuda_backend& backend, std::size_t prompt, std::size_t count) {
    runner r(backend, backend.kv_block_size());
    auto seqs = r.make(1, prompt, prompt + count + 1);
    r.prefill(seqs);
    while (seqs[0].tokens.size() < prompt + count) r.decode(seqs, false);
    return {seqs[0].tokens.begin() + static_cast<std::ptrdiff_t>(prompt), seqs[0].tokens.end()};
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"CUDA backend speed against the GPU's copy bandwidth"};
    std::string model_path;
    std::string json_path = "build/bench-cuda.json";
    std::vector<std::size_t> batches{1, 2, 4, 8, 16, 32, 64, 128, 256};
    std::size_t steps = 32;
    std::size_t context = 64;
    int device = 0;
    bool check_f32 = false;
    app.add_option("-m,--model", model_path, "GGUF model (e.g. weft-mkmodel --size 1b --type bf16)")->required();
    app.add_option("--json", json_path)->capture_default_str();
    app.add_option("--batches", batches)->delimiter(',')->capture_default_str();
    app.add_option("--steps", steps, "timed decode steps per batch size")->capture_default_str();
    app.add_option("--context", context, "prompt tokens per sequence")->capture_default_str();
    app.add_option("--device", device)->capture_default_str();
    app.add_flag("--check-f32", check_f32, "also load the model in f32 precision and compare greedy tokens");
    CLI11_PARSE(app, argc, argv);

    try {
        nlohmann::json report;
        fmt::print("{}\n", cuda_describe_devices());
        report["devices"] = cuda_describe_devices();

        const double bandwidth = copy_bandwidth(device, std::size_t{1} << 30);
        fmt::print("device copy bandwidth (read + write): {:.0f} GB/s\n", bandwidth / 1e9);
        report["copy_bandwidth_gb_s"] = bandwidth / 1e9;

        const auto load_start = clock_type::now();
        const auto m = model::load(model_path);
        const std::size_t max_batch = *std::max_element(batches.begin(), batches.end());
        const std::size_t max_len = std::max<std::size_t>(context + steps + 8, 512 + 8);
        cuda_backend_options o;
        o.device = device;
        o.kv_block_size = 16;
        o.kv_blocks = std::max<std::size_t>(max_batch, 1) * ((max_len + 15) / 16);
        cuda_backend backend(m, o);
        const double load_s = seconds_since(load_start);
        fmt::print("{}\nloaded {} in {:.1f} s\n", backend.describe(), model_path, load_s);
        report["model"] = model_path;
        report["backend"] = backend.describe();
        report["load_s"] = load_s;

        const double weight_bytes = static_cast<double>(backend.step_weight_bytes());
        const double floor_s = weight_bytes / bandwidth;
        report["weight_bytes"] = weight_bytes;
        report["floor_ms"] = floor_s * 1e3;
        fmt::print("{:.1f} MB of weights per decode step: floor {:.3f} ms\n", weight_bytes / 1e6, floor_s * 1e3);

        runner run(backend, o.kv_block_size);
        nlohmann::json rows = nlohmann::json::array();
        double batch1 = 0;
        fmt::print("{:>6} {:>10} {:>10} {:>9} {:>12}\n", "batch", "step ms", "tokens/s", "x batch1", "logits tok/s");
        for (std::size_t bsz : batches) {
            auto seqs = run.make(bsz, context, max_len);
            run.prefill(seqs);
            for (int w = 0; w < 3; ++w) run.decode(seqs, false); // graph capture, warm-up
            std::vector<double> times;
            for (std::size_t s = 0; s < steps; ++s) times.push_back(run.decode(seqs, false));
            const double step = median(times);
            const double tps = static_cast<double>(bsz) / step;
            if (bsz == 1) batch1 = tps;
            nlohmann::json row = {{"batch", bsz}, {"step_ms", step * 1e3}, {"tokens_per_s", tps}};
            double logits_tps = 0;
            if (bsz == 1 || bsz == 64) {
                std::vector<double> lt;
                for (std::size_t s = 0; s < std::min<std::size_t>(steps, 8); ++s) lt.push_back(run.decode(seqs, true));
                logits_tps = static_cast<double>(bsz) / median(lt);
                row["tokens_per_s_with_logits"] = logits_tps;
            }
            fmt::print("{:>6} {:>10.3f} {:>10.0f} {:>8.2f}x {:>12}\n", bsz, step * 1e3, tps,
                       batch1 > 0 ? tps / batch1 : 0.0, logits_tps > 0 ? fmt::format("{:.0f}", logits_tps) : "");
            if (bsz == 1) {
                report["decode_step_ms"] = step * 1e3;
                report["fraction_of_floor"] = floor_s / step;
                fmt::print("       batch-1 step runs at {:.0f}% of the bandwidth floor's speed (goal >= 70%)\n",
                           100.0 * floor_s / step);
            }
            rows.push_back(row);
        }
        report["decode"] = rows;
        report["graphs_captured"] = backend.graphs_captured();

        std::vector<double> prefill_times;
        for (int r = 0; r < 3; ++r) {
            auto seqs = run.make(1, 512, max_len);
            prefill_times.push_back(run.prefill(seqs));
        }
        const double prefill = median(prefill_times);
        report["prefill_512_ms"] = prefill * 1e3;
        report["prefill_tokens_per_s"] = 512.0 / prefill;
        fmt::print("prefill of 512 tokens: {:.2f} ms ({:.0f} tokens/s)\n", prefill * 1e3, 512.0 / prefill);

        const std::vector<token_id> greedy = greedy_tokens(backend, context, 32);
        report["greedy_prompt_formula"] = "(i * 131 + t * 17 + 1) % vocab, sequence i = 0";
        report["greedy_tokens"] = greedy;
        if (check_f32) {
            cuda_backend_options f = o;
            f.precision = cuda_precision::f32;
            f.kv_blocks = 64;
            f.graph_batch_sizes = {1};
            cuda_backend exact(m, f);
            const std::vector<token_id> want = greedy_tokens(exact, context, 32);
            std::size_t same = 0;
            while (same < want.size() && want[same] == greedy[same]) ++same;
            report["greedy_tokens_f32"] = want;
            report["bf16_greedy_agreement_with_f32"] = same;
            fmt::print("bf16 greedy tokens agree with f32 for the first {} of {}\n", same, want.size());
        }

        std::ofstream(json_path) << report.dump(2) << "\n";
        fmt::print("wrote {}\n", json_path);
        return 0;
    } catch (const std::exception& e) {
        fmt::print(stderr, "weft-cuda-bench: {}\n", e.what());
        return 1;
    }
}
