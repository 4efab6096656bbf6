#include "test_support.hpp"

#include <weft/async_scope.hpp>
#include <weft/inline_executor.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <stdexcept>
#include <thread>

using weft::async_scope;
using weft::task;
using weft::test::manual_executor;

TEST_CASE("async_scope join waits for every spawned task", "[async_scope]") {
    manual_executor ex;
    std::atomic<int> done{0};
    auto work = [&]() -> task<void> {
        co_await ex.schedule();
        ++done;
    };
    auto main_task = [&]() -> task<int> {
        async_scope scope;
        for (int i = 0; i < 100; ++i) {
            scope.spawn(ex, work());
        }
        CHECK(scope.outstanding() == 100);
        co_await scope.join();
        CHECK(scope.outstanding() == 0);
        co_return done.load();
    };
    std::jthread driver([&](std::stop_token st) {
        while (!st.stop_requested()) {
            ex.run_all();
            std::this_thread::yield();
        }
    });
    CHECK(weft::sync_wait(main_task()) == 100);
}

TEST_CASE("async_scope join rethrows the first exception after all finish", "[async_scope]") {
    int finished = 0;
    auto ok = [&]() -> task<void> {
        ++finished;
        co_return;
    };
    auto bad = []() -> task<void> {
        throw std::runtime_error("scope");
        co_return;
    };
    auto main_task = [&]() -> task<void> {
        async_scope scope;
        weft::inline_executor ex;
        scope.spawn(ex, bad());
        scope.spawn(ex, ok());
        scope.spawn(ok());
        co_await scope.join();
    };
    CHECK_THROWS_AS(weft::sync_wait(main_task()), std::runtime_error);
    CHECK(finished == 2);
}

TEST_CASE("async_scope request_stop cancels its tasks", "[async_scope][stop]") {
    int cancelled = 0;
    auto waiter = [&]() -> task<void> {
        try {
            co_await weft::test::wait_for_stop{};
        } catch (const weft::operation_cancelled&) {
            ++cancelled;
        }
    };
    auto main_task = [&]() -> task<void> {
        async_scope scope;
        for (int i = 0; i < 3; ++i) {
            scope.spawn(waiter());
        }
        CHECK(scope.outstanding() == 3);
        scope.request_stop();
        co_await scope.join();
    };
    weft::sync_wait(main_task());
    CHECK(cancelled == 3);
}

TEST_CASE("async_scope can be reused after join", "[async_scope]") {
    auto main_task = []() -> task<int> {
        async_scope scope;
        int n = 0;
        auto inc = [](int& x) -> task<void> {
            ++x;
            co_return;
        };
        scope.spawn(inc(n));
        co_await scope.join();
        scope.spawn(inc(n));
        scope.spawn(inc(n));
        co_await scope.join();
        co_await scope.join(); // nothing outstanding: completes at once
        co_return n;
    };
    CHECK(weft::sync_wait(main_task()) == 3);
}

TEST_CASE("async_scope frees spawned frames before join returns", "[async_scope][lifetime]") {
    using weft::test::lifetime_counter;
    lifetime_counter::reset();
    manual_executor ex;
    auto work = [&](lifetime_counter c) -> task<void> {
        co_await ex.schedule();
        (void)c;
    };
    auto main_task = [&]() -> task<void> {
        async_scope scope;
        scope.spawn(ex, work(lifetime_counter{1}));
        scope.spawn(ex, work(lifetime_counter{2}));
        co_await scope.join();
        CHECK(lifetime_counter::live == 0);
    };
    std::jthread driver([&](std::stop_token st) {
        while (!st.stop_requested()) {
            ex.run_all();
            std::this_thread::yield();
        }
    });
    weft::sync_wait(main_task());
}
