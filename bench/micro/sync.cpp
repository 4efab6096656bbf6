// Comparison 3: async_mutex and channel costs (ns per operation).
//
// - mutex/weft_async_mutex_uncontended: one coroutine doing
//   `co_await m.lock(); m.unlock();` in a loop (the fast path: one CAS each).
// - mutex/std_mutex_uncontended: the same with std::mutex, for reference.
//   Both single-threaded: ns_per_op is thread CPU time per op (wall time
//   minus preemption), as Google Benchmark's own CPU column.
// - mutex/weft_async_mutex_contended: two coroutines spawned on a 2-worker
//   weft::thread_pool, each doing N lock / ++counter / unlock. A short,
//   bounded start barrier makes both run before either starts its loop.
//   ns_per_op = wall time / (2 N). Note that unlock() hands the mutex to the
//   waiter and resumes it on the unlocking thread, so under contention the
//   two coroutines end up alternating on one worker.
// - mutex/std_mutex_contended: the same with std::mutex and two std::threads.
// - channel_pingpong/weft_channel: two coroutines on the 2-worker pool and
//   two channel<int> of capacity 1; one sends on `ping` and waits on `pong`,
//   the other echoes. ns_per_round_trip = wall time / round trips.
// - channel_pingpong/asio_concurrent_channel: the same with
//   asio::experimental::concurrent_channel (capacity 1) and co_spawn on an
//   asio::thread_pool(2).

#include <weft/async_mutex.hpp>
#include <weft/async_scope.hpp>
#include <weft/channel.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>
#include <weft/thread_pool.hpp>

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/concurrent_channel.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

#include <time.h>

namespace {

using clock_type = std::chrono::steady_clock;

constexpr int contended_ops = 100'000;  // per coroutine / thread, per iteration
constexpr int round_trips = 50'000;     // per iteration

double elapsed_ns(clock_type::time_point t0, clock_type::time_point t1) {
    return std::chrono::duration<double, std::nano>(t1 - t0).count();
}

/// Waits (spinning, at most 10 ms) until `parties` callers have arrived, so
/// that two workers start their loops together when both are free.
void start_barrier(std::atomic<int>& arrived, int parties) {
    arrived.fetch_add(1, std::memory_order_acq_rel);
    const auto deadline = clock_type::now() + std::chrono::milliseconds(10);
    while (arrived.load(std::memory_order_acquire) < parties && clock_type::now() < deadline) {
    }
}

// --- uncontended -------------------------------------------------------------------

weft::task<void> lock_loop(benchmark::State& state, weft::async_mutex& m) {
    for (auto _ : state) {
        co_await m.lock();
        m.unlock();
    }
}

double thread_cpu_ns() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

void BM_async_mutex_uncontended(benchmark::State& state) {
    weft::async_mutex m;
    const double t0 = thread_cpu_ns();
    weft::sync_wait(lock_loop(state, m));
    const double t1 = thread_cpu_ns();
    state.counters["ns_per_op"] = (t1 - t0) / static_cast<double>(state.iterations());
}

void BM_std_mutex_uncontended(benchmark::State& state) {
    std::mutex m;
    const double t0 = thread_cpu_ns();
    for (auto _ : state) {
        m.lock();
        m.unlock();
    }
    const double t1 = thread_cpu_ns();
    state.counters["ns_per_op"] = (t1 - t0) / static_cast<double>(state.iterations());
}

// --- contended ---------------------------------------------------------------------

weft::task<void> contend(weft::async_mutex& m, long& counter, std::atomic<int>& arrived) {
    start_barrier(arrived, 2);
    for (int i = 0; i < contended_ops; ++i) {
        co_await m.lock();
        ++counter;
        m.unlock();
    }
}

void BM_async_mutex_contended(benchmark::State& state) {
    weft::thread_pool pool{2};
    weft::async_mutex m;
    long counter = 0;
    const auto t0 = clock_type::now();
    for (auto _ : state) {
        std::atomic<int> arrived{0};
        weft::async_scope scope;
        scope.spawn(pool, contend(m, counter, arrived));
        scope.spawn(pool, contend(m, counter, arrived));
        weft::sync_wait(scope.join());
    }
    const auto t1 = clock_type::now();
    const double ops = 2.0 * contended_ops * static_cast<double>(state.iterations());
    if (static_cast<double>(counter) != ops) {
        state.SkipWithError("lost updates under async_mutex");
    }
    state.counters["ns_per_op"] = elapsed_ns(t0, t1) / ops;
}

void BM_std_mutex_contended(benchmark::State& state) {
    std::mutex m;
    long counter = 0;
    const auto t0 = clock_type::now();
    for (auto _ : state) {
        std::atomic<int> arrived{0};
        auto body = [&] {
            start_barrier(arrived, 2);
            for (int i = 0; i < contended_ops; ++i) {
                std::lock_guard lock(m);
                ++counter;
            }
        };
        std::thread a(body);
        std::thread b(body);
        a.join();
        b.join();
    }
    const auto t1 = clock_type::now();
    const double ops = 2.0 * contended_ops * static_cast<double>(state.iterations());
    if (static_cast<double>(counter) != ops) {
        state.SkipWithError("lost updates under std::mutex");
    }
    state.counters["ns_per_op"] = elapsed_ns(t0, t1) / ops;
}

// --- channel ping-pong -------------------------------------------------------------

weft::task<void> pinger(weft::channel<int>& ping, weft::channel<int>& pong,
                        std::atomic<int>& arrived) {
    start_barrier(arrived, 2);
    for (int i = 0; i < round_trips; ++i) {
        co_await ping.send(i);
        std::optional<int> v = co_await pong.receive();
        benchmark::DoNotOptimize(v);
    }
}

weft::task<void> ponger(weft::channel<int>& ping, weft::channel<int>& pong,
                        std::atomic<int>& arrived) {
    start_barrier(arrived, 2);
    for (int i = 0; i < round_trips; ++i) {
        std::optional<int> v = co_await ping.receive();
        co_await pong.send(*v);
    }
}

void BM_channel_weft(benchmark::State& state) {
    weft::thread_pool pool{2};
    weft::channel<int> ping{1};
    weft::channel<int> pong{1};
    const auto t0 = clock_type::now();
    for (auto _ : state) {
        std::atomic<int> arrived{0};
        weft::async_scope scope;
        scope.spawn(pool, pinger(ping, pong, arrived));
        scope.spawn(pool, ponger(ping, pong, arrived));
        weft::sync_wait(scope.join());
    }
    const auto t1 = clock_type::now();
    state.counters["ns_per_round_trip"] =
        elapsed_ns(t0, t1) / (static_cast<double>(round_trips) * state.iterations());
}

using asio_channel = asio::experimental::concurrent_channel<void(asio::error_code, int)>;

asio::awaitable<void> asio_pinger(asio_channel& ping, asio_channel& pong) {
    for (int i = 0; i < round_trips; ++i) {
        co_await ping.async_send(asio::error_code{}, i, asio::use_awaitable);
        int v = co_await pong.async_receive(asio::use_awaitable);
        benchmark::DoNotOptimize(v);
    }
}

asio::awaitable<void> asio_ponger(asio_channel& ping, asio_channel& pong) {
    for (int i = 0; i < round_trips; ++i) {
        int v = co_await ping.async_receive(asio::use_awaitable);
        co_await pong.async_send(asio::error_code{}, v, asio::use_awaitable);
    }
}

void BM_channel_asio(benchmark::State& state) {
    asio::thread_pool pool(2);
    asio_channel ping(pool.get_executor(), 1);
    asio_channel pong(pool.get_executor(), 1);
    const auto t0 = clock_type::now();
    for (auto _ : state) {
        std::future<void> a = asio::co_spawn(pool, asio_pinger(ping, pong), asio::use_future);
        std::future<void> b = asio::co_spawn(pool, asio_ponger(ping, pong), asio::use_future);
        a.get();
        b.get();
    }
    const auto t1 = clock_type::now();
    pool.join();
    state.counters["ns_per_round_trip"] =
        elapsed_ns(t0, t1) / (static_cast<double>(round_trips) * state.iterations());
}

// Repetitions: the table uses the median of 3 runs. Multi-threaded ones
// report wall time.
void single_thread_config(benchmark::internal::Benchmark* b) {
    b->MinTime(0.2)->Repetitions(3)->DisplayAggregatesOnly(true);
}
void multi_thread_config(benchmark::internal::Benchmark* b) {
    b->MinTime(0.3)->Repetitions(3)->DisplayAggregatesOnly(true)->UseRealTime()->Unit(
        benchmark::kMillisecond);
}

BENCHMARK(BM_async_mutex_uncontended)
    ->Name("mutex/weft_async_mutex_uncontended")
    ->Apply(single_thread_config);
BENCHMARK(BM_std_mutex_uncontended)->Name("mutex/std_mutex_uncontended")->Apply(single_thread_config);
BENCHMARK(BM_async_mutex_contended)
    ->Name("mutex/weft_async_mutex_contended")
    ->Apply(multi_thread_config);
BENCHMARK(BM_std_mutex_contended)->Name("mutex/std_mutex_contended")->Apply(multi_thread_config);
BENCHMARK(BM_channel_weft)->Name("channel_pingpong/weft_channel")->Apply(multi_thread_config);
BENCHMARK(BM_channel_asio)
    ->Name("channel_pingpong/asio_concurrent_channel")
    ->Apply(multi_thread_config);

} // namespace
