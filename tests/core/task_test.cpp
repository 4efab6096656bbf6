#include "test_support.hpp"

#include <weft/concepts.hpp>
#include <weft/inline_executor.hpp>
#include <weft/stop.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>
#include <weft/with_stop_token.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>

using weft::task;
using weft::test::lifetime_counter;

static_assert(weft::awaitable<task<int>>);
static_assert(weft::awaitable<task<void>&>);
static_assert(std::is_same_v<weft::await_result_t<task<int>>, int>);
static_assert(std::is_same_v<weft::await_result_t<task<int&>>, int&>);
static_assert(std::is_same_v<weft::await_result_t<task<void>>, void>);
static_assert(!std::is_copy_constructible_v<task<int>>);
static_assert(std::is_nothrow_move_constructible_v<task<int>>);
static_assert(!weft::awaitable<int>);
static_assert(weft::scheduler<weft::inline_executor>);
static_assert(weft::scheduler<weft::test::manual_executor>);
static_assert(!weft::scheduler<task<int>>);

namespace {

task<int> answer() { co_return 42; }

task<int> add_one(task<int> t) { co_return co_await std::move(t) + 1; }

std::uintptr_t stack_address() {
    volatile char marker = 0;
    return reinterpret_cast<std::uintptr_t>(&marker);
}

} // namespace

TEST_CASE("task does not start until awaited", "[task]") {
    bool started = false;
    auto make = [&]() -> task<void> {
        started = true;
        co_return;
    };
    task<void> t = make();
    CHECK_FALSE(started);
    weft::sync_wait(std::move(t));
    CHECK(started);
}

TEST_CASE("task yields the value it returns", "[task]") {
    CHECK(weft::sync_wait(answer()) == 42);
    CHECK(weft::sync_wait(add_one(add_one(answer()))) == 44);
}

TEST_CASE("task of a reference yields the very object", "[task]") {
    std::string s = "x";
    auto ref = [](std::string& r) -> task<std::string&> { co_return r; };
    std::string& got = weft::sync_wait(ref(s));
    CHECK(&got == &s);
}

TEST_CASE("task supports move-only results", "[task]") {
    auto make = []() -> task<std::unique_ptr<int>> { co_return std::make_unique<int>(7); };
    auto outer = [&]() -> task<int> {
        std::unique_ptr<int> p = co_await make();
        co_return *p;
    };
    CHECK(weft::sync_wait(outer()) == 7);
}

TEST_CASE("task propagates exceptions to its awaiter", "[task]") {
    auto thrower = []() -> task<int> {
        throw std::runtime_error("boom");
        co_return 0;
    };
    auto outer = [&]() -> task<std::string> {
        try {
            co_await thrower();
        } catch (const std::runtime_error& e) {
            co_return e.what();
        }
        co_return "no exception";
    };
    CHECK(weft::sync_wait(outer()) == "boom");
    CHECK_THROWS_AS(weft::sync_wait(thrower()), std::runtime_error);
}

TEST_CASE("task awaited as an lvalue works", "[task]") {
    auto outer = []() -> task<int> {
        task<int> t = answer();
        CHECK_FALSE(t.is_ready());
        int v = co_await t;
        CHECK(t.is_ready());
        co_return v;
    };
    CHECK(weft::sync_wait(outer()) == 42);
}

TEST_CASE("a million synchronously completing awaits do not grow the stack", "[task][stack]") {
    std::uintptr_t lowest = UINTPTR_MAX;
    std::uintptr_t highest = 0;
    auto leaf = [&](int i) -> task<int> {
        const std::uintptr_t here = stack_address();
        lowest = std::min(lowest, here);
        highest = std::max(highest, here);
        co_return i & 1;
    };
    auto loop = [&]() -> task<long> {
        long sum = 0;
        for (int i = 0; i < 1'000'000; ++i) {
            sum += co_await leaf(i);
        }
        co_return sum;
    };
    CHECK(weft::sync_wait(loop()) == 500'000);
    // Every leaf runs at the same depth from the trampoline: the spread is a
    // few frames at most, never proportional to the iteration count.
    CHECK(highest - lowest < 4096);
}

TEST_CASE("a deep chain of nested tasks completes", "[task][stack]") {
    struct chain {
        static task<int> run(int depth) {
            if (depth == 0) {
                co_return 0;
            }
            co_return 1 + co_await run(depth - 1);
        }
    };
    CHECK(weft::sync_wait(chain::run(10'000)) == 10'000);
}

TEST_CASE("task frames and their locals are destroyed exactly once", "[task][lifetime]") {
    lifetime_counter::reset();
    {
        auto body = [](lifetime_counter arg) -> task<lifetime_counter> {
            lifetime_counter local{arg.value + 1};
            co_return local;
        };
        auto outer = [&]() -> task<int> {
            lifetime_counter r = co_await body(lifetime_counter{1});
            co_return r.value;
        };
        CHECK(weft::sync_wait(outer()) == 2);
        CHECK(lifetime_counter::live == 0);

        // Never awaited: destroying the task destroys the parameter copy.
        task<lifetime_counter> unstarted = body(lifetime_counter{5});
        CHECK(lifetime_counter::live == 1);
    }
    CHECK(lifetime_counter::live == 0);
}

TEST_CASE("a moved-from task is empty and the moved-to one runs", "[task]") {
    task<int> a = answer();
    task<int> b = std::move(a);
    CHECK_FALSE(a.valid());
    CHECK(b.valid());
    a = std::move(b);
    CHECK(weft::sync_wait(std::move(a)) == 42);
}

TEST_CASE("task inherits the stop token of its awaiter", "[task][stop]") {
    std::stop_source source;
    auto inner = []() -> task<std::stop_token> { co_return co_await weft::get_stop_token(); };
    auto outer = [&]() -> task<bool> {
        std::stop_token t = co_await inner();
        co_return t == source.get_token();
    };
    CHECK(weft::sync_wait(outer(), source.get_token()));

    auto unstoppable = [&]() -> task<bool> {
        std::stop_token t = co_await inner();
        co_return !t.stop_possible();
    };
    CHECK(weft::sync_wait(unstoppable()));
}

TEST_CASE("with_stop_token gives awaited work another token", "[task][stop]") {
    std::stop_source outer_source;
    std::stop_source inner_source;
    auto read = []() -> task<std::stop_token> { co_return co_await weft::get_stop_token(); };
    auto outer = [&]() -> task<bool> {
        std::stop_token t = co_await weft::with_stop_token(read(), inner_source.get_token());
        std::stop_token mine = co_await weft::get_stop_token();
        co_return t == inner_source.get_token() && mine == outer_source.get_token();
    };
    CHECK(weft::sync_wait(outer(), outer_source.get_token()));
}

TEST_CASE("a task that moves to another thread resumes its awaiter there", "[task][threads]") {
    weft::test::manual_executor ex;
    auto hop = [&]() -> task<std::thread::id> {
        co_await ex.schedule();
        co_return std::this_thread::get_id();
    };
    auto outer = [&]() -> task<bool> {
        const std::thread::id worker = co_await hop();
        co_return worker == std::this_thread::get_id();
    };
    std::jthread driver([&] {
        while (ex.run_all() == 0) {
            std::this_thread::yield();
        }
    });
    CHECK(weft::sync_wait(outer()));
}

TEST_CASE("sync_wait rethrows and returns references", "[sync_wait]") {
    auto thrower = []() -> task<void> {
        throw std::logic_error("x");
        co_return;
    };
    CHECK_THROWS_AS(weft::sync_wait(thrower()), std::logic_error);
    int x = 3;
    auto ref = [&]() -> task<int&> { co_return x; };
    CHECK(&weft::sync_wait(ref()) == &x);
}

TEST_CASE("sync_wait inside a coroutine does not deadlock on local work", "[sync_wait]") {
    auto outer = []() -> task<int> { co_return weft::sync_wait(answer()) + 1; };
    CHECK(weft::sync_wait(outer()) == 43);
}
