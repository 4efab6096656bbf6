// Comparison 2: thread pool throughput, 2 workers on each side.
//
// (a) pool_spawn_1M: one foreign (non-pool) thread starts one million empty
//     tasks on the pool and waits until all have run.
//     - weft: what a user writes for "run these and wait for all of them":
//           weft::async_scope scope;
//           for (...) scope.spawn(pool, empty_task());
//           weft::sync_wait(scope.join());
//       (each spawn allocates the task frame and the scope's bookkeeping
//       frame; the lower-level pool.post(handle) would skip both.)
//     - asio: asio::post(pool, lambda) one million times; each lambda counts
//       an atomic down and the last one wakes the waiting thread (atomic
//       wait/notify). pool.join() is not used, since it ends the pool.
//     - weft_post_handles (informational): the lower-level way, a minimal
//       user-written fire-and-forget coroutine per task (one frame, no scope
//       frame) handed to pool.post(h), with the same atomic countdown as the
//       asio side. Shows the pool's own cost without async_scope's second
//       frame per task.
//     Both pools are created once per benchmark and reused by all iterations.
//
// (b) pool_fib25: recursive fib(25) where every call is a task on the pool
//     and each call with n >= 2 starts fib(n-1) and fib(n-2) concurrently and
//     awaits both: 242785 tasks per run (reported as tasks_per_s).
//     - weft: `co_await pool.schedule()` at the top of each fib (every task
//       really goes through the pool's queue), children awaited together with
//       `co_await weft::when_all(fib(n-1), fib(n-2))`.
//     - asio: the idiomatic and, of the variants tried, fastest way:
//           co_await make_parallel_group(co_spawn(ex, fib(n-1), deferred),
//                                        co_spawn(ex, fib(n-2), deferred))
//               .async_wait(wait_for_all(), use_awaitable);
//       (asio's `co_await (a && b)` operator is the same parallel group plus
//       a wrapper coroutine per child, hence slower.) Note co_spawn dispatches:
//       from a pool thread the child starts inline and only its completion is
//       posted, so asio does fewer queue round trips than weft here.
//     The root is started from the benchmark thread (weft: sync_wait; asio:
//     co_spawn with use_future).

#include <weft/async_scope.hpp>
#include <weft/frame_allocator.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>
#include <weft/thread_pool.hpp>
#include <weft/when_all.hpp>

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/experimental/parallel_group.hpp>
#include <asio/post.hpp>
#include <asio/this_coro.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <tuple>

namespace weft_bench {
std::uint64_t thread_allocations() noexcept;
}

namespace {

constexpr int spawn_count = 1'000'000;
constexpr int fib_n = 25;
constexpr double fib_tasks = 242'785; // calls made by fib(25): 2 * F(26) - 1
constexpr int fib_expected = 75'025;  // F(25)

// --- (a) spawn one million empty tasks -------------------------------------------

/// allocs_per_task: ::operator new calls made by the spawning thread per task
/// (asio's handler allocations use aligned_alloc and are not counted).
void set_allocs_per_task(benchmark::State& state, std::uint64_t allocs0) {
    state.counters["allocs_per_task"] =
        static_cast<double>(weft_bench::thread_allocations() - allocs0) /
        (static_cast<double>(state.iterations()) * spawn_count);
}

weft::task<void> empty_task() { co_return; }

void BM_spawn_weft(benchmark::State& state) {
    weft::thread_pool pool{2};
    const std::uint64_t allocs0 = weft_bench::thread_allocations();
    for (auto _ : state) {
        weft::async_scope scope;
        for (int i = 0; i < spawn_count; ++i) {
            scope.spawn(pool, empty_task());
        }
        weft::sync_wait(scope.join());
    }
    set_allocs_per_task(state, allocs0);
    state.counters["tasks_per_s"] =
        benchmark::Counter(spawn_count, benchmark::Counter::kIsIterationInvariantRate);
}

/// A minimal fire-and-forget coroutine: created suspended, destroys itself
/// when it finishes.
struct oneshot {
    struct promise_type {
        oneshot get_return_object() noexcept {
            return {std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() noexcept { return {}; }
        std::suspend_never final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); }
    };
    std::coroutine_handle<promise_type> handle;
};

oneshot count_down(std::atomic<int>& remaining) {
    // acq_rel: as in BM_spawn_asio.
    if (remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        remaining.notify_one();
    }
    co_return;
}

void wait_for_zero(std::atomic<int>& remaining) {
    for (int v = remaining.load(std::memory_order_acquire); v != 0;
         v = remaining.load(std::memory_order_acquire)) {
        remaining.wait(v, std::memory_order_acquire);
    }
}

void BM_spawn_weft_post(benchmark::State& state) {
    weft::thread_pool pool{2};
    std::atomic<int> remaining{0}; // outlives every coroutine, see BM_spawn_asio
    const std::uint64_t allocs0 = weft_bench::thread_allocations();
    for (auto _ : state) {
        remaining.store(spawn_count, std::memory_order_relaxed);
        for (int i = 0; i < spawn_count; ++i) {
            pool.post(count_down(remaining).handle);
        }
        wait_for_zero(remaining);
    }
    set_allocs_per_task(state, allocs0);
    state.counters["tasks_per_s"] =
        benchmark::Counter(spawn_count, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_spawn_asio(benchmark::State& state) {
    asio::thread_pool pool(2);
    // Outlives every posted function: the last one may still be inside
    // notify_one() when the waiting thread has already moved on.
    std::atomic<int> remaining{0};
    for (auto _ : state) {
        remaining.store(spawn_count, std::memory_order_relaxed);
        for (int i = 0; i < spawn_count; ++i) {
            asio::post(pool, [&remaining] {
                // acq_rel: the last decrement acquires every function's
                // effects and releases them to the waiter.
                if (remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                    remaining.notify_one();
                }
            });
        }
        wait_for_zero(remaining);
    }
    pool.join();
    state.counters["tasks_per_s"] =
        benchmark::Counter(spawn_count, benchmark::Counter::kIsIterationInvariantRate);
}

// --- (b) fib(25), every call a task on the pool ---------------------------------

weft::task<int> weft_fib(weft::thread_pool& pool, int n) {
    co_await pool.schedule();
    if (n < 2) {
        co_return n;
    }
    auto [a, b] = co_await weft::when_all(weft_fib(pool, n - 1), weft_fib(pool, n - 2));
    co_return a + b;
}

// The concrete executor type (not the type-erased any_io_executor default)
// is the fastest way to write this with asio.
using asio_executor = asio::thread_pool::executor_type;

asio::awaitable<int, asio_executor> asio_fib(int n) {
    if (n < 2) {
        co_return n;
    }
    auto ex = co_await asio::this_coro::executor;
    auto [order, e1, a, e2, b] =
        co_await asio::experimental::make_parallel_group(
            asio::co_spawn(ex, asio_fib(n - 1), asio::experimental::deferred),
            asio::co_spawn(ex, asio_fib(n - 2), asio::experimental::deferred))
            .async_wait(asio::experimental::wait_for_all(),
                        asio::use_awaitable_t<asio_executor>{});
    (void)order;
    if (e1) {
        std::rethrow_exception(e1);
    }
    if (e2) {
        std::rethrow_exception(e2);
    }
    co_return a + b;
}

void BM_fib_weft(benchmark::State& state, bool recycling) {
    weft::frame_allocator::enable_recycling(recycling);
    weft::thread_pool pool{2};
    int r = 0;
    for (auto _ : state) {
        r = weft::sync_wait(weft_fib(pool, fib_n));
        benchmark::DoNotOptimize(r);
    }
    weft::frame_allocator::enable_recycling(false);
    if (r != fib_expected) {
        state.SkipWithError("wrong fib result");
    }
    state.counters["tasks_per_s"] =
        benchmark::Counter(fib_tasks, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_fib_asio(benchmark::State& state) {
    asio::thread_pool pool(2);
    int r = 0;
    for (auto _ : state) {
        r = asio::co_spawn(pool.get_executor(), asio_fib(fib_n), asio::use_future).get();
        benchmark::DoNotOptimize(r);
    }
    pool.join();
    if (r != fib_expected) {
        state.SkipWithError("wrong fib result");
    }
    state.counters["tasks_per_s"] =
        benchmark::Counter(fib_tasks, benchmark::Counter::kIsIterationInvariantRate);
}

// Multi-threaded: wall time. Repetitions: the table uses the median of 3 runs.
void spawn_config(benchmark::internal::Benchmark* b) {
    b->Iterations(3)->Repetitions(3)->DisplayAggregatesOnly(true)->UseRealTime()->Unit(
        benchmark::kMillisecond);
}

BENCHMARK(BM_spawn_weft)->Name("pool_spawn_1M/weft_async_scope")->Apply(spawn_config);
BENCHMARK(BM_spawn_weft_post)->Name("pool_spawn_1M/weft_post_handles")->Apply(spawn_config);
BENCHMARK(BM_spawn_asio)->Name("pool_spawn_1M/asio_post")->Apply(spawn_config);
BENCHMARK_CAPTURE(BM_fib_weft, default_alloc, false)
    ->Name("pool_fib25/weft_when_all")
    ->MinTime(0.3)
    ->Repetitions(3)
    ->DisplayAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_fib_weft, recycling, true)
    ->Name("pool_fib25/weft_when_all_recycling")
    ->MinTime(0.3)
    ->Repetitions(3)
    ->DisplayAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fib_asio)
    ->Name("pool_fib25/asio_parallel_group")
    ->Iterations(2)
    ->Repetitions(3)
    ->DisplayAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

} // namespace
