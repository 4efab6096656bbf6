#include "test_support.hpp"

#include <weft/stop.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>
#include <weft/when_any.hpp>

#include <catch2/catch.hpp>

#include <stdexcept>
#include <thread>
#include <vector>

using weft::task;
using weft::test::manual_executor;
using weft::test::wait_for_stop;

namespace {
task<int> value(int v) { co_return v; }
} // namespace

TEST_CASE("when_any yields the first result and stops and awaits the losers", "[when_any]") {
    int losers_finished = 0;
    auto loser = [&]() -> task<int> {
        try {
            co_await wait_for_stop{};
        } catch (const weft::operation_cancelled&) {
            ++losers_finished;
            throw;
        }
        co_return -1;
    };
    auto outer = [&]() -> task<int> {
        auto r = co_await weft::when_any(loser(), value(7), loser());
        CHECK(losers_finished == 2); // none left running
        CHECK(r.index() == 1);
        co_return std::get<1>(r);
    };
    CHECK(weft::sync_wait(outer()) == 7);
}

TEST_CASE("when_any waits for a winner that completes later on another thread", "[when_any]") {
    manual_executor ex;
    auto later = [&](int v) -> task<int> {
        co_await ex.schedule();
        co_return v;
    };
    auto forever = []() -> task<int> {
        co_await wait_for_stop{};
        co_return 0;
    };
    std::vector<task<int>> tasks;
    tasks.push_back(forever());
    tasks.push_back(later(5));
    std::jthread driver([&] {
        while (ex.run_all() == 0) {
            std::this_thread::yield();
        }
    });
    auto r = weft::sync_wait(weft::when_any(std::move(tasks)));
    CHECK(r.index == 1);
    CHECK(r.value == 5);
}

TEST_CASE("when_any rethrows when the first to finish threw", "[when_any]") {
    auto thrower = []() -> task<int> {
        throw std::runtime_error("lost");
        co_return 0;
    };
    auto forever = []() -> task<int> {
        co_await wait_for_stop{};
        co_return 0;
    };
    CHECK_THROWS_AS(weft::sync_wait(weft::when_any(thrower(), forever())), std::runtime_error);
}

TEST_CASE("when_any forwards a stop of its awaiter to every child", "[when_any][stop]") {
    std::stop_source source;
    auto forever = []() -> task<int> {
        co_await wait_for_stop{};
        co_return 0;
    };
    std::jthread stopper([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        source.request_stop();
    });
    CHECK_THROWS_AS(weft::sync_wait(weft::when_any(forever(), forever()), source.get_token()),
                    weft::operation_cancelled);
}

TEST_CASE("when_any over an empty range is rejected", "[when_any]") {
    CHECK_THROWS_AS(weft::sync_wait(weft::when_any(std::vector<task<int>>{})), std::invalid_argument);
}

TEST_CASE("when_any over void tasks yields the winner's index", "[when_any]") {
    auto done = []() -> task<void> { co_return; };
    auto forever = []() -> task<void> { co_await wait_for_stop{}; };
    std::vector<task<void>> tasks;
    tasks.push_back(forever());
    tasks.push_back(done());
    CHECK(weft::sync_wait(weft::when_any(std::move(tasks))).index == 1);
}
