// Stress tests for the parts of the core that cross threads without being a
// primitive of their own: async_scope, when_all, when_any, async_generator and
// frame recycling, all on a two-worker thread_pool. Run under ThreadSanitizer
// by CI, 20 times in a row.
#include "test_support.hpp"

#include <weft/async_event.hpp>
#include <weft/async_generator.hpp>
#include <weft/async_scope.hpp>
#include <weft/frame_allocator.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>
#include <weft/thread_pool.hpp>
#include <weft/when_all.hpp>
#include <weft/when_any.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

using weft::task;

namespace {

constexpr int scale = weft::test::sanitized ? 1 : 5;

task<int> hop(weft::thread_pool& pool, int v) {
    co_await pool.schedule();
    co_return v;
}

} // namespace

TEST_CASE("async_scope joins tasks spawned from several threads", "[async_scope][stress]") {
    weft::thread_pool pool(2);
    std::atomic<int> ran{0};
    auto work = [&]() -> task<void> {
        ran.fetch_add(1, std::memory_order_relaxed);
        co_return;
    };
    auto nested = [&](weft::async_scope& scope) -> task<void> {
        // Tasks spawned by tasks, from pool threads, into the same scope.
        for (int i = 0; i < 10; ++i) {
            scope.spawn(pool, work());
        }
        co_return;
    };
    const int rounds = 20 * scale;
    for (int round = 0; round < rounds; ++round) {
        weft::async_scope scope;
        std::vector<std::jthread> spawners;
        for (int t = 0; t < 3; ++t) {
            spawners.emplace_back([&] {
                for (int i = 0; i < 50; ++i) {
                    scope.spawn(pool, nested(scope));
                }
            });
        }
        spawners.clear(); // join the spawning threads
        weft::sync_wait(scope.join());
        CHECK(scope.outstanding() == 0);
    }
    CHECK(ran.load() == rounds * 3 * 50 * 10);
}

TEST_CASE("when_all gathers results of children finishing on pool threads",
          "[when_all][stress]") {
    weft::thread_pool pool(2);
    for (int round = 0; round < 40 * scale; ++round) {
        std::vector<task<int>> children;
        for (int i = 0; i < 64; ++i) {
            children.push_back(hop(pool, i));
        }
        auto results = weft::sync_wait(weft::when_all(std::move(children)));
        int expected = 0;
        for (int v : results) {
            REQUIRE(v == expected++);
        }
    }
}

TEST_CASE("when_any picks one winner and cancels the rest under contention",
          "[when_any][stress]") {
    weft::thread_pool pool(2);
    std::atomic<int> cancelled{0};
    auto racer = [&](weft::async_event& gate, int id) -> task<int> {
        co_await pool.schedule();
        try {
            co_await gate.wait();
        } catch (const weft::operation_cancelled&) {
            cancelled.fetch_add(1, std::memory_order_relaxed);
            throw;
        }
        co_return id;
    };
    const int rounds = 100 * scale;
    for (int round = 0; round < rounds; ++round) {
        weft::async_event gate(weft::reset_mode::automatic);
        std::vector<task<int>> racers;
        for (int i = 0; i < 4; ++i) {
            racers.push_back(racer(gate, i));
        }
        // Open the gate for one waiter from a foreign thread while they race
        // to reach it: exactly one racer wins, the other three are cancelled.
        std::jthread opener([&] { gate.set(); });
        auto r = weft::sync_wait(weft::when_any(std::move(racers)));
        CHECK(r.index == static_cast<std::size_t>(r.value));
    }
    CHECK(cancelled.load() == rounds * 3);
}

TEST_CASE("async_generator steps across pool threads", "[async_generator][stress]") {
    weft::thread_pool pool(2);
    auto producer = [&](int n) -> weft::async_generator<int> {
        for (int i = 0; i < n; ++i) {
            co_await pool.schedule();
            co_yield i;
        }
    };
    auto consume = [&]() -> task<long> {
        long sum = 0;
        auto gen = producer(2000 * scale);
        while (auto v = co_await gen.next()) {
            sum += *v;
            if (*v % 7 == 0) {
                co_await pool.schedule();
            }
        }
        co_return sum;
    };
    const long n = 2000 * scale;
    CHECK(weft::sync_wait(consume()) == n * (n - 1) / 2);
}

TEST_CASE("recycled frames move safely between pool threads", "[frame_allocator][stress]") {
    weft::frame_allocator::enable_recycling(true);
    {
        weft::thread_pool pool(2);
        for (int round = 0; round < 10 * scale; ++round) {
            weft::async_scope scope;
            std::atomic<long> sum{0};
            auto work = [&](int v) -> task<void> {
                // Allocated on one thread, freed on whichever finishes it.
                const int got = co_await hop(pool, v);
                sum.fetch_add(got, std::memory_order_relaxed);
            };
            for (int i = 0; i < 1000; ++i) {
                scope.spawn(pool, work(i));
            }
            weft::sync_wait(scope.join());
            CHECK(sum.load() == 999L * 1000 / 2);
        }
    }
    weft::frame_allocator::enable_recycling(false);
}
