#include "primitive_test_support.hpp"

#include <weft/async_semaphore.hpp>
#include <weft/stop.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>
#include <weft/thread_pool.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <vector>

using weft::async_semaphore;
using weft::task;
using weft::test::start;

static_assert(!std::is_copy_constructible_v<async_semaphore>);
static_assert(weft::awaitable<async_semaphore::acquire_awaiter>);

TEST_CASE("semaphore try_acquire takes units until none is left", "[semaphore]") {
    async_semaphore sem{2};
    CHECK(sem.available() == 2);
    CHECK(sem.try_acquire());
    CHECK(sem.try_acquire());
    CHECK_FALSE(sem.try_acquire());
    CHECK(sem.available() == 0);
    sem.release(2);
    CHECK(sem.available() == 2);
}

TEST_CASE("semaphore acquire completes at once while units are available", "[semaphore]") {
    async_semaphore sem{1};
    weft::sync_wait(sem.acquire());
    CHECK(sem.available() == 0);
    sem.release();
    CHECK(sem.available() == 1);
}

TEST_CASE("semaphore rejects bad counts", "[semaphore]") {
    CHECK_THROWS_AS(async_semaphore(-1), std::invalid_argument);
    CHECK_THROWS_AS(async_semaphore(3, 2), std::invalid_argument);
    async_semaphore sem{1, 2};
    CHECK(sem.max() == 2);
    CHECK_THROWS_AS(sem.release(-1), std::invalid_argument);
    CHECK_THROWS_AS(sem.release(2), std::overflow_error);
    CHECK(sem.available() == 1); // nothing released
    sem.release(1);
    CHECK(sem.available() == 2);
    CHECK_THROWS_AS(sem.release(), std::overflow_error);
    sem.release(0);
    CHECK(sem.available() == 2);
}

TEST_CASE("semaphore release hands units to waiters in FIFO order", "[semaphore]") {
    async_semaphore sem{0};
    std::vector<int> order;
    auto waiter = [&](int id) -> task<void> {
        co_await sem.acquire();
        order.push_back(id);
    };
    auto a = start([&] { return waiter(0); });
    auto b = start([&] { return waiter(1); });
    auto c = start([&] { return waiter(2); });
    CHECK(order.empty());
    sem.release();
    CHECK(order == std::vector<int>{0});
    CHECK(sem.available() == 0);
    CHECK_FALSE(sem.try_acquire()); // no barging past the queue
    sem.release(5);                 // 1 and 2 get one each, 3 are left
    CHECK(order == std::vector<int>{0, 1, 2});
    CHECK(a->succeeded());
    CHECK(b->succeeded());
    CHECK(c->succeeded());
    CHECK(sem.available() == 3);
}

TEST_CASE("semaphore acquire is cancelled when stop is requested while waiting", "[semaphore][stop]") {
    async_semaphore sem{0};
    std::stop_source s0, s1;
    auto a = start([&] { return sem.acquire(); }, s0.get_token());
    auto b = start([&] { return sem.acquire(); }, s1.get_token());
    s0.request_stop();
    CHECK(a->cancelled());
    CHECK_FALSE(b->finished());
    sem.release(2); // b gets one; the other stays: the cancelled one took none
    CHECK(b->succeeded());
    CHECK(sem.available() == 1);
}

TEST_CASE("semaphore acquire with stop already requested throws at once unless a unit is free",
          "[semaphore][stop]") {
    async_semaphore sem{1};
    std::stop_source stop;
    stop.request_stop();
    auto taken = start([&] { return sem.acquire(); }, stop.get_token());
    CHECK(taken->succeeded());
    auto refused = start([&] { return sem.acquire(); }, stop.get_token());
    CHECK(refused->cancelled());
    CHECK(sem.available() == 0);
    sem.release();
    CHECK(sem.available() == 1);
}

TEST_CASE("semaphore acquire with an explicit token watches it", "[semaphore][stop]") {
    async_semaphore sem{0};
    std::stop_source stop;
    auto w = start([&] { return sem.acquire(stop.get_token()); });
    stop.request_stop();
    CHECK(w->cancelled());
    sem.release();
    CHECK(sem.available() == 1);
}

TEST_CASE("semaphore waiter handed a unit before stop is requested keeps it", "[semaphore][stop]") {
    async_semaphore sem{0};
    std::stop_source stop;
    auto w = start([&] { return sem.acquire(); }, stop.get_token());
    sem.release();
    stop.request_stop();
    CHECK(w->succeeded());
    CHECK(sem.available() == 0);
}

TEST_CASE("semaphore cancellation racing with release is decided exactly once",
          "[semaphore][stop]") {
    for (int i = 0; i < 300; ++i) {
        async_semaphore sem{0};
        std::stop_source stop;
        std::atomic<int> result{0};
        std::thread waiter([&] {
            try {
                weft::sync_wait(sem.acquire(), stop.get_token());
                result = 1;
            } catch (const weft::operation_cancelled&) {
                result = 2;
            }
        });
        std::thread canceller([&] { stop.request_stop(); });
        sem.release();
        canceller.join();
        waiter.join();
        REQUIRE(result != 0);
        // The unit went to the waiter, or it is still here: never both, never lost.
        REQUIRE(sem.available() == (result == 1 ? 0 : 1));
    }
}

TEST_CASE("semaphore never lets more holders in than it has units", "[semaphore][stress]") {
    constexpr int threads = 4;
    constexpr int iterations = 3000;
    constexpr int units = 2;
    async_semaphore sem{units};
    std::atomic<int> inside{0};
    std::atomic<bool> too_many{false};
    std::atomic<int> successes{0};
    std::atomic<int> cancellations{0};
    std::vector<std::stop_source> sources(64);
    std::atomic<int> workers_done{0};

    std::optional<weft::thread_pool> pool;
    SECTION("on plain threads") {}
    SECTION("on a thread pool") { pool.emplace(2); }

    auto worker = [&](int id) -> task<void> {
        for (int i = 0; i < iterations; ++i) {
            if (pool && i % 64 == 0) {
                co_await pool->schedule();
            }
            try {
                if (i % 3 == 0) {
                    co_await sem.acquire(sources[static_cast<std::size_t>((i + id) % 64)].get_token());
                } else {
                    co_await sem.acquire();
                }
            } catch (const weft::operation_cancelled&) {
                cancellations.fetch_add(1);
                continue;
            }
            if (inside.fetch_add(1) >= units) {
                too_many = true;
            }
            if (i % 8 == 0) {
                std::this_thread::yield();
            }
            inside.fetch_sub(1);
            successes.fetch_add(1);
            sem.release();
        }
    };

    std::thread canceller([&] {
        for (auto& s : sources) {
            if (workers_done.load() == threads) {
                break;
            }
            for (int spin = 0; spin < 50; ++spin) {
                std::this_thread::yield();
            }
            s.request_stop();
        }
    });
    std::atomic<int> ready{0};
    weft::test::run_on_threads(threads, [&](int id) {
        ready.fetch_add(1);
        while (ready.load() < threads) {
            std::this_thread::yield();
        }
        weft::sync_wait(worker(id));
        workers_done.fetch_add(1);
    });
    canceller.join();

    INFO("cancelled " << cancellations.load() << " of " << threads * iterations);
    CHECK_FALSE(too_many);
    CHECK(successes + cancellations == threads * iterations);
    CHECK(sem.available() == units);
}
