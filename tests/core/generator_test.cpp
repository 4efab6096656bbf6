#include "test_support.hpp"

#include <weft/async_generator.hpp>
#include <weft/generator.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using weft::async_generator;
using weft::generator;
using weft::task;
using weft::test::lifetime_counter;

static_assert(std::input_iterator<generator<int>::iterator>);

namespace {
generator<int> iota(int n) {
    for (int i = 0; i < n; ++i) {
        co_yield i;
    }
}
} // namespace

TEST_CASE("generator yields its sequence lazily", "[generator]") {
    bool started = false;
    auto gen = [&]() -> generator<int> {
        started = true;
        co_yield 1;
        co_yield 2;
    };
    auto g = gen();
    CHECK_FALSE(started);
    std::vector<int> got;
    for (int v : g) {
        got.push_back(v);
    }
    CHECK(got == std::vector<int>{1, 2});
}

TEST_CASE("generator of references yields the objects themselves", "[generator]") {
    std::vector<std::string> words{"a", "b"};
    auto refs = [&]() -> generator<std::string&> {
        for (auto& w : words) {
            co_yield w;
        }
    };
    for (std::string& w : refs()) {
        w += "!";
    }
    CHECK(words == std::vector<std::string>{"a!", "b!"});
}

TEST_CASE("generator rethrows what escapes the coroutine", "[generator]") {
    auto bad = []() -> generator<int> {
        co_yield 1;
        throw std::runtime_error("gen");
    };
    auto g = bad();
    auto it = g.begin();
    CHECK(*it == 1);
    CHECK_THROWS_AS(++it, std::runtime_error);
}

TEST_CASE("abandoning a generator destroys its locals", "[generator][lifetime]") {
    lifetime_counter::reset();
    {
        auto gen = []() -> generator<int> {
            lifetime_counter local{1};
            for (int i = 0;; ++i) {
                co_yield i;
            }
        };
        for (int v : gen()) {
            if (v == 3) {
                CHECK(lifetime_counter::live == 1);
                break;
            }
        }
    }
    CHECK(lifetime_counter::live == 0);
}

TEST_CASE("an empty generator yields nothing", "[generator]") {
    int n = 0;
    for (int v : iota(0)) {
        n += v + 1;
    }
    CHECK(n == 0);
}

namespace {
async_generator<int> async_iota(int n) {
    for (int i = 0; i < n; ++i) {
        co_yield i;
    }
}
task<int> twice(int v) { co_return 2 * v; }
} // namespace

TEST_CASE("async_generator awaits between yields", "[async_generator]") {
    auto gen = []() -> async_generator<int> {
        for (int i = 0; i < 5; ++i) {
            co_yield co_await twice(i);
        }
    };
    auto consume = [&]() -> task<std::vector<int>> {
        std::vector<int> out;
        auto g = gen();
        for (auto it = co_await g.begin(); it != g.end(); co_await ++it) {
            out.push_back(*it);
        }
        co_return out;
    };
    CHECK(weft::sync_wait(consume()) == std::vector<int>{0, 2, 4, 6, 8});
}

TEST_CASE("async_generator next moves values out until the end", "[async_generator]") {
    auto gen = []() -> async_generator<std::unique_ptr<int>> {
        co_yield std::make_unique<int>(1);
        co_yield std::make_unique<int>(2);
    };
    auto consume = [&]() -> task<int> {
        int sum = 0;
        auto g = gen();
        while (auto v = co_await g.next()) {
            sum += **v;
        }
        co_return sum;
    };
    CHECK(weft::sync_wait(consume()) == 3);
}

TEST_CASE("async_generator rethrows the producer's exception to the consumer",
          "[async_generator]") {
    auto gen = []() -> async_generator<int> {
        co_yield 1;
        throw std::runtime_error("producer");
    };
    auto consume = [&]() -> task<int> {
        auto g = gen();
        int n = 0;
        try {
            while (auto v = co_await g.next()) {
                n += *v;
            }
        } catch (const std::runtime_error&) {
            n += 100;
        }
        co_return n;
    };
    CHECK(weft::sync_wait(consume()) == 101);
}

TEST_CASE("async_generator producer sees the consumer's stop token", "[async_generator][stop]") {
    std::stop_source source;
    auto gen = []() -> async_generator<std::stop_token> { co_yield co_await weft::get_stop_token(); };
    auto consume = [&]() -> task<bool> {
        auto g = gen();
        auto t = co_await g.next();
        co_return t.has_value() && *t == source.get_token();
    };
    CHECK(weft::sync_wait(consume(), source.get_token()));
}

TEST_CASE("abandoning an async_generator destroys the producer's locals",
          "[async_generator][lifetime]") {
    lifetime_counter::reset();
    auto gen = []() -> async_generator<int> {
        lifetime_counter local{1};
        for (int i = 0;; ++i) {
            co_yield i;
        }
    };
    auto consume = [&]() -> task<void> {
        auto g = gen();
        co_await g.next();
        co_await g.next();
        CHECK(lifetime_counter::live == 1);
    };
    weft::sync_wait(consume());
    CHECK(lifetime_counter::live == 0);
}

TEST_CASE("a million async_generator steps do not grow the stack",
          "[async_generator][stack]") {
    std::uintptr_t lowest = UINTPTR_MAX;
    std::uintptr_t highest = 0;
    auto consume = [&]() -> task<long> {
        long sum = 0;
        auto g = async_iota(1'000'000);
        while (auto v = co_await g.next()) {
            volatile char marker = 0;
            const auto here = reinterpret_cast<std::uintptr_t>(&marker);
            lowest = std::min(lowest, here);
            highest = std::max(highest, here);
            sum += *v;
        }
        co_return sum;
    };
    CHECK(weft::sync_wait(consume()) == 499'999'500'000L);
    CHECK(highest - lowest < 4096);
}

TEST_CASE("async_generator producer can move to another thread", "[async_generator][threads]") {
    weft::test::manual_executor ex;
    auto gen = [&]() -> async_generator<std::thread::id> {
        co_await ex.schedule();
        co_yield std::this_thread::get_id();
    };
    auto consume = [&]() -> task<bool> {
        auto g = gen();
        auto id = co_await g.next();
        // The consumer is resumed where the producer yielded.
        co_return id.has_value() && *id == std::this_thread::get_id();
    };
    std::jthread driver([&] {
        while (ex.run_all() == 0) {
            std::this_thread::yield();
        }
    });
    CHECK(weft::sync_wait(consume()));
}
