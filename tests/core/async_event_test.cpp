#include "primitive_test_support.hpp"

#include <weft/async_event.hpp>
#include <weft/stop.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>
#include <weft/thread_pool.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <vector>

using weft::async_event;
using weft::reset_mode;
using weft::task;
using weft::test::start;

static_assert(!std::is_copy_constructible_v<async_event>);
static_assert(weft::awaitable<async_event::wait_awaiter>);

TEST_CASE("event starts set or unset as asked", "[event]") {
    CHECK_FALSE(async_event(reset_mode::manual).is_set());
    CHECK(async_event(reset_mode::manual, true).is_set());
    CHECK(async_event(reset_mode::automatic, true).is_set());
    async_event e{reset_mode::automatic};
    CHECK(e.mode() == reset_mode::automatic);
}

TEST_CASE("manual event set wakes every waiter and stays set", "[event]") {
    async_event e{reset_mode::manual};
    std::vector<int> order;
    auto waiter = [&](int id) -> task<void> {
        co_await e.wait();
        order.push_back(id);
    };
    auto a = start([&] { return waiter(0); });
    auto b = start([&] { return waiter(1); });
    auto c = start([&] { return waiter(2); });
    CHECK(order.empty());
    e.set();
    CHECK(order == std::vector<int>{0, 1, 2});
    CHECK(e.is_set());
    CHECK(a->succeeded());
    CHECK(b->succeeded());
    CHECK(c->succeeded());
    weft::sync_wait(e.wait()); // completes at once while set
    e.set();                   // idempotent
    CHECK(e.is_set());
    e.reset();
    CHECK_FALSE(e.is_set());
    auto d = start([&] { return e.wait(); });
    CHECK_FALSE(d->finished());
    e.set();
    CHECK(d->succeeded());
}

TEST_CASE("automatic event set wakes exactly one waiter in FIFO order", "[event]") {
    async_event e{reset_mode::automatic};
    std::vector<int> order;
    auto waiter = [&](int id) -> task<void> {
        co_await e.wait();
        order.push_back(id);
    };
    auto a = start([&] { return waiter(0); });
    auto b = start([&] { return waiter(1); });
    e.set();
    CHECK(order == std::vector<int>{0});
    CHECK_FALSE(e.is_set()); // the signal was consumed
    e.set();
    CHECK(order == std::vector<int>{0, 1});
    CHECK_FALSE(e.is_set());
    CHECK(a->succeeded());
    CHECK(b->succeeded());
}

TEST_CASE("automatic event stays set until one waiter consumes it", "[event]") {
    async_event e{reset_mode::automatic};
    e.set();
    e.set(); // several sets with no waiter count as one
    CHECK(e.is_set());
    weft::sync_wait(e.wait());
    CHECK_FALSE(e.is_set());
    auto w = start([&] { return e.wait(); });
    CHECK_FALSE(w->finished());
    e.set();
    CHECK(w->succeeded());
    CHECK_FALSE(e.is_set());
}

TEST_CASE("event reset does not affect waiters", "[event]") {
    async_event e{reset_mode::manual};
    auto w = start([&] { return e.wait(); });
    e.reset();
    CHECK_FALSE(w->finished());
    e.set();
    CHECK(w->succeeded());
}

TEST_CASE("event wait is cancelled when stop is requested while waiting", "[event][stop]") {
    for (reset_mode mode : {reset_mode::manual, reset_mode::automatic}) {
        async_event e{mode};
        std::stop_source s0, s1;
        auto a = start([&] { return e.wait(); }, s0.get_token());
        auto b = start([&] { return e.wait(); }, s1.get_token());
        s0.request_stop();
        CHECK(a->cancelled());
        CHECK_FALSE(b->finished());
        e.set(); // automatic: goes to b, not to the cancelled waiter
        CHECK(b->succeeded());
        CHECK(e.is_set() == (mode == reset_mode::manual));
    }
}

TEST_CASE("automatic event signal is not consumed by a cancelled waiter", "[event][stop]") {
    async_event e{reset_mode::automatic};
    std::stop_source stop;
    auto w = start([&] { return e.wait(); }, stop.get_token());
    stop.request_stop();
    CHECK(w->cancelled());
    e.set();
    CHECK(e.is_set());
}

TEST_CASE("event wait with stop already requested throws at once unless the event is set",
          "[event][stop]") {
    std::stop_source stop;
    stop.request_stop();
    async_event e{reset_mode::automatic};
    auto refused = start([&] { return e.wait(); }, stop.get_token());
    CHECK(refused->cancelled());
    e.set();
    auto taken = start([&] { return e.wait(); }, stop.get_token());
    CHECK(taken->succeeded());
    CHECK_FALSE(e.is_set());
}

TEST_CASE("event wait with an explicit token watches it", "[event][stop]") {
    async_event e{reset_mode::manual};
    std::stop_source stop;
    auto w = start([&] { return e.wait(stop.get_token()); });
    stop.request_stop();
    CHECK(w->cancelled());
}

TEST_CASE("event waiter may destroy the event when woken", "[event][lifetime]") {
    auto e = std::make_unique<async_event>(reset_mode::manual);
    auto a = start([&]() -> task<void> {
        co_await e->wait();
        e.reset(); // destroys the event inside set()
    });
    e->set();
    CHECK(a->succeeded());
    CHECK(e == nullptr);
}

TEST_CASE("event cancellation racing with set is decided exactly once", "[event][stop]") {
    for (int i = 0; i < 300; ++i) {
        async_event e{reset_mode::automatic};
        std::stop_source stop;
        std::atomic<int> result{0};
        std::thread waiter([&] {
            try {
                weft::sync_wait(e.wait(), stop.get_token());
                result = 1;
            } catch (const weft::operation_cancelled&) {
                result = 2;
            }
        });
        std::thread canceller([&] { stop.request_stop(); });
        e.set();
        canceller.join();
        waiter.join();
        REQUIRE(result != 0);
        // The signal was consumed by the waiter, or is still there.
        REQUIRE(e.is_set() == (result == 2));
    }
}

TEST_CASE("automatic event delivers each signal to at most one waiter", "[event][stress]") {
    // Producers hand out signals one at a time: a signal is set only after
    // the previous one was consumed, so every set() is received exactly once.
    constexpr int consumers = 3;
    constexpr int signals = 3000;
    async_event e{reset_mode::automatic};
    async_event consumed{reset_mode::automatic};
    std::atomic<int> received{0};
    std::atomic<int> cancellations{0};
    long payload = 0; // written before set(), read after wait(): published by the event
    long sum = 0;     // guarded by the one-signal-at-a-time protocol
    std::stop_source finished;

    // Half the waits watch one of these sources, which another thread stops
    // one after another while the test runs: cancellation before and during
    // waits, racing with set().
    std::vector<std::stop_source> sources(64);
    std::optional<weft::thread_pool> pool;
    SECTION("on plain threads") {}
    SECTION("on a thread pool") { pool.emplace(2); }

    auto consumer = [&](int id) -> task<void> {
        for (int i = 0;; ++i) {
            if (pool && i % 16 == 0) {
                co_await pool->schedule();
            }
            try {
                if (i % 2 == 0) {
                    co_await e.wait(sources[static_cast<std::size_t>((i + id) % 64)].get_token());
                } else {
                    co_await e.wait(); // watches `finished`
                }
            } catch (const weft::operation_cancelled&) {
                cancellations.fetch_add(1);
                if (finished.stop_requested()) {
                    co_return;
                }
                continue;
            }
            sum += payload;
            received.fetch_add(1);
            consumed.set();
        }
    };
    std::thread canceller([&] {
        for (auto& src : sources) {
            if (finished.stop_requested()) {
                break;
            }
            for (int spin = 0; spin < 50; ++spin) {
                std::this_thread::yield();
            }
            src.request_stop();
        }
    });

    std::vector<std::thread> threads;
    for (int c = 0; c < consumers; ++c) {
        threads.emplace_back([&, c] { weft::sync_wait(consumer(c), finished.get_token()); });
    }
    long expected = 0;
    for (int s = 1; s <= signals; ++s) {
        payload = s;
        expected += s;
        e.set();
        weft::sync_wait(consumed.wait());
    }
    finished.request_stop();
    canceller.join();
    for (auto& src : sources) {
        src.request_stop(); // also ends waits that watch an explicit token
    }
    for (auto& t : threads) {
        t.join();
    }
    INFO("cancelled " << cancellations.load());
    CHECK(received == signals);
    CHECK(sum == expected);
    CHECK_FALSE(e.is_set());
}

TEST_CASE("manual event wakes every waiter of every round", "[event][stress]") {
    constexpr int threads = 4;
    constexpr int rounds = 500;
    std::vector<std::unique_ptr<async_event>> events;
    for (int r = 0; r < rounds; ++r) {
        events.push_back(std::make_unique<async_event>(reset_mode::manual));
    }
    std::atomic<int> woken{0};
    std::vector<long> data(rounds, 0); // data[r] written before events[r].set()
    std::atomic<bool> bad_data{false};

    std::optional<weft::thread_pool> pool;
    SECTION("on plain threads") {}
    SECTION("on a thread pool") { pool.emplace(2); }

    auto waiter = [&]() -> task<void> {
        for (int r = 0; r < rounds; ++r) {
            if (pool && r % 16 == 0) {
                co_await pool->schedule();
            }
            co_await events[static_cast<std::size_t>(r)]->wait();
            if (data[static_cast<std::size_t>(r)] != r + 1) {
                bad_data = true;
            }
            woken.fetch_add(1);
        }
    };
    std::thread setter([&] {
        for (int r = 0; r < rounds; ++r) {
            data[static_cast<std::size_t>(r)] = r + 1;
            events[static_cast<std::size_t>(r)]->set();
            if (r % 16 == 0) {
                std::this_thread::yield();
            }
        }
    });
    weft::test::run_on_threads(threads, [&](int) { weft::sync_wait(waiter()); });
    setter.join();
    CHECK(woken == threads * rounds);
    CHECK_FALSE(bad_data);
}
