#include "test_support.hpp"

#include <weft/strand.hpp>

#include <weft/concepts.hpp>
#include <weft/detail/trampoline.hpp>
#include <weft/inline_executor.hpp>
#include <weft/spawn.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>
#include <weft/thread_pool.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <coroutine>
#include <deque>
#include <latch>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using weft::test::sanitized;

/// A user-defined, single-threaded executor: queues handles until run().
class manual_executor {
public:
    struct awaiter {
        manual_executor* m_ex;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<> h) {
            m_ex->m_queue.push_back(h);
            ++m_ex->m_schedules;
        }
        void await_resume() const noexcept {}
    };
    awaiter schedule() noexcept { return awaiter{this}; }

    /// Runs until nothing is queued; returns how many handles it resumed.
    std::size_t run() {
        std::size_t n = 0;
        while (!m_queue.empty()) {
            auto h = m_queue.front();
            m_queue.pop_front();
            weft::detail::resume(h);
            ++n;
        }
        return n;
    }
    std::size_t schedules() const noexcept { return m_schedules; }

private:
    std::deque<std::coroutine_handle<>> m_queue;
    std::size_t m_schedules = 0;
};

static_assert(weft::scheduler<manual_executor>);
static_assert(weft::scheduler<weft::strand<weft::thread_pool>>);
static_assert(weft::scheduler<weft::strand<weft::inline_executor>>);
static_assert(weft::scheduler<weft::strand<manual_executor>>);
static_assert(weft::scheduler<weft::strand<weft::strand<weft::thread_pool>>>);

/// State that only coroutines on one strand touch: plain, non-atomic fields,
/// so that ThreadSanitizer reports any overlap, plus an explicit check.
struct guarded {
    long counter = 0;
    std::vector<int> order;
    std::atomic<bool> in_turn{false};
    std::atomic<int> overlaps{0};
    std::atomic<int> off_strand{0};

    void enter() {
        if (in_turn.exchange(true, std::memory_order_acquire)) {
            overlaps.fetch_add(1);
        }
    }
    void leave() { in_turn.store(false, std::memory_order_release); }
};

template <class Strand>
weft::task<> bump(Strand& s, guarded& g, std::latch& done, int rounds) {
    for (int r = 0; r < rounds; ++r) {
        co_await s.schedule();
        g.enter();
        if (!s.running_in_this_thread()) {
            g.off_strand.fetch_add(1);
        }
        const long seen = g.counter;
        std::this_thread::yield(); // widen the window for a would-be race
        g.counter = seen + 1;
        g.leave();
    }
    done.count_down();
}

template <class Strand>
weft::task<> record(Strand& s, guarded& g, int index) {
    co_await s.schedule();
    g.order.push_back(index);
}

} // namespace

TEST_CASE("a strand never runs two coroutines at the same time", "[strand]") {
    constexpr int producers = 4;
    const int per_producer = sanitized ? 100 : 500;
    constexpr int rounds = 3; // each coroutine comes back to the strand three times
    guarded g;
    std::latch done(producers * per_producer);
    weft::thread_pool pool(4);
    weft::strand s(pool);
    weft::inline_executor here;

    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
        threads.emplace_back([&] {
            for (int i = 0; i < per_producer; ++i) {
                weft::spawn(here, bump(s, g, done, rounds));
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    done.wait();
    REQUIRE(g.overlaps.load() == 0);
    REQUIRE(g.off_strand.load() == 0);
    REQUIRE(g.counter == producers * per_producer * rounds);
    REQUIRE_FALSE(s.running_in_this_thread());
}

TEST_CASE("a strand resumes coroutines in the order they were scheduled", "[strand]") {
    const int count = sanitized ? 2000 : 20000;
    guarded g;
    weft::thread_pool pool(4);
    weft::strand s(pool);
    weft::inline_executor here;

    for (int i = 0; i < count; ++i) {
        weft::spawn(here, record(s, g, i));
    }
    // One more, to wait for the others: FIFO means it runs last.
    auto last = [&]() -> weft::task<> { co_await s.schedule(); };
    weft::sync_wait(last());

    REQUIRE(g.order.size() == static_cast<std::size_t>(count));
    bool sorted = true;
    for (int i = 0; i < count; ++i) {
        sorted = sorted && g.order[static_cast<std::size_t>(i)] == i;
    }
    REQUIRE(sorted);
}

TEST_CASE("a strand over inline_executor runs turns one after another, in order", "[strand]") {
    weft::inline_executor inline_ex;
    weft::strand s(inline_ex);
    std::vector<std::string> log;

    auto inner = [&]() -> weft::task<> {
        co_await s.schedule();
        log.push_back("b");
    };
    auto outer = [&]() -> weft::task<> {
        co_await s.schedule();
        log.push_back("a begins");
        REQUIRE(s.running_in_this_thread());
        // Scheduled from inside a turn: runs after this turn, not inside it.
        weft::spawn(inline_ex, inner());
        log.push_back("a ends");
    };
    weft::sync_wait(outer());
    REQUIRE(log == std::vector<std::string>{"a begins", "a ends", "b"});
    REQUIRE_FALSE(s.running_in_this_thread());
}

TEST_CASE("a strand over a user-defined executor goes back to it after a bounded batch",
          "[strand]") {
    constexpr int count = 200;
    manual_executor ex;
    weft::strand s(ex);
    guarded g;
    weft::inline_executor here;
    for (int i = 0; i < count; ++i) {
        weft::spawn(here, record(s, g, i));
    }
    REQUIRE(g.order.empty()); // nothing runs before the executor does
    ex.run();
    REQUIRE(g.order.size() == count);
    for (int i = 0; i < count; ++i) {
        REQUIRE(g.order[static_cast<std::size_t>(i)] == i);
    }
    // One schedule to start, then one after each full batch of 64.
    REQUIRE(ex.schedules() == 1 + count / weft::strand<manual_executor>::max_batch);

    // Idle again: the next coroutine starts a new drain.
    weft::spawn(here, record(s, g, count));
    ex.run();
    REQUIRE(g.order.size() == count + 1);
}

TEST_CASE("strands nest: a strand over a strand over a thread pool", "[strand]") {
    weft::thread_pool pool(2);
    weft::strand outer(pool);
    weft::strand inner(outer);
    guarded g;
    std::latch done(100);
    weft::inline_executor here;
    for (int i = 0; i < 100; ++i) {
        weft::spawn(here, bump(inner, g, done, 2));
    }
    done.wait();
    REQUIRE(g.overlaps.load() == 0);
    REQUIRE(g.counter == 200);
}

TEST_CASE("co_await on a strand throws when its executor refuses the work", "[strand]") {
    weft::thread_pool pool(1);
    pool.shutdown();
    weft::strand s(pool);
    auto hop = [&]() -> weft::task<int> {
        co_await s.schedule();
        co_return 1;
    };
    REQUIRE_THROWS_AS(weft::sync_wait(hop()), std::logic_error);
    REQUIRE_THROWS_AS(weft::sync_wait(hop()), std::logic_error); // idle again, same answer
}

TEST_CASE("a strand may be destroyed right after its last coroutine ran", "[strand]") {
    weft::thread_pool pool(2);
    const int rounds = sanitized ? 200 : 2000;

    // Destroyed by another thread, racing with the drain letting go.
    for (int i = 0; i < rounds; ++i) {
        weft::strand s(pool);
        auto t = [&]() -> weft::task<int> {
            co_await s.schedule();
            co_return 1;
        };
        REQUIRE(weft::sync_wait(t()) == 1);
    }

    // Destroyed by the coroutine it is running.
    auto self_destroying = [&]() -> weft::task<int> {
        auto s = std::make_unique<weft::strand<weft::thread_pool>>(pool);
        co_await s->schedule();
        const bool on = s->running_in_this_thread();
        s.reset();
        co_return on ? 1 : 0;
    };
    for (int i = 0; i < 100; ++i) {
        REQUIRE(weft::sync_wait(self_destroying()) == 1);
    }
}

TEST_CASE("a strand keeps mutual exclusion under many producers", "[strand][stress]") {
    constexpr int producers = 4;
    const int per_producer = sanitized ? 600 : 3000;
    constexpr int rounds = 4;
    guarded g;
    std::latch done(2 * producers * per_producer);
    weft::thread_pool pool(4);
    weft::strand s(pool);
    weft::strand nested(s);
    weft::inline_executor here;

    auto quick = [&](auto& strand) -> weft::task<> {
        for (int r = 0; r < rounds; ++r) {
            co_await strand.schedule();
            g.enter();
            ++g.counter;
            g.leave();
            co_await pool.schedule(); // off the strand in between
        }
        done.count_down();
    };

    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
        threads.emplace_back([&] {
            for (int i = 0; i < per_producer; ++i) {
                weft::spawn(here, quick(s));
                weft::spawn(pool, quick(nested));
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    done.wait();
    REQUIRE(g.overlaps.load() == 0);
    REQUIRE(g.counter == 2L * producers * per_producer * rounds);
}
