// Comparison 1: create + await + destroy a chain of nested tasks 1000 deep.
//
// `chain(d)` awaits `chain(d - 1)` down to 0, so one run creates, starts,
// completes and destroys 1001 frames (plus the driver's own frame). Reported
// per frame: ns_per_frame (CPU time of the benchmark thread / frames; the
// work is single-threaded and never blocks, so this is the wall time minus
// preemption by other load), wall_ns_per_frame (wall time / frames) and
// allocs_per_frame (global operator new calls / frames, counted on the
// benchmark thread).
//
// - weft_default:   weft::task<int>, frames from ::operator new.
// - weft_recycling: the same with frame_allocator::enable_recycling(true)
//                   (switched off again when the benchmark ends).
// - asio_awaitable: asio::awaitable<int> doing the same chain, started with
//                   co_spawn on a reused io_context and run to completion
//                   (co_spawn + io_context::run add one frame and a posted
//                   completion per chain, about 0.1% of the work).

#include <weft/frame_allocator.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/use_awaitable.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <exception>

#include <time.h>

namespace weft_bench {
std::uint64_t thread_allocations() noexcept;
}

namespace {

double thread_cpu_ns() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

constexpr int chain_depth = 1000;
constexpr double frames_per_chain = chain_depth + 1;

weft::task<int> chain(int depth) {
    if (depth == 0) {
        co_return 0;
    }
    co_return 1 + co_await chain(depth - 1);
}

asio::awaitable<int> asio_chain(int depth) {
    if (depth == 0) {
        co_return 0;
    }
    co_return 1 + co_await asio_chain(depth - 1);
}

/// Runs `body` once per benchmark iteration and sets the per-frame counters.
/// `count_allocs`: report allocs_per_frame (only ::operator new is counted).
template <class Body>
void per_frame_loop(benchmark::State& state, bool count_allocs, Body body) {
    body(); // warm-up: fills any frame cache, touches the memory
    const std::uint64_t allocs0 = weft_bench::thread_allocations();
    const double cpu0 = thread_cpu_ns();
    const auto t0 = std::chrono::steady_clock::now();
    for (auto _ : state) {
        body();
    }
    const auto t1 = std::chrono::steady_clock::now();
    const double cpu1 = thread_cpu_ns();
    const std::uint64_t allocs1 = weft_bench::thread_allocations();
    const double frames = static_cast<double>(state.iterations()) * frames_per_chain;
    state.counters["ns_per_frame"] = (cpu1 - cpu0) / frames;
    state.counters["wall_ns_per_frame"] =
        std::chrono::duration<double, std::nano>(t1 - t0).count() / frames;
    if (count_allocs) {
        state.counters["allocs_per_frame"] = static_cast<double>(allocs1 - allocs0) / frames;
    }
}

void weft_chain(benchmark::State& state, bool recycling) {
    weft::frame_allocator::enable_recycling(recycling);
    per_frame_loop(state, true, [] {
        int r = weft::sync_wait(chain(chain_depth));
        benchmark::DoNotOptimize(r);
    });
    weft::frame_allocator::enable_recycling(false);
    if (state.iterations() > 0 && weft::sync_wait(chain(chain_depth)) != chain_depth) {
        state.SkipWithError("wrong chain result");
    }
}

void BM_chain_weft_default(benchmark::State& state) { weft_chain(state, false); }
void BM_chain_weft_recycling(benchmark::State& state) { weft_chain(state, true); }

void BM_chain_asio(benchmark::State& state) {
    asio::io_context ctx(1);
    int result = 0;
    auto once = [&] {
        asio::co_spawn(ctx, asio_chain(chain_depth), [&result](std::exception_ptr e, int v) {
            if (e) {
                std::rethrow_exception(e);
            }
            result = v;
        });
        ctx.run();
        ctx.restart();
        benchmark::DoNotOptimize(result);
    };
    // asio allocates its frames with std::aligned_alloc (through a per-thread
    // cache of 2 blocks), which the operator new counter cannot see.
    per_frame_loop(state, false, once);
    if (result != chain_depth) {
        state.SkipWithError("wrong chain result");
    }
}

// Repetitions: the table uses the median of 3 runs.
BENCHMARK(BM_chain_weft_default)
    ->Name("chain1000/weft_default")
    ->MinTime(0.3)
    ->Repetitions(3)
    ->DisplayAggregatesOnly(true);
BENCHMARK(BM_chain_weft_recycling)
    ->Name("chain1000/weft_recycling")
    ->MinTime(0.3)
    ->Repetitions(3)
    ->DisplayAggregatesOnly(true);
BENCHMARK(BM_chain_asio)
    ->Name("chain1000/asio_awaitable")
    ->MinTime(0.3)
    ->Repetitions(3)
    ->DisplayAggregatesOnly(true);

} // namespace
