#include "primitive_test_support.hpp"

#include <weft/async_latch.hpp>
#include <weft/stop.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>
#include <weft/thread_pool.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <vector>

using weft::async_latch;
using weft::task;
using weft::test::start;

static_assert(!std::is_copy_constructible_v<async_latch>);
static_assert(weft::awaitable<async_latch::wait_awaiter>);

TEST_CASE("latch opens when the count reaches zero", "[latch]") {
    async_latch latch{3};
    CHECK_FALSE(latch.try_wait());
    latch.count_down();
    CHECK_FALSE(latch.try_wait());
    latch.count_down(2);
    CHECK(latch.try_wait());
    weft::sync_wait(latch.wait()); // completes at once once open
    latch.count_down(0);           // allowed on an open latch
    CHECK(latch.try_wait());
}

TEST_CASE("latch with a zero count starts open", "[latch]") {
    async_latch latch{0};
    CHECK(latch.try_wait());
    weft::sync_wait(latch.wait());
}

TEST_CASE("latch rejects counting below zero", "[latch]") {
    CHECK_THROWS_AS(async_latch(-1), std::invalid_argument);
    async_latch latch{2};
    CHECK_THROWS_AS(latch.count_down(3), std::invalid_argument);
    CHECK_THROWS_AS(latch.count_down(-1), std::invalid_argument);
    CHECK_FALSE(latch.try_wait()); // nothing was counted down
    latch.count_down(2);
    CHECK(latch.try_wait());
    CHECK_THROWS_AS(latch.count_down(), std::invalid_argument);
}

TEST_CASE("latch wakes every waiter in FIFO order when it opens", "[latch]") {
    async_latch latch{2};
    std::vector<int> order;
    auto waiter = [&](int id) -> task<void> {
        co_await latch.wait();
        order.push_back(id);
    };
    auto a = start([&] { return waiter(0); });
    auto b = start([&] { return waiter(1); });
    auto c = start([&] { return waiter(2); });
    latch.count_down();
    CHECK(order.empty());
    latch.count_down();
    CHECK(order == std::vector<int>{0, 1, 2});
    CHECK(a->succeeded());
    CHECK(b->succeeded());
    CHECK(c->succeeded());
}

TEST_CASE("latch wait is cancelled when stop is requested while waiting", "[latch][stop]") {
    async_latch latch{1};
    std::stop_source s0, s1;
    auto a = start([&] { return latch.wait(); }, s0.get_token());
    auto b = start([&] { return latch.wait(s1.get_token()); });
    s0.request_stop();
    CHECK(a->cancelled());
    CHECK_FALSE(b->finished());
    latch.count_down();
    CHECK(b->succeeded());
    s1.request_stop(); // too late: no effect
    CHECK(b->succeeded());
}

TEST_CASE("latch wait with stop already requested throws at once unless the latch is open",
          "[latch][stop]") {
    async_latch latch{1};
    std::stop_source stop;
    stop.request_stop();
    auto refused = start([&] { return latch.wait(); }, stop.get_token());
    CHECK(refused->cancelled());
    latch.count_down();
    auto passed = start([&] { return latch.wait(); }, stop.get_token());
    CHECK(passed->succeeded());
}

TEST_CASE("latch waiter may destroy the latch when released", "[latch][lifetime]") {
    auto latch = std::make_unique<async_latch>(1);
    auto a = start([&]() -> task<void> {
        co_await latch->wait();
        latch.reset(); // destroys the latch inside count_down()
    });
    latch->count_down();
    CHECK(a->succeeded());
    CHECK(latch == nullptr);
}

TEST_CASE("latch cancellation racing with count_down is decided exactly once", "[latch][stop]") {
    int released = 0;
    for (int i = 0; i < 300; ++i) {
        async_latch latch{1};
        std::stop_source stop;
        std::atomic<int> result{0};
        std::thread waiter([&] {
            try {
                weft::sync_wait(latch.wait(), stop.get_token());
                result = 1;
            } catch (const weft::operation_cancelled&) {
                result = 2;
            }
        });
        std::thread canceller([&] { stop.request_stop(); });
        latch.count_down();
        canceller.join();
        waiter.join();
        REQUIRE(result != 0);
        released += result == 1 ? 1 : 0;
        REQUIRE(latch.try_wait());
    }
    CHECK(released <= 300);
}

TEST_CASE("latch releases its waiters only after every count_down", "[latch][stress]") {
    constexpr int rounds = 50; // thread start-up dominates, under TSan above all
    constexpr int counters = 3;
    constexpr int waiters = 3;
    std::optional<weft::thread_pool> pool;
    SECTION("on plain threads") {}
    SECTION("on a thread pool") { pool.emplace(2); }
    for (int r = 0; r < rounds; ++r) {
        async_latch latch{counters};
        std::vector<long> work(counters, 0); // each counter's slot, written before count_down
        std::atomic<int> released{0};
        std::atomic<bool> early{false};
        std::stop_source stop;
        std::atomic<int> cancelled{0};

        auto waiter = [&](int id) -> task<void> {
            if (pool) {
                co_await pool->schedule();
            }
            try {
                // One waiter per round may be cancelled mid-wait.
                if (id == 0) {
                    co_await latch.wait(stop.get_token());
                } else {
                    co_await latch.wait();
                }
            } catch (const weft::operation_cancelled&) {
                cancelled.fetch_add(1);
                co_return;
            }
            for (int c = 0; c < counters; ++c) {
                if (work[static_cast<std::size_t>(c)] != c + 1) {
                    early = true;
                }
            }
            released.fetch_add(1);
        };

        weft::test::run_on_threads(counters + waiters + 1, [&](int t) {
            if (t < counters) {
                work[static_cast<std::size_t>(t)] = t + 1;
                latch.count_down();
            } else if (t < counters + waiters) {
                weft::sync_wait(waiter(t - counters));
            } else {
                stop.request_stop();
            }
        });
        REQUIRE_FALSE(early);
        REQUIRE(released + cancelled == waiters);
        REQUIRE(cancelled <= 1);
    }
}
