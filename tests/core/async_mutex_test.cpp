#include "primitive_test_support.hpp"

#include <weft/async_mutex.hpp>
#include <weft/stop.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>
#include <weft/thread_pool.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <optional>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <vector>

using weft::async_mutex;
using weft::async_mutex_lock;
using weft::task;
using weft::test::start;

static_assert(!std::is_copy_constructible_v<async_mutex>);
static_assert(!std::is_move_constructible_v<async_mutex>);
static_assert(std::is_nothrow_move_constructible_v<async_mutex_lock>);
static_assert(std::is_nothrow_move_assignable_v<async_mutex_lock>);
static_assert(!std::is_copy_constructible_v<async_mutex_lock>);
static_assert(weft::awaitable<async_mutex::lock_awaiter>);
static_assert(std::is_same_v<weft::await_result_t<async_mutex::scoped_lock_awaiter>, async_mutex_lock>);

TEST_CASE("mutex try_lock succeeds only while the mutex is free", "[mutex]") {
    async_mutex m;
    CHECK_FALSE(m.is_locked());
    REQUIRE(m.try_lock());
    CHECK(m.is_locked());
    CHECK_FALSE(m.try_lock());
    m.unlock();
    CHECK_FALSE(m.is_locked());
    CHECK(m.try_lock());
    m.unlock();
}

TEST_CASE("mutex lock completes at once when the mutex is free", "[mutex]") {
    async_mutex m;
    weft::sync_wait(m.lock());
    CHECK(m.is_locked());
    m.unlock();
    CHECK_FALSE(m.is_locked());
}

TEST_CASE("mutex hands ownership to waiters in FIFO order", "[mutex]") {
    async_mutex m;
    REQUIRE(m.try_lock());
    std::vector<int> order;
    auto waiter = [&](int id) -> task<void> {
        co_await m.lock();
        order.push_back(id);
    };
    auto a = start([&] { return waiter(0); });
    auto b = start([&] { return waiter(1); });
    auto c = start([&] { return waiter(2); });
    CHECK(order.empty());
    CHECK_FALSE(m.try_lock()); // no barging past the queue

    m.unlock(); // hands the mutex to 0, which runs inline here
    CHECK(order == std::vector<int>{0});
    CHECK(m.is_locked());
    CHECK_FALSE(m.try_lock());
    m.unlock();
    CHECK(order == std::vector<int>{0, 1});
    m.unlock();
    CHECK(order == std::vector<int>{0, 1, 2});
    CHECK(a->succeeded());
    CHECK(b->succeeded());
    CHECK(c->succeeded());
    CHECK(m.is_locked());
    m.unlock();
    CHECK_FALSE(m.is_locked());
}

TEST_CASE("mutex scoped_lock yields a movable guard that unlocks when destroyed", "[mutex]") {
    async_mutex m;
    {
        async_mutex_lock guard = weft::sync_wait(m.scoped_lock());
        CHECK(guard.owns_lock());
        CHECK(guard.mutex() == &m);
        CHECK(m.is_locked());
        async_mutex_lock moved = std::move(guard);
        CHECK_FALSE(guard.owns_lock());
        CHECK(moved.owns_lock());
        CHECK(m.is_locked());
        async_mutex_lock assigned;
        assigned = std::move(moved);
        CHECK(assigned);
        CHECK(m.is_locked());
    }
    CHECK_FALSE(m.is_locked());

    auto guard = weft::sync_wait(m.scoped_lock());
    guard.unlock();
    CHECK_FALSE(guard.owns_lock());
    CHECK_FALSE(m.is_locked());

    REQUIRE(m.try_lock());
    async_mutex_lock adopted(m, std::adopt_lock);
    async_mutex* released = adopted.release();
    CHECK(released == &m);
    CHECK(m.is_locked());
    m.unlock();
}

TEST_CASE("mutex scoped_lock guard hands the mutex to the next waiter on destruction", "[mutex]") {
    async_mutex m;
    std::vector<int> order;
    auto holder = [&](int id) -> task<void> {
        auto guard = co_await m.scoped_lock();
        order.push_back(id);
    };
    REQUIRE(m.try_lock());
    auto a = start([&] { return holder(1); });
    auto b = start([&] { return holder(2); });
    m.unlock(); // 1 runs, its guard's destructor hands the mutex to 2
    CHECK(order == std::vector<int>{1, 2});
    CHECK(a->succeeded());
    CHECK(b->succeeded());
    CHECK_FALSE(m.is_locked());
}

TEST_CASE("mutex lock is cancelled when stop is requested while waiting", "[mutex][stop]") {
    async_mutex m;
    REQUIRE(m.try_lock());
    std::stop_source stop;
    auto w = start([&] { return m.lock(); }, stop.get_token());
    CHECK_FALSE(w->finished());
    stop.request_stop(); // the waiter leaves the queue and resumes here
    CHECK(w->cancelled());
    CHECK(m.is_locked()); // still ours
    m.unlock();
    CHECK_FALSE(m.is_locked()); // nobody was handed the mutex
    CHECK(m.try_lock());
    m.unlock();
}

TEST_CASE("mutex lock with stop already requested throws at once unless the mutex is free",
          "[mutex][stop]") {
    async_mutex m;
    std::stop_source stop;
    stop.request_stop();

    // Free: nothing to wait for, so the lock is taken.
    auto free_lock = start([&] { return m.lock(); }, stop.get_token());
    CHECK(free_lock->succeeded());
    CHECK(m.is_locked());

    // Held: does not queue, throws at once.
    auto held_lock = start([&] { return m.lock(); }, stop.get_token());
    CHECK(held_lock->cancelled());
    m.unlock();
    CHECK_FALSE(m.is_locked());
}

TEST_CASE("cancelling one mutex waiter keeps the others in FIFO order", "[mutex][stop]") {
    async_mutex m;
    REQUIRE(m.try_lock());
    std::vector<int> order;
    auto waiter = [&](int id) -> task<void> {
        co_await m.lock();
        order.push_back(id);
    };
    std::stop_source s0, s1, s2;
    auto a = start([&] { return waiter(0); }, s0.get_token());
    auto b = start([&] { return waiter(1); }, s1.get_token());
    auto c = start([&] { return waiter(2); }, s2.get_token());
    s1.request_stop();
    CHECK(b->cancelled());
    m.unlock();
    m.unlock();
    CHECK(order == std::vector<int>{0, 2});
    CHECK(a->succeeded());
    CHECK(c->succeeded());
    s0.request_stop(); // too late: has no effect on a completed lock
    CHECK(m.is_locked());
    m.unlock();
    CHECK_FALSE(m.is_locked());
}

TEST_CASE("mutex waiter handed the lock before stop is requested keeps it", "[mutex][stop]") {
    async_mutex m;
    REQUIRE(m.try_lock());
    std::stop_source stop;
    bool owned = false;
    auto w = start(
        [&]() -> task<void> {
            co_await m.lock();
            owned = true;
        },
        stop.get_token());
    m.unlock();
    stop.request_stop();
    CHECK(owned);
    CHECK(w->succeeded());
    CHECK(m.is_locked());
    m.unlock();
}

TEST_CASE("mutex lock with an explicit token watches it instead of the coroutine's", "[mutex][stop]") {
    async_mutex m;
    REQUIRE(m.try_lock());
    std::stop_source explicit_stop, coroutine_stop;
    auto a = start([&] { return m.lock(explicit_stop.get_token()); });
    auto b = start([&] { return m.scoped_lock(std::stop_token{}); }, coroutine_stop.get_token());
    coroutine_stop.request_stop();
    CHECK_FALSE(b->finished()); // its explicit token cannot stop
    explicit_stop.request_stop();
    CHECK(a->cancelled());
    m.unlock();
    REQUIRE(b->succeeded());
    CHECK(b->value->owns_lock());
    b->value.reset(); // the guard unlocks
    CHECK_FALSE(m.is_locked());
}

TEST_CASE("mutex lock sees the stop token that sync_wait gives the task", "[mutex][stop]") {
    async_mutex m;
    REQUIRE(m.try_lock());
    std::stop_source stop;
    std::atomic<bool> saw_token{false};
    std::atomic<bool> cancelled{false};
    auto body = [&]() -> task<void> {
        const std::stop_token token = co_await weft::get_stop_token();
        saw_token = token.stop_possible();
        co_await m.lock(); // queued, or (if stop came first) thrown at once
        m.unlock();
    };
    std::thread t([&] {
        try {
            weft::sync_wait(body(), stop.get_token());
        } catch (const weft::operation_cancelled&) {
            cancelled = true;
        }
    });
    stop.request_stop();
    t.join();
    CHECK(saw_token);
    CHECK(cancelled);
    m.unlock();
    CHECK_FALSE(m.is_locked());
}

TEST_CASE("mutex cancellation racing with unlock is decided exactly once", "[mutex][stop]") {
    int acquired = 0;
    int cancelled = 0;
    for (int i = 0; i < 300; ++i) {
        async_mutex m;
        REQUIRE(m.try_lock());
        std::stop_source stop;
        std::atomic<int> result{0};
        std::thread waiter([&] {
            try {
                weft::sync_wait(m.lock(), stop.get_token());
                result = 1;
                m.unlock();
            } catch (const weft::operation_cancelled&) {
                result = 2;
            }
        });
        std::thread canceller([&] { stop.request_stop(); });
        m.unlock();
        canceller.join();
        waiter.join();
        REQUIRE(result != 0);
        (result == 1 ? acquired : cancelled) += 1;
        REQUIRE_FALSE(m.is_locked());
        REQUIRE(m.try_lock());
        m.unlock();
    }
    CHECK(acquired + cancelled == 300);
}

TEST_CASE("mutex stays exclusive and consistent under contention and cancellation",
          "[mutex][stress]") {
    constexpr int threads = 4;
    constexpr int iterations = 3000;
    constexpr int source_count = 64;
    async_mutex m;
    long counter = 0; // plain: guarded by m (TSan checks the hand-offs)
    std::atomic<int> inside{0};
    std::atomic<int> successes{0};
    std::atomic<int> cancellations{0};
    std::atomic<bool> overlap{false};
    std::vector<std::stop_source> sources(source_count);
    std::atomic<int> workers_done{0};

    // On plain threads each coroutine starts on its own thread and moves to
    // whichever thread wakes it; on the pool they share two workers and hop
    // between them.
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
                    auto guard = co_await m.scoped_lock(
                        sources[static_cast<std::size_t>((i + id) % source_count)].get_token());
                    if (inside.fetch_add(1) != 0) {
                        overlap = true;
                    }
                    ++counter;
                    inside.fetch_sub(1);
                } else {
                    co_await m.lock();
                    if (inside.fetch_add(1) != 0) {
                        overlap = true;
                    }
                    ++counter;
                    if (i % 8 == 0) {
                        std::this_thread::yield(); // hold it a while: let a queue form
                    }
                    inside.fetch_sub(1);
                    m.unlock();
                }
                successes.fetch_add(1, std::memory_order_relaxed);
            } catch (const weft::operation_cancelled&) {
                cancellations.fetch_add(1, std::memory_order_relaxed);
            }
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
            std::this_thread::yield(); // start together
        }
        weft::sync_wait(worker(id));
        workers_done.fetch_add(1);
    });
    canceller.join();

    INFO("cancelled " << cancellations.load() << " of " << threads * iterations);
    CHECK_FALSE(overlap);
    CHECK(successes + cancellations == threads * iterations);
    CHECK(counter == successes);
    CHECK_FALSE(m.is_locked());
    CHECK(m.try_lock());
    m.unlock();
}
