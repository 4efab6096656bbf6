#include "test_support.hpp"

#include <weft/async_latch.hpp>
#include <weft/inline_executor.hpp>
#include <weft/spawn.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>
#include <weft/thread_pool.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <stdexcept>
#include <thread>

using weft::task;
using weft::test::manual_executor;

namespace {
/// An awaitable that is not a task: spawn must wrap it.
struct count_down_awaitable {
    weft::async_latch* m_latch;
    std::atomic<int>* m_on_pool;
    weft::thread_pool* m_pool;
    bool await_ready() const noexcept { return true; }
    void await_suspend(std::coroutine_handle<>) const noexcept {}
    void await_resume() const noexcept {
        if (m_pool->running_in_this_thread()) {
            ++*m_on_pool;
        }
        m_latch->count_down();
    }
};
} // namespace

TEST_CASE("inline executor resumes at once without suspending", "[executor]") {
    weft::inline_executor ex;
    CHECK(ex.schedule().await_ready());
    auto t = [&]() -> task<int> {
        co_await ex.schedule();
        co_return 5;
    };
    CHECK(weft::sync_wait(t()) == 5);
}

TEST_CASE("spawn runs tasks and other awaitables on the thread pool, detached", "[spawn]") {
    weft::thread_pool pool(2);
    weft::async_latch done(2);
    std::atomic<int> on_pool{0};
    auto work = [&]() -> task<void> {
        if (pool.running_in_this_thread()) {
            ++on_pool;
        }
        done.count_down();
        co_return;
    };
    weft::spawn(pool, work());
    weft::spawn(pool, count_down_awaitable{&done, &on_pool, &pool});
    weft::sync_wait(done.wait());
    CHECK(on_pool == 2);
}

TEST_CASE("spawn onto a user-defined executor runs when that executor runs", "[spawn]") {
    manual_executor ex;
    int ran = 0;
    auto work = [&]() -> task<void> {
        ++ran;
        co_return;
    };
    weft::spawn(ex, work());
    CHECK(ran == 0);
    ex.run_all();
    CHECK(ran == 1);
}

TEST_CASE("on moves a coroutine onto the executor", "[spawn]") {
    weft::thread_pool pool(2);
    auto t = [&]() -> task<bool> {
        const bool before = pool.running_in_this_thread();
        co_await weft::on(pool);
        co_return !before && pool.running_in_this_thread();
    };
    CHECK(weft::sync_wait(t()));
}

TEST_CASE("resume_on brings the result back to the given executor", "[spawn]") {
    weft::thread_pool pool(2);
    manual_executor home;
    auto on_pool = [&]() -> task<int> {
        co_await pool.schedule();
        co_return 7;
    };
    auto fails_on_pool = [&]() -> task<int> {
        co_await pool.schedule();
        throw std::runtime_error("pool");
        co_return 0;
    };
    auto t = [&]() -> task<int> {
        const int v = co_await weft::resume_on(home, on_pool());
        CHECK_FALSE(pool.running_in_this_thread());
        try {
            co_await weft::resume_on(home, fails_on_pool());
        } catch (const std::runtime_error&) {
            CHECK_FALSE(pool.running_in_this_thread());
            co_return v + 1;
        }
        co_return -1;
    };
    std::atomic<bool> finished{false};
    int result = 0;
    std::jthread waiter([&] {
        result = weft::sync_wait(t());
        finished = true;
    });
    // The coroutine comes back to `home`, which this thread drives.
    while (!finished) {
        home.run_all();
        std::this_thread::yield();
    }
    waiter.join();
    CHECK(result == 8);
}
