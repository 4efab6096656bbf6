#include "test_support.hpp"

#include <weft/sync_wait.hpp>
#include <weft/task.hpp>
#include <weft/when_all.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using weft::task;
using weft::test::manual_executor;

namespace {
task<int> value(int v) { co_return v; }
task<void> nothing() { co_return; }
} // namespace

TEST_CASE("when_all yields results in argument order", "[when_all]") {
    auto [a, b, c] = weft::sync_wait(weft::when_all(value(1), nothing(), value(3)));
    CHECK(a == 1);
    CHECK(b == std::monostate{});
    CHECK(c == 3);
}

TEST_CASE("when_all over a range yields results in input order", "[when_all]") {
    manual_executor ex;
    auto later = [&](int v) -> task<int> {
        co_await ex.schedule();
        co_return v;
    };
    std::vector<task<int>> tasks;
    for (int i = 0; i < 10; ++i) {
        tasks.push_back(later(i * i));
    }
    std::jthread driver([&](std::stop_token st) {
        while (!st.stop_requested()) {
            ex.run_all();
            std::this_thread::yield();
        }
    });
    auto results = weft::sync_wait(weft::when_all(std::move(tasks)));
    REQUIRE(results.size() == 10);
    for (int i = 0; i < 10; ++i) {
        CHECK(results[static_cast<std::size_t>(i)] == i * i);
    }
}

TEST_CASE("when_all over an empty range completes at once", "[when_all]") {
    CHECK(weft::sync_wait(weft::when_all(std::vector<task<int>>{})).empty());
    weft::sync_wait(weft::when_all(std::vector<task<void>>{}));
}

TEST_CASE("when_all runs its children concurrently", "[when_all]") {
    manual_executor ex;
    int started = 0;
    auto child = [&](int v) -> task<int> {
        ++started;
        co_await ex.schedule();
        co_return v;
    };
    auto outer = [&]() -> task<int> {
        auto [a, b] = co_await weft::when_all(child(1), child(2));
        co_return a + b;
    };
    // Both children reach the executor before either is resumed.
    std::jthread driver([&] {
        while (ex.pending() < 2) {
            std::this_thread::yield();
        }
        CHECK(started == 2);
        ex.run_all();
    });
    CHECK(weft::sync_wait(outer()) == 3);
}

TEST_CASE("when_all rethrows the first exception only after every child finished",
          "[when_all]") {
    manual_executor ex;
    bool slow_finished = false;
    std::atomic<bool> first_done{false};
    auto fails_first = []() -> task<int> {
        throw std::runtime_error("first");
        co_return 0;
    };
    // Everything here runs in FIFO order on this thread's trampoline. When
    // after_first starts, fails_first has finished, and the hand-over of its
    // exception to when_all is queued; one more hop lets that run first.
    auto after_first = [&]() -> task<int> {
        co_await value(0);
        first_done = true;
        co_return 1;
    };
    auto fails_later = [&]() -> task<int> {
        co_await ex.schedule();
        slow_finished = true;
        throw std::logic_error("second");
        co_return 0;
    };
    auto outer = [&]() -> task<std::string> {
        try {
            co_await weft::when_all(fails_later(), fails_first(), after_first());
        } catch (const std::runtime_error& e) {
            CHECK(slow_finished);
            co_return e.what();
        }
        co_return "nothing thrown";
    };
    // The slow child may fail only after the fast one has thrown.
    std::jthread driver([&] {
        while (!first_done || ex.run_all() == 0) {
            std::this_thread::yield();
        }
    });
    CHECK(weft::sync_wait(outer()) == "first");
}

TEST_CASE("when_all children share the awaiting coroutine's stop token", "[when_all][stop]") {
    std::stop_source source;
    auto read = []() -> task<std::stop_token> { co_return co_await weft::get_stop_token(); };
    auto [a, b] = weft::sync_wait(weft::when_all(read(), read()), source.get_token());
    CHECK(a == source.get_token());
    CHECK(b == source.get_token());
}

TEST_CASE("when_all destroys every child and its locals", "[when_all][lifetime]") {
    using weft::test::lifetime_counter;
    lifetime_counter::reset();
    {
        auto child = [](lifetime_counter c) -> task<lifetime_counter> { co_return c; };
        auto [a, b] = weft::sync_wait(weft::when_all(child(lifetime_counter{1}), child(lifetime_counter{2})));
        CHECK(a.value + b.value == 3);
        CHECK(lifetime_counter::live == 2);
    }
    CHECK(lifetime_counter::live == 0);
}
