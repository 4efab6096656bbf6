#include "test_support.hpp"

#include <weft/thread_pool.hpp>

#include <weft/concepts.hpp>
#include <weft/detail/detached_task.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>
#include <weft/thread_name.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <latch>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

static_assert(weft::scheduler<weft::thread_pool>);

namespace {

using weft::test::sanitized;

using weft::detail::detached_task;

/// A never-started coroutine for post(): counts its run, then frees itself.
detached_task count_run(std::atomic<int>& runs, std::latch& done) {
    runs.fetch_add(1, std::memory_order_relaxed);
    done.count_down();
    co_return;
}

std::coroutine_handle<> make_counter(std::atomic<int>& runs, std::latch& done) {
    return count_run(runs, done).release();
}

/// Awaits two tasks that run concurrently (each moves itself onto the pool)
/// and yields both results.
struct fork_join {
    weft::task<int> m_a;
    weft::task<int> m_b;
    int m_ra = 0;
    int m_rb = 0;
    std::atomic<int> m_remaining{2};
    std::coroutine_handle<> m_parent{};

    static detached_task run(weft::task<int> t, int& out, fork_join& fj) {
        out = co_await std::move(t);
        // acq_rel: publish our result, and see the other one before resuming.
        if (fj.m_remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            weft::detail::resume(fj.m_parent);
        }
    }

    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
        m_parent = h;
        run(std::move(m_a), m_ra, *this).start();
        run(std::move(m_b), m_rb, *this).start();
    }
    std::pair<int, int> await_resume() const noexcept { return {m_ra, m_rb}; }
};

weft::task<int> fib(weft::thread_pool& pool, int n) {
    co_await pool.schedule();
    if (n < 2) {
        co_return n;
    }
    fork_join both{fib(pool, n - 1), fib(pool, n - 2)};
    auto [x, y] = co_await both;
    co_return x + y;
}

int fib_plain(int n) { return n < 2 ? n : fib_plain(n - 1) + fib_plain(n - 2); }

double process_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

} // namespace

TEST_CASE("thread pool runs a million posted tasks exactly once", "[thread_pool]") {
    const int count = sanitized ? 100'000 : 1'000'000;
    auto hits = std::make_unique<std::atomic<std::uint8_t>[]>(static_cast<std::size_t>(count));
    std::latch done(count);
    weft::thread_pool pool(2);

    struct marker {
        static detached_task run(std::atomic<std::uint8_t>& hit, std::latch& done) {
            hit.fetch_add(1, std::memory_order_relaxed);
            done.count_down();
            co_return;
        }
    };
    for (int i = 0; i < count; ++i) {
        pool.post(marker::run(hits[static_cast<std::size_t>(i)], done).release());
    }
    done.wait();
    int wrong = 0;
    for (int i = 0; i < count; ++i) {
        wrong += hits[static_cast<std::size_t>(i)].load(std::memory_order_relaxed) != 1;
    }
    REQUIRE(wrong == 0);
}

TEST_CASE("work scheduled on a thread pool runs on the pool's threads", "[thread_pool]") {
    weft::thread_pool pool(3);
    REQUIRE(pool.thread_count() == 3);
    REQUIRE_FALSE(pool.running_in_this_thread());

    weft::thread_pool other(1);
    std::mutex mutex;
    std::set<std::thread::id> ids;
    bool all_inside = true;
    bool never_other = true;

    auto probe = [&]() -> weft::task<> {
        co_await pool.schedule();
        std::lock_guard lock(mutex);
        ids.insert(std::this_thread::get_id());
        all_inside = all_inside && pool.running_in_this_thread();
        never_other = never_other && !other.running_in_this_thread();
    };
    for (int i = 0; i < 200; ++i) {
        weft::sync_wait(probe());
    }
    REQUIRE(all_inside);
    REQUIRE(never_other);
    REQUIRE(ids.size() >= 1);
    REQUIRE(ids.size() <= 3);
    REQUIRE(ids.count(std::this_thread::get_id()) == 0);
    REQUIRE_FALSE(pool.running_in_this_thread());
}

TEST_CASE("a thread pool asked for zero threads runs one", "[thread_pool]") {
    weft::thread_pool pool(0);
    REQUIRE(pool.thread_count() == 1);
    auto t = [&]() -> weft::task<int> {
        co_await pool.schedule();
        co_return 7;
    };
    REQUIRE(weft::sync_wait(t()) == 7);
}

TEST_CASE("a thread pool's workers carry its name and their index", "[thread_pool]") {
    weft::thread_pool named(2, "decoder");
    weft::thread_pool plain(1);
    auto name_on = [](weft::thread_pool& pool) -> weft::task<std::string> {
        co_await pool.schedule();
        co_return weft::current_thread_name();
    };
    std::set<std::string> seen;
    for (int i = 0; i < 100 && seen.size() < 2; ++i) seen.insert(weft::sync_wait(name_on(named)));
    for (const std::string& n : seen) {
        CHECK((n == "decoder-0" || n == "decoder-1"));
    }
    CHECK(weft::sync_wait(name_on(plain)) == "weft-pool-0");
}

TEST_CASE("a thread name longer than the system keeps is cut, not refused", "[thread_pool]") {
    std::string got;
    std::thread t([&] {
        weft::set_current_thread_name("a-very-long-thread-name-indeed");
        got = weft::current_thread_name();
    });
    t.join();
    CHECK(got == std::string("a-very-long-thread-name-indeed").substr(0, weft::max_thread_name_size));
}

TEST_CASE("post_bulk runs every handle exactly once, from inside and outside the pool",
          "[thread_pool]") {
    constexpr int outside = 5000;
    constexpr int inside = 3000; // more than a worker's deque holds
    std::atomic<int> runs{0};
    std::latch done(outside + inside);
    weft::thread_pool pool(2);

    std::vector<std::coroutine_handle<>> hs;
    for (int i = 0; i < outside; ++i) {
        hs.push_back(make_counter(runs, done));
    }
    pool.post_bulk(hs);
    pool.post_bulk({}); // nothing, harmlessly

    auto from_inside = [&]() -> weft::task<> {
        co_await pool.schedule();
        std::vector<std::coroutine_handle<>> mine;
        for (int i = 0; i < inside; ++i) {
            mine.push_back(make_counter(runs, done));
        }
        pool.post_bulk(mine);
    };
    weft::sync_wait(from_inside());
    done.wait();
    REQUIRE(runs.load() == outside + inside);
}

TEST_CASE("handles posted from outside beyond the injection ring's capacity all run",
          "[thread_pool]") {
    constexpr int singles = 12'000; // the lock-free ring holds 8192
    constexpr int bulk = 10'000;
    std::atomic<int> runs{0};
    std::latch done(singles + bulk);
    std::latch blocked(2);
    std::latch release(1);
    weft::thread_pool pool(2);

    // Keep both workers busy so that everything below piles up.
    struct blocker {
        static detached_task run(std::latch& blocked, std::latch& release) {
            blocked.count_down();
            release.wait();
            co_return;
        }
    };
    pool.post(blocker::run(blocked, release).release());
    pool.post(blocker::run(blocked, release).release());
    blocked.wait();

    for (int i = 0; i < singles; ++i) {
        pool.post(make_counter(runs, done));
    }
    std::vector<std::coroutine_handle<>> hs;
    for (int i = 0; i < bulk; ++i) {
        hs.push_back(make_counter(runs, done));
    }
    pool.post_bulk(hs);
    REQUIRE(runs.load() == 0);
    release.count_down();
    done.wait();
    REQUIRE(runs.load() == singles + bulk);
}

TEST_CASE("fib computed with two child tasks per call on the pool gives the right answer",
          "[thread_pool]") {
    const int n = sanitized ? 17 : 22;
    weft::thread_pool pool(2);
    REQUIRE(weft::sync_wait(fib(pool, n)) == fib_plain(n));
    weft::thread_pool wide(4);
    REQUIRE(weft::sync_wait(fib(wide, n)) == fib_plain(n));
}

TEST_CASE("a thread pool's shutdown runs work that queued work posts meanwhile",
          "[thread_pool]") {
    constexpr int depth = 2000;
    std::atomic<int> runs{0};
    auto pool = std::make_unique<weft::thread_pool>(2);

    // Each link posts the next one from a pool thread, then finishes.
    struct chain {
        static detached_task link(weft::thread_pool& p, std::atomic<int>& runs, int left) {
            runs.fetch_add(1, std::memory_order_relaxed);
            if (left > 1) {
                p.post(link(p, runs, left - 1).release());
            }
            co_return;
        }
    };
    for (int i = 0; i < 4; ++i) {
        pool->post(chain::link(*pool, runs, depth).release());
    }
    pool->shutdown();
    REQUIRE(runs.load() == 4 * depth);

    // The destructor drains as well.
    std::atomic<int> more{0};
    {
        weft::thread_pool p2(2);
        for (int i = 0; i < 4; ++i) {
            p2.post(chain::link(p2, more, depth).release());
        }
    }
    REQUIRE(more.load() == 4 * depth);
}

TEST_CASE("posting to a thread pool after shutdown throws std::logic_error", "[thread_pool]") {
    std::atomic<int> runs{0};
    std::latch done(1);
    weft::thread_pool pool(2);
    pool.shutdown();
    pool.shutdown(); // idempotent

    {
        detached_task t = count_run(runs, done);
        auto h = std::move(t).release();
        REQUIRE_THROWS_AS(pool.post(h), std::logic_error);
        std::coroutine_handle<> one[] = {h};
        REQUIRE_THROWS_AS(pool.post_bulk(one), std::logic_error);
        h.destroy(); // still ours
    }

    auto hop = [&]() -> weft::task<int> {
        co_await pool.schedule(); // throws inside the coroutine
        co_return 1;
    };
    REQUIRE_THROWS_AS(weft::sync_wait(hop()), std::logic_error);
    REQUIRE(runs.load() == 0);
}

TEST_CASE("calling shutdown from one of the pool's threads throws std::logic_error",
          "[thread_pool]") {
    weft::thread_pool pool(2);
    auto t = [&]() -> weft::task<bool> {
        co_await pool.schedule();
        try {
            pool.shutdown();
        } catch (const std::logic_error&) {
            co_return true;
        }
        co_return false;
    };
    REQUIRE(weft::sync_wait(t()));
}

TEST_CASE("an idle thread pool uses almost no CPU", "[thread_pool]") {
    weft::thread_pool pool(2);
    // Wake every worker once, then let them settle.
    REQUIRE(weft::sync_wait(fib(pool, 12)) == fib_plain(12));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));

    const double before = process_cpu_seconds();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const double used = process_cpu_seconds() - before;
    INFO("CPU time used while idle: " << used * 1000 << " ms");
    REQUIRE(used < 0.050);
}

TEST_CASE("a coroutine that keeps rescheduling itself does not starve other work",
          "[thread_pool]") {
    weft::thread_pool pool(1);
    std::atomic<bool> foreign_ran{false};
    std::atomic<bool> local_ran{false};

    struct other {
        static detached_task set(std::atomic<bool>& flag) {
            flag.store(true);
            co_return;
        }
    };
    auto spinner = [&]() -> weft::task<int> {
        co_await pool.schedule();
        int rounds = 0;
        // Work posted from the pool thread itself must get a turn...
        pool.post(other::set(local_ran).release());
        while (!local_ran.load()) {
            co_await pool.schedule();
            ++rounds;
        }
        // ...and so must work posted from outside.
        std::thread outsider([&] { pool.post(other::set(foreign_ran).release()); });
        outsider.join(); // post() never waits for the workers
        while (!foreign_ran.load()) {
            co_await pool.schedule();
            ++rounds;
        }
        co_return rounds;
    };
    REQUIRE(weft::sync_wait(spinner()) > 0);
}

TEST_CASE("thread pool stays correct with many producers, nested posts and stealing",
          "[thread_pool][stress]") {
    constexpr int producers = 4;
    const int roots_per_producer = sanitized ? 400 : 3000;
    constexpr int tree_depth = 5; // 2^5 - 1 = 31 runs per tree
    constexpr int tree_size = (1 << tree_depth) - 1;
    constexpr int fan = 1500; // one root per producer posts this many at once

    struct work {
        // A binary tree of posts from pool threads; `payload` is written by the
        // poster and read by the runner (checks the hand-off's ordering).
        static detached_task node(weft::thread_pool& p, std::atomic<int>& runs,
                                  std::latch& done, int depth, std::unique_ptr<int> payload) {
            if (*payload != depth) {
                std::terminate();
            }
            runs.fetch_add(1, std::memory_order_relaxed);
            if (depth > 1) {
                p.post(node(p, runs, done, depth - 1, std::make_unique<int>(depth - 1)).release());
                p.post(node(p, runs, done, depth - 1, std::make_unique<int>(depth - 1)).release());
            }
            done.count_down();
            co_return;
        }
        static detached_task leaf(std::atomic<int>& runs, std::latch& done) {
            runs.fetch_add(1, std::memory_order_relaxed);
            done.count_down();
            co_return;
        }
        static detached_task fanout(weft::thread_pool& p, std::atomic<int>& runs,
                                    std::latch& done) {
            co_await p.schedule();
            for (int i = 0; i < fan; ++i) {
                p.post(leaf(runs, done).release()); // overflows the deque
            }
            std::vector<std::coroutine_handle<>> bulk;
            for (int i = 0; i < fan; ++i) {
                bulk.push_back(leaf(runs, done).release());
            }
            p.post_bulk(bulk);
            runs.fetch_add(1, std::memory_order_relaxed);
            done.count_down();
        }
    };

    const int expected = producers * (roots_per_producer * tree_size + 2 * fan + 1 + 64);
    std::atomic<int> runs{0};
    std::latch done(expected);
    {
        weft::thread_pool pool(4);
        std::vector<std::thread> threads;
        for (int p = 0; p < producers; ++p) {
            threads.emplace_back([&] {
                work::fanout(pool, runs, done).start();
                std::vector<std::coroutine_handle<>> bulk;
                for (int i = 0; i < 64; ++i) {
                    bulk.push_back(work::leaf(runs, done).release());
                }
                pool.post_bulk(bulk);
                for (int i = 0; i < roots_per_producer; ++i) {
                    pool.post(work::node(pool, runs, done, tree_depth,
                                         std::make_unique<int>(tree_depth))
                                  .release());
                    if (i % 64 == 0) {
                        std::this_thread::yield(); // let workers go idle now and then
                    }
                }
            });
        }
        for (auto& t : threads) {
            t.join();
        }
        done.wait();
    }
    REQUIRE(runs.load() == expected);
}

TEST_CASE("posts racing with shutdown either run or throw", "[thread_pool][stress]") {
    // Foreign posts keep a shutting-down pool alive (they are accepted until
    // the pool has drained), so the producers slow down once shutdown starts.
    constexpr int producers = 3;
    const int fast_posts = sanitized ? 5'000 : 50'000;
    std::atomic<int> runs{0};
    std::atomic<int> accepted{0};
    std::atomic<int> rejected{0};
    std::atomic<bool> shutting_down{false};

    struct counted {
        static detached_task run(std::atomic<int>& runs) {
            runs.fetch_add(1, std::memory_order_relaxed);
            co_return;
        }
    };
    auto pool = std::make_unique<weft::thread_pool>(2);
    std::vector<std::thread> threads;
    std::latch started(producers + 1);
    for (int p = 0; p < producers; ++p) {
        threads.emplace_back([&] {
            started.arrive_and_wait();
            for (int i = 0;; ++i) {
                if (i >= fast_posts || shutting_down.load()) {
                    std::this_thread::sleep_for(std::chrono::microseconds(500));
                }
                auto h = counted::run(runs).release();
                try {
                    pool->post(h);
                    accepted.fetch_add(1, std::memory_order_relaxed);
                } catch (const std::logic_error&) {
                    h.destroy();
                    rejected.fetch_add(1, std::memory_order_relaxed);
                    return;
                }
            }
        });
    }
    started.arrive_and_wait();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    shutting_down.store(true);
    pool->shutdown();
    const int runs_at_shutdown = runs.load();
    for (auto& t : threads) {
        t.join();
    }
    REQUIRE(rejected.load() == producers);
    REQUIRE(runs.load() == accepted.load());
    REQUIRE(runs_at_shutdown == accepted.load()); // shutdown drained everything accepted
}
