// Throughput of the CPU matmul kernels, one thread (or --threads N splitting
// the rows): for each weight type and isa, batch-1 weight streaming in GB/s
// (weights hot in cache, and cold: cycling through --cold-mb MiB of copies,
// by default 512, more than the caches, next to a plain sequential read of
// the same copies: "stream") and
// batch-32 GFLOP/s (hot and cold; with "p" after the isa, the weights in
// the layout the model packs them in at load: Q8_0 prepacked for AVX-512,
// F32 in row panels), plus the batch-32 / batch-1 (hot) tokens-per-second
// ratio. Activation preparation is timed separately (ns per row).
//
// With one thread the times are the thread's CPU time, so that a shared,
// busy machine still gives usable numbers; with more, wall-clock time.
//
// Usage: weft_bench_serve_kernels [--threads N] [--types f32,q8_0,...] [--shapes 512x1408,1408x512]
//        [--seconds S] [--cold-mb M]
#include "kernels/matmul.hpp"
#include "kernels/packed_f32.hpp"

#include <weft/serve/quant.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <time.h>

using namespace weft::serve;
namespace k = weft::serve::kernels;
using clock_type = std::chrono::steady_clock;

namespace {

struct options {
    int threads = 1;
    double seconds = 0.3;
    /// MiB of weight copies the cold columns cycle through: more than the
    /// last-level cache by default; less (--cold-mb 48, 96) shows how much
    /// of that cache this process gets on a shared machine.
    std::size_t cold_mb = 512;
    std::vector<ggml_type> types{ggml_type::f32,  ggml_type::f16,  ggml_type::bf16, ggml_type::q8_0,
                                 ggml_type::q4_0, ggml_type::q4_k, ggml_type::q6_k};
    std::vector<std::pair<std::size_t, std::size_t>> shapes{{512, 1408}, {1408, 512}}; // K x N
};

std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> out;
    while (!s.empty()) {
        const auto pos = s.find(sep);
        out.push_back(s.substr(0, pos));
        s = pos == std::string_view::npos ? std::string_view{} : s.substr(pos + 1);
    }
    return out;
}

ggml_type parse_type(std::string_view name) {
    for (ggml_type t : {ggml_type::f32, ggml_type::f16, ggml_type::bf16, ggml_type::q8_0, ggml_type::q4_0,
                        ggml_type::q4_k, ggml_type::q6_k}) {
        if (type_info(t).name == name) {
            return t;
        }
    }
    std::fprintf(stderr, "unknown type %.*s\n", static_cast<int>(name.size()), name.data());
    std::exit(2);
}

options parse(int argc, char** argv) {
    options o;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string_view flag = argv[i];
        const std::string_view value = argv[i + 1];
        if (flag == "--threads") {
            o.threads = std::max(1, std::atoi(argv[i + 1]));
        } else if (flag == "--seconds") {
            o.seconds = std::atof(argv[i + 1]);
        } else if (flag == "--cold-mb") {
            o.cold_mb = std::max<std::size_t>(1, std::stoul(std::string(value)));
        } else if (flag == "--types") {
            o.types.clear();
            for (auto name : split(value, ',')) {
                o.types.push_back(parse_type(name));
            }
        } else if (flag == "--shapes") {
            o.shapes.clear();
            for (auto shape : split(value, ',')) {
                const auto parts = split(shape, 'x');
                o.shapes.emplace_back(std::stoul(std::string(parts.at(0))), std::stoul(std::string(parts.at(1))));
            }
        } else {
            std::fprintf(stderr, "unknown option %s\n", argv[i]);
            std::exit(2);
        }
    }
    return o;
}

bool use_cpu_time = true;

double now() {
    if (use_cpu_time) {
        timespec ts{};
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
    }
    return std::chrono::duration<double>(clock_type::now().time_since_epoch()).count();
}

/// Seconds per call of `fn`, the best of 5 rounds of ~seconds/5 each.
template <class Fn>
double time_per_call(Fn&& fn, double seconds) {
    fn(0); // warm up
    double best = 1e30;
    std::size_t calls = 1;
    std::size_t counter = 1;
    for (int round = 0; round < 5; ++round) {
        for (;;) {
            const double start = now();
            for (std::size_t i = 0; i < calls; ++i) {
                fn(counter++);
            }
            const double elapsed = now() - start;
            if (elapsed >= seconds / 5 || calls > (std::size_t{1} << 30)) {
                best = std::min(best, elapsed / static_cast<double>(calls));
                break;
            }
            calls *= 2;
        }
    }
    return best;
}

/// Reads `n` bytes (a multiple of 32) as a plain sequential stream: the
/// memory bandwidth the cold columns compare with.
std::uint64_t stream_read(const std::byte* p, std::size_t n) {
    std::uint64_t a = 0;
    std::uint64_t b = 0;
    std::uint64_t c = 0;
    std::uint64_t d = 0;
    for (std::size_t i = 0; i < n; i += 32) {
        std::uint64_t v[4];
        std::memcpy(v, p + i, sizeof v);
        a += v[0];
        b += v[1];
        c += v[2];
        d += v[3];
    }
    return a + b + c + d;
}

/// How the weights are laid out: plain rows (matmul), Q8_0 rows prepacked
/// at load (matmul_prepacked_q8_0), or F32 rows in panels (packed_f32), the
/// last two as the model runs them.
enum class layout { plain, q8_prepacked, f32_panels };

/// One matmul call over rows [begin, end); `w` is the weight bytes, or a
/// packed_f32 for f32_panels.
void call(layout l, ggml_type t, const void* w, std::size_t begin, std::size_t end, const k::activations& x,
          float* y, std::size_t n) {
    switch (l) {
    case layout::plain: k::matmul(t, static_cast<const std::byte*>(w), begin, end, x, y, n); break;
    case layout::q8_prepacked:
        k::matmul_prepacked_q8_0(static_cast<const std::byte*>(w), x.k, begin, end, x, y, n);
        break;
    case layout::f32_panels:
        static_cast<const k::packed_f32*>(w)->multiply(reinterpret_cast<const float*>(x.data),
                                                       x.row_bytes / sizeof(float), x.rows, begin, end, y, n);
        break;
    }
}

/// Runs matmul over rows [0, n) split between `threads` threads (in
/// multiples of 32 rows, whole panels).
void run(int threads, layout l, ggml_type t, const void* w, std::size_t n, const k::activations& x, float* y) {
    if (threads == 1) {
        call(l, t, w, 0, n, x, y, n);
        return;
    }
    std::vector<std::thread> pool;
    const std::size_t per = (n + static_cast<std::size_t>(threads) - 1) / static_cast<std::size_t>(threads);
    const std::size_t chunk = (per + 31) / 32 * 32;
    for (int i = 0; i < threads; ++i) {
        const std::size_t begin = std::min(n, chunk * static_cast<std::size_t>(i));
        const std::size_t end = std::min(n, begin + chunk);
        pool.emplace_back([=] { call(l, t, w, begin, end, x, y, n); });
    }
    for (auto& th : pool) {
        th.join();
    }
}

} // namespace

int main(int argc, char** argv) {
    const options opt = parse(argc, argv);
    use_cpu_time = opt.threads == 1;
    std::mt19937 rng(1);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<k::isa> isas{k::isa::scalar};
    if (k::best_isa() >= k::isa::avx2) {
        isas.push_back(k::isa::avx2);
    }
    if (k::best_isa() >= k::isa::avx512) {
        isas.push_back(k::isa::avx512);
    }
    std::printf("threads %d (%s time), best isa %s\n", opt.threads, use_cpu_time ? "cpu" : "wall",
                k::isa_name(k::best_isa()));
    std::printf("%-6s %-7s %11s %9s %9s %9s %10s %10s %9s %8s\n", "type", "isa", "KxN", "hot GB/s", "cold GB/s",
                "stream", "b32 GFLOP", "cold b32", "b32/b1", "prep ns");
    for (const auto& [kk, n] : opt.shapes) {
        const std::size_t batch = 32;
        std::vector<float> xf(batch * kk);
        for (float& f : xf) {
            f = dist(rng);
        }
        for (ggml_type t : opt.types) {
            if (kk % type_info(t).block_size != 0) {
                continue;
            }
            const std::size_t rb = row_bytes(t, kk);
            std::vector<std::byte> w(rb * n);
            std::vector<float> row(kk);
            for (std::size_t r = 0; r < n; ++r) {
                for (float& f : row) {
                    f = dist(rng);
                }
                quantize_row(t, row.data(), w.data() + r * rb, kk);
            }
            // The paths to time: each isa on the plain rows, and the layouts
            // the model packs at load: Q8_0 prepacked on avx512 ("avx512p"),
            // F32 in panels on avx2 and avx512 ("avx2p", "avx512p").
            struct path_case {
                k::isa path;
                layout l;
            };
            std::vector<path_case> cases;
            for (k::isa path : isas) {
                cases.push_back({path, layout::plain});
            }
            if (t == ggml_type::q8_0 && k::best_isa() >= k::isa::avx512) {
                cases.push_back({k::isa::avx512, layout::q8_prepacked});
            }
            if (t == ggml_type::f32) {
                for (k::isa path : isas) {
                    if (path != k::isa::scalar) cases.push_back({path, layout::f32_panels});
                }
            }
            std::vector<float> y(batch * n);
            for (const path_case& c : cases) {
                k::set_isa(c.path);
                // Cold: enough copies to overflow the last-level cache
                // (--cold-mb of them).
                std::vector<const void*> copy_ptrs;
                std::vector<std::byte> packed;
                std::vector<std::byte> cold;
                std::vector<k::packed_f32> panels;
                std::size_t bytes = w.size();
                // How many copies of `size` bytes make --cold-mb.
                auto cold_copies = [&](std::size_t size) {
                    return std::max<std::size_t>(2, (opt.cold_mb << 20) / size);
                };
                if (c.l == layout::f32_panels) {
                    bytes = k::packed_f32(reinterpret_cast<const float*>(w.data()), n, kk, kk).bytes();
                    const std::size_t copies = cold_copies(bytes);
                    panels.reserve(copies + 1);
                    for (std::size_t i = 0; i <= copies; ++i) {
                        panels.emplace_back(reinterpret_cast<const float*>(w.data()), n, kk, kk);
                    }
                    for (const auto& p : panels) copy_ptrs.push_back(&p);
                } else {
                    const std::byte* weights = w.data();
                    if (c.l == layout::q8_prepacked) {
                        packed.resize(k::q8_0_prepacked_bytes(n, kk));
                        k::prepack_q8_0(w.data(), n, kk, packed.data());
                        weights = packed.data();
                        bytes = packed.size();
                    }
                    const std::size_t copies = cold_copies(bytes);
                    cold.resize(copies * bytes);
                    copy_ptrs.push_back(weights);
                    for (std::size_t i = 0; i < copies; ++i) {
                        std::memcpy(cold.data() + i * bytes, weights, bytes);
                        copy_ptrs.push_back(cold.data() + i * bytes);
                    }
                }
                // copy_ptrs[0]: the hot weights; the others cycle cold.
                const std::size_t copies = copy_ptrs.size() - 1;
                const double s = c.path == k::isa::scalar ? opt.seconds / 4 : opt.seconds;
                std::vector<std::byte> buf1;
                std::vector<std::byte> buf32;
                const auto x1 = k::prepare_activations(t, xf.data(), kk, 1, kk, buf1);
                const auto x32 = k::prepare_activations(t, xf.data(), kk, batch, kk, buf32);
                // One call on the weights, or on a copy cycling through `cold`.
                auto on = [&](const k::activations& x, bool from_cold) {
                    return [&, from_cold](std::size_t i) {
                        const void* src = from_cold ? copy_ptrs[1 + i % copies] : copy_ptrs[0];
                        run(opt.threads, c.l, t, src, n, x, y.data());
                    };
                };
                const double hot = time_per_call(on(x1, false), s);
                const double cold_s = time_per_call(on(x1, true), s);
                std::uint64_t sink = 0;
                const double stream = time_per_call(
                    [&](std::size_t i) {
                        const auto* src = static_cast<const std::byte*>(copy_ptrs[1 + i % copies]);
                        if (c.l == layout::f32_panels) {
                            src = reinterpret_cast<const std::byte*>(
                                static_cast<const k::packed_f32*>(copy_ptrs[1 + i % copies])->panel_data());
                        }
                        sink += stream_read(src, bytes);
                    },
                    s / 2);
                const double b32 = time_per_call(on(x32, false), s);
                const double b32_cold = time_per_call(on(x32, true), s);
                std::vector<std::byte> scratch;
                const double prep = time_per_call(
                    [&](std::size_t) { (void)k::prepare_activations(t, xf.data(), kk, batch, kk, scratch); }, s / 4);
                char shape[32];
                std::snprintf(shape, sizeof shape, "%zux%zu", kk, n);
                char isa[16];
                std::snprintf(isa, sizeof isa, "%s%s", k::isa_name(c.path), c.l == layout::plain ? "" : "p");
                const double flop = 2.0 * double(n) * double(kk) * double(batch);
                std::printf("%-6s %-7s %11s %9.1f %9.1f %9.1f %10.1f %10.1f %9.2f %8.0f%s\n", type_info(t).name.data(),
                            isa, shape, double(bytes) / hot * 1e-9, double(bytes) / cold_s * 1e-9,
                            double(bytes) / stream * 1e-9, flop / b32 * 1e-9, flop / b32_cold * 1e-9,
                            hot * double(batch) / b32, prep / double(batch) * 1e9, sink == 1 ? " " : "");
                std::fflush(stdout);
            }
        }
    }
    k::set_isa(k::best_isa());
    return 0;
}
