// io_context itself, on both backends (io_uring, falling back to epoll where
// the kernel refuses it, and epoll): run, post and schedule from other
// threads, stop, timers and their cancellation, and the choice of backend.
// TCP, files and signals are in tcp_file_signal_test.cpp.
#include "io_test_support.hpp"
#include "test_support.hpp"

#include <weft/concepts.hpp>
#include <weft/io/io_context.hpp>
#include <weft/stop.hpp>
#include <weft/task.hpp>
#include <weft/when_all.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using weft::io::io_backend;
using weft::io::io_context;
using weft::io::test::backend_under_test;
using weft::task;

static_assert(weft::scheduler<io_context>);

TEST_CASE("run of a task returns its value and rethrows its exception", "[io]") {
    io_context ctx(backend_under_test());
    CHECK(ctx.backend() != io_backend::automatic);
    auto answer = []() -> task<int> { co_return 42; };
    CHECK(ctx.run(answer()) == 42);
    auto fail = []() -> task<void> {
        throw std::runtime_error("boom");
        co_return;
    };
    CHECK_THROWS_AS(ctx.run(fail()), std::runtime_error);
}

TEST_CASE("post from a foreign thread resumes the coroutine on the loop thread", "[io]") {
    io_context ctx(backend_under_test());
    const auto loop_thread = std::this_thread::get_id();
    auto body = [&]() -> task<bool> {
        std::thread other;
        struct hop {
            io_context& ctx;
            std::thread& other;
            bool await_ready() const noexcept { return false; }
            void await_suspend(std::coroutine_handle<> h) {
                other = std::thread([this, h] { ctx.post(h); });
            }
            void await_resume() const noexcept {}
        };
        co_await hop{ctx, other};
        const bool on_loop = std::this_thread::get_id() == loop_thread;
        other.join();
        co_return on_loop;
    };
    CHECK(ctx.run(body()));
}

TEST_CASE("post_bulk from a foreign thread resumes every handle on the loop thread, in order", "[io]") {
    io_context ctx(backend_under_test());
    const auto loop_thread = std::this_thread::get_id();
    constexpr int waiters = 5;
    std::vector<std::coroutine_handle<>> parked;
    std::vector<int> order;
    int on_loop = 0;
    struct park {
        std::vector<std::coroutine_handle<>>& parked;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<> h) { parked.push_back(h); }
        void await_resume() const noexcept {}
    };
    auto waiter = [&](int i) -> task<void> {
        co_await park{parked};
        order.push_back(i);
        if (std::this_thread::get_id() == loop_thread) ++on_loop;
    };
    auto release = [&]() -> task<void> {
        // Every waiter has parked by the time this runs (when_all starts them in order).
        std::thread other([&] { ctx.post_bulk(parked); });
        other.join();
        co_return;
    };
    auto body = [&]() -> task<void> {
        co_await weft::when_all(waiter(0), waiter(1), waiter(2), waiter(3), waiter(4), release());
    };
    ctx.run(body());
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
    CHECK(on_loop == waiters);
    ctx.post_bulk({}); // nothing to post: no effect
}

TEST_CASE("posts from another thread resume the loop whether it sleeps, is falling asleep or runs", "[io][stress]") {
    // The loop is woken only while it sleeps in the backend (or is about to):
    // a post must never land between its last look at the queue and its
    // sleep unseen. The other thread posts at once (the loop is still
    // running or just going to sleep: most rounds, as that is the narrow
    // window), after a short spin, or after a sleep (the loop is blocked). A
    // lost wake-up hangs the test.
    io_context ctx(backend_under_test());
    constexpr int rounds = 20000;
    std::atomic<void*> slot{nullptr};
    std::atomic<bool> done{false};
    std::thread poster([&] {
        for (int i = 0; !done.load(std::memory_order_acquire); ) {
            void* h = slot.exchange(nullptr, std::memory_order_acq_rel);
            if (h == nullptr) {
                std::this_thread::yield();
                continue;
            }
            switch (i++ % 8) {
            case 6:
                for (int spin = 0; spin < 200; ++spin) std::atomic_signal_fence(std::memory_order_seq_cst);
                break;
            case 7: std::this_thread::sleep_for(std::chrono::microseconds(50)); break;
            default: break;
            }
            ctx.post(std::coroutine_handle<>::from_address(h));
        }
    });
    struct hop {
        std::atomic<void*>& slot;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<> h) { slot.store(h.address(), std::memory_order_release); }
        void await_resume() const noexcept {}
    };
    auto body = [&]() -> task<int> {
        int n = 0;
        for (int i = 0; i < rounds; ++i) {
            co_await hop{slot};
            ++n;
        }
        co_return n;
    };
    const int resumed = ctx.run(body());
    done.store(true, std::memory_order_release);
    poster.join();
    CHECK(resumed == rounds);
}

TEST_CASE("schedule from another thread moves the coroutine onto the loop", "[io]") {
    io_context ctx(backend_under_test());
    std::thread::id seen;
    std::thread loop([&] { ctx.run(); });
    const auto loop_id = loop.get_id();
    auto body = [&]() -> task<void> {
        co_await ctx.schedule();
        seen = std::this_thread::get_id();
        ctx.stop();
    };
    task<void> t = body();
    t.handle().resume(); // runs on this thread until the schedule
    loop.join();
    CHECK(t.is_ready());
    CHECK(seen == loop_id);
}

TEST_CASE("stop before run makes run return at once", "[io]") {
    io_context ctx(backend_under_test());
    ctx.stop();
    ctx.run();
    SUCCEED();
}

TEST_CASE("sleep_for waits at least the duration", "[io]") {
    io_context ctx(backend_under_test());
    auto body = [&]() -> task<int> {
        const auto start = std::chrono::steady_clock::now();
        co_await weft::io::sleep_for(ctx, 20ms);
        CHECK(std::chrono::steady_clock::now() - start >= 20ms);
        co_await weft::io::sleep_until(ctx, std::chrono::steady_clock::now() - 1s); // already past
        co_return 0;
    };
    ctx.run(body());
}

TEST_CASE("cancelling a pending sleep throws operation_cancelled and leaves the loop usable", "[io]") {
    io_context ctx(backend_under_test());
    std::stop_source stop;
    auto sleeper = [&]() -> task<bool> {
        try {
            co_await weft::io::sleep_for(ctx, 1h);
        } catch (const weft::operation_cancelled&) {
            co_return true;
        }
        co_return false;
    };
    auto canceller = [&]() -> task<void> {
        co_await weft::io::sleep_for(ctx, 5ms);
        stop.request_stop();
    };
    auto both = [&]() -> task<bool> {
        auto [cancelled, _] = co_await weft::when_all(sleeper(), canceller());
        co_return cancelled;
    };
    CHECK(ctx.run(both(), stop.get_token()));
    auto again = [&]() -> task<int> {
        co_await weft::io::sleep_for(ctx, 1ms);
        co_return 7;
    };
    CHECK(ctx.run(again()) == 7);
}

TEST_CASE("WEFT_IO_BACKEND=epoll makes an automatic context use epoll", "[io]") {
    ::setenv("WEFT_IO_BACKEND", "epoll", 1);
    io_context ctx;
    ::unsetenv("WEFT_IO_BACKEND");
    CHECK(ctx.backend() == io_backend::epoll);
    io_context explicit_epoll(io_backend::epoll);
    CHECK(explicit_epoll.backend() == io_backend::epoll);
}

TEST_CASE("many foreign threads scheduling onto a running loop all resume on it", "[io]") {
    io_context ctx(backend_under_test());
    constexpr int threads = 4;
    const int per_thread = weft::test::sanitized ? 200 : 1000;
    const auto loop_thread = std::this_thread::get_id();
    int resumed = 0; // loop thread only
    int off_loop = 0;
    auto hop = [&]() -> task<void> {
        co_await ctx.schedule();
        off_loop += std::this_thread::get_id() == loop_thread ? 0 : 1;
        if (++resumed == threads * per_thread) {
            ctx.stop();
        }
    };
    std::vector<task<void>> tasks;
    for (int i = 0; i < threads * per_thread; ++i) {
        tasks.push_back(hop());
    }
    std::vector<std::thread> starters;
    for (int t = 0; t < threads; ++t) {
        starters.emplace_back([&, t] {
            for (int i = 0; i < per_thread; ++i) {
                tasks[static_cast<std::size_t>(t * per_thread + i)].handle().resume();
            }
        });
    }
    ctx.run();
    for (auto& th : starters) {
        th.join();
    }
    CHECK(resumed == threads * per_thread);
    CHECK(off_loop == 0);
    CHECK(std::all_of(tasks.begin(), tasks.end(), [](const task<void>& t) { return t.is_ready(); }));
}

TEST_CASE("stop requests racing completions either cancel or complete, never both", "[io]") {
    io_context ctx(backend_under_test());
    const int rounds = weft::test::sanitized ? 50 : 200;
    int completed = 0;
    int cancelled = 0;
    for (int i = 0; i < rounds; ++i) {
        std::stop_source stop;
        auto sleeper = [&]() -> task<void> {
            try {
                co_await weft::io::sleep_for(ctx, std::chrono::microseconds(200 + (i % 7) * 50));
                ++completed;
            } catch (const weft::operation_cancelled&) {
                ++cancelled;
            }
        };
        std::thread stopper([&] {
            std::this_thread::sleep_for(std::chrono::microseconds(150 + (i % 5) * 50));
            stop.request_stop();
        });
        ctx.run(sleeper(), stop.get_token());
        stopper.join();
    }
    CHECK(completed + cancelled == rounds);
}
