#include "primitive_test_support.hpp"

#include <weft/channel.hpp>
#include <weft/stop.hpp>
#include <weft/sync_wait.hpp>
#include <weft/task.hpp>
#include <weft/thread_pool.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

using weft::channel;
using weft::channel_closed;
using weft::task;
using weft::test::start;

namespace {

/// A move-only value that counts its instances and detects use after
/// destruction and double destruction (through a magic word that the
/// destructor overwrites).
struct tracked {
    static constexpr std::uint32_t alive = 0x600DF00Du;
    static constexpr std::uint32_t dead = 0xDEADBEEFu;
    static inline std::atomic<int> live{0};
    static inline std::atomic<int> errors{0};

    std::uint32_t magic = alive;
    int value = 0;

    explicit tracked(int v) noexcept : value(v) { ++live; }
    tracked(tracked&& other) noexcept : value(other.value) {
        if (other.magic != alive) {
            ++errors;
        }
        other.value = -1;
        ++live;
    }
    tracked& operator=(tracked&& other) noexcept {
        if (magic != alive || other.magic != alive) {
            ++errors;
        }
        value = other.value;
        other.value = -1;
        return *this;
    }
    tracked(const tracked&) = delete;
    ~tracked() {
        if (magic != alive) {
            ++errors; // destroyed twice, or never constructed
        }
        magic = dead;
        --live;
    }

    static void reset() noexcept {
        live = 0;
        errors = 0;
    }
};

} // namespace

static_assert(!std::is_copy_constructible_v<channel<int>>);
static_assert(weft::awaitable<channel<int>::send_awaiter>);
static_assert(std::is_same_v<weft::await_result_t<channel<int>::receive_awaiter>, std::optional<int>>);
static_assert(std::is_base_of_v<std::logic_error, channel_closed>);

TEST_CASE("channel delivers values in the order they were sent", "[channel]") {
    channel<int> ch{3};
    CHECK(ch.capacity() == 3);
    CHECK(ch.try_send(1));
    weft::sync_wait(ch.send(2));
    const int three = 3;
    CHECK(ch.try_send(three));
    CHECK(ch.size() == 3);
    CHECK_FALSE(ch.try_send(4)); // full
    CHECK(ch.try_receive() == 1);
    CHECK(weft::sync_wait(ch.receive()) == 2);
    CHECK(ch.try_receive() == 3);
    CHECK(ch.try_receive() == std::nullopt);
    CHECK(ch.size() == 0);
}

TEST_CASE("channel send suspends while full and resumes when a slot frees", "[channel]") {
    channel<int> ch{1};
    weft::sync_wait(ch.send(1));
    auto a = start([&] { return ch.send(2); });
    auto b = start([&] { return ch.send(3); });
    CHECK_FALSE(a->finished());
    CHECK_FALSE(b->finished());
    CHECK(ch.try_receive() == 1); // frees the slot: 2 moves in, its sender resumes
    CHECK(a->succeeded());
    CHECK_FALSE(b->finished());
    CHECK(ch.size() == 1);
    CHECK(weft::sync_wait(ch.receive()) == 2);
    CHECK(b->succeeded());
    CHECK(ch.try_receive() == 3);
}

TEST_CASE("channel send hands its value directly to a waiting receiver", "[channel]") {
    channel<std::string> ch{2};
    auto r1 = start([&] { return ch.receive(); });
    auto r2 = start([&] { return ch.receive(); });
    CHECK_FALSE(r1->finished());
    CHECK(ch.try_send(std::string("first")));
    weft::sync_wait(ch.send("second"));
    CHECK(ch.size() == 0); // never buffered
    REQUIRE(r1->succeeded());
    REQUIRE(r2->succeeded());
    CHECK(*r1->value == std::optional<std::string>("first"));
    CHECK(*r2->value == std::optional<std::string>("second"));
}

TEST_CASE("channel receivers drain buffered values after close then see end", "[channel]") {
    channel<int> ch{4};
    CHECK(ch.try_send(1));
    CHECK(ch.try_send(2));
    ch.close();
    CHECK(ch.is_closed());
    CHECK(weft::sync_wait(ch.receive()) == 1);
    CHECK(ch.try_receive() == 2);
    CHECK(weft::sync_wait(ch.receive()) == std::nullopt);
    CHECK(ch.try_receive() == std::nullopt);
    ch.close(); // idempotent
}

TEST_CASE("channel close wakes pending receivers with end", "[channel]") {
    channel<int> ch{1};
    auto a = start([&] { return ch.receive(); });
    auto b = start([&] { return ch.receive(); });
    ch.close();
    REQUIRE(a->succeeded());
    REQUIRE(b->succeeded());
    CHECK(*a->value == std::nullopt);
    CHECK(*b->value == std::nullopt);
}

TEST_CASE("channel close makes pending and later sends throw channel_closed", "[channel]") {
    tracked::reset();
    {
        channel<tracked> ch{1};
        CHECK(ch.try_send(tracked(1)));
        auto pending = start([&] { return ch.send(tracked(2)); });
        CHECK_FALSE(pending->finished());
        ch.close();
        CHECK(pending->threw<channel_closed>());
        CHECK(tracked::live == 1); // the pending value was destroyed, not enqueued
        CHECK_THROWS_AS(weft::sync_wait(ch.send(tracked(3))), channel_closed);
        tracked value(4);
        CHECK_THROWS_AS(ch.try_send(std::move(value)), channel_closed);
        CHECK(value.value == 4); // try_send does not consume a value it refuses
        auto drained = ch.try_receive();
        REQUIRE(drained.has_value());
        CHECK(drained->value == 1);
        CHECK_FALSE(ch.try_receive().has_value());
    }
    CHECK(tracked::live == 0);
    CHECK(tracked::errors == 0);
}

TEST_CASE("channel serves waiting senders and receivers in FIFO order", "[channel]") {
    channel<int> ch{1};
    CHECK(ch.try_send(0));
    std::vector<std::shared_ptr<weft::test::outcome<std::monostate>>> senders;
    for (int i = 1; i <= 3; ++i) {
        senders.push_back(start([&ch, i] { return ch.send(i); }));
    }
    for (int i = 0; i <= 3; ++i) {
        CHECK(ch.try_receive() == i);
    }
    for (auto& s : senders) {
        CHECK(s->succeeded());
    }
    std::vector<std::shared_ptr<weft::test::outcome<std::optional<int>>>> receivers;
    for (int i = 0; i < 3; ++i) {
        receivers.push_back(start([&ch] { return ch.receive(); }));
    }
    for (int i = 0; i < 3; ++i) {
        CHECK(ch.try_send(10 + i));
    }
    for (int i = 0; i < 3; ++i) {
        REQUIRE(receivers[static_cast<std::size_t>(i)]->succeeded());
        CHECK(*receivers[static_cast<std::size_t>(i)]->value == 10 + i);
    }
}

TEST_CASE("channel of capacity zero is a rendezvous", "[channel]") {
    channel<int> ch{0};
    CHECK_FALSE(ch.try_send(1)); // nobody is receiving
    auto s = start([&] { return ch.send(1); });
    CHECK_FALSE(s->finished());
    CHECK(ch.size() == 0);
    CHECK(ch.try_receive() == 1); // taken straight from the sender
    CHECK(s->succeeded());
    CHECK(ch.try_receive() == std::nullopt);

    auto r = start([&] { return ch.receive(); });
    CHECK_FALSE(r->finished());
    CHECK(ch.try_send(2)); // handed straight to the receiver
    REQUIRE(r->succeeded());
    CHECK(*r->value == 2);

    auto s2 = start([&] { return ch.send(3); });
    CHECK(weft::sync_wait(ch.receive()) == 3);
    CHECK(s2->succeeded());
    auto s3 = start([&] { return ch.send(4); });
    ch.close();
    CHECK(s3->threw<channel_closed>());
    CHECK(weft::sync_wait(ch.receive()) == std::nullopt);
}

TEST_CASE("channel carries move-only values", "[channel]") {
    channel<std::unique_ptr<int>> ch{1};
    weft::sync_wait(ch.send(std::make_unique<int>(1)));
    auto pending = start([&] { return ch.send(std::make_unique<int>(2)); });
    auto first = weft::sync_wait(ch.receive());
    REQUIRE(first.has_value());
    CHECK(**first == 1);
    CHECK(pending->succeeded());
    auto second = ch.try_receive();
    REQUIRE(second.has_value());
    CHECK(**second == 2);
    auto moved = std::make_unique<int>(3);
    CHECK(ch.try_send(std::move(moved)));
    CHECK(moved == nullptr);
    auto full = std::make_unique<int>(4);
    CHECK_FALSE(ch.try_send(std::move(full)));
    CHECK(full != nullptr); // refused: still ours
}

TEST_CASE("channel send is cancelled when stop is requested while full and its value is never enqueued",
          "[channel][stop]") {
    tracked::reset();
    {
        channel<tracked> ch{1};
        CHECK(ch.try_send(tracked(1)));
        std::stop_source stop;
        auto s = start([&] { return ch.send(tracked(2)); }, stop.get_token());
        auto kept = start([&] { return ch.send(tracked(3)); });
        stop.request_stop();
        CHECK(s->cancelled());
        CHECK(tracked::live == 2); // 1 buffered, 3 in its sender; 2 destroyed
        auto v1 = ch.try_receive(); // 3 moves in
        CHECK(kept->succeeded());
        auto v3 = ch.try_receive();
        REQUIRE(v1.has_value());
        REQUIRE(v3.has_value());
        CHECK(v1->value == 1);
        CHECK(v3->value == 3);
        CHECK_FALSE(ch.try_receive().has_value());
    }
    CHECK(tracked::live == 0);
    CHECK(tracked::errors == 0);
}

TEST_CASE("channel receive is cancelled when stop is requested while empty", "[channel][stop]") {
    channel<int> ch{1};
    std::stop_source stop;
    auto r = start([&] { return ch.receive(); }, stop.get_token());
    auto explicit_token = std::stop_source();
    auto r2 = start([&] { return ch.receive(explicit_token.get_token()); });
    stop.request_stop();
    CHECK(r->cancelled());
    explicit_token.request_stop();
    CHECK(r2->cancelled());
    CHECK(ch.try_send(7)); // buffered: the cancelled receivers take nothing
    CHECK(ch.size() == 1);
}

TEST_CASE("channel operations with stop already requested complete if they can, else throw at once",
          "[channel][stop]") {
    channel<int> ch{1};
    std::stop_source stop;
    stop.request_stop();
    auto t = stop.get_token();
    CHECK(start([&] { return ch.send(1); }, t)->succeeded());    // room: completes
    CHECK(start([&] { return ch.send(2); }, t)->cancelled());    // full: throws
    auto r = start([&] { return ch.receive(); }, t);             // value: completes
    REQUIRE(r->succeeded());
    CHECK(*r->value == 1);
    CHECK(start([&] { return ch.receive(); }, t)->cancelled());  // empty: throws
    CHECK(ch.size() == 0);
    ch.close();
    auto end = start([&] { return ch.receive(); }, t); // closed and drained: end
    REQUIRE(end->succeeded());
    CHECK(*end->value == std::nullopt);
}

TEST_CASE("channel values are neither leaked nor destroyed twice", "[channel][lifetime]") {
    tracked::reset();
    {
        channel<tracked> ch{3};
        CHECK(ch.try_send(tracked(1)));
        weft::sync_wait(ch.send(tracked(2)));
        {
            auto v = ch.try_receive();
            REQUIRE(v.has_value());
            CHECK(v->value == 1);
        }
        // Wrap around the ring a few times.
        for (int i = 0; i < 10; ++i) {
            CHECK(ch.try_send(tracked(10 + i)));
            auto v = weft::sync_wait(ch.receive());
            REQUIRE(v.has_value());
        }
        auto r = start([&] { return ch.receive(); }); // takes the one buffered value
        REQUIRE(r->succeeded());
        CHECK(r->value->value().value == 19);
        CHECK(tracked::live == 1); // r's value
        CHECK(ch.try_send(tracked(100)));
        CHECK(ch.try_send(tracked(101)));
        // Destroyed with values still buffered.
    }
    CHECK(tracked::live == 0);
    CHECK(tracked::errors == 0);
}

TEST_CASE("channel cancellation racing with a hand-off neither loses nor duplicates a value",
          "[channel][stop]") {
    tracked::reset();
    for (int i = 0; i < 200; ++i) {
        // A sender waits on a full channel while a receiver frees the slot
        // and a third thread requests stop.
        {
            channel<tracked> ch{1};
            REQUIRE(ch.try_send(tracked(0)));
            std::stop_source stop;
            std::atomic<int> result{0};
            std::thread sender([&] {
                try {
                    weft::sync_wait(ch.send(tracked(1)), stop.get_token());
                    result = 1;
                } catch (const weft::operation_cancelled&) {
                    result = 2;
                }
            });
            std::thread canceller([&] { stop.request_stop(); });
            auto first = ch.try_receive();
            canceller.join();
            sender.join();
            REQUIRE(first.has_value());
            REQUIRE(first->value == 0);
            auto second = ch.try_receive();
            REQUIRE(result != 0);
            REQUIRE(second.has_value() == (result == 1));
        }
        // A receiver waits on an empty channel while a sender hands a value
        // over and a third thread requests stop.
        {
            channel<tracked> ch{1};
            std::stop_source stop;
            std::atomic<int> result{0};
            std::optional<tracked> got;
            std::thread receiver([&] {
                try {
                    got = weft::sync_wait(ch.receive(), stop.get_token());
                    result = 1;
                } catch (const weft::operation_cancelled&) {
                    result = 2;
                }
            });
            std::thread canceller([&] { stop.request_stop(); });
            REQUIRE(ch.try_send(tracked(5)));
            canceller.join();
            receiver.join();
            REQUIRE(result != 0);
            const bool buffered = ch.size() == 1;
            REQUIRE(got.has_value() != buffered); // exactly one place
        }
    }
    CHECK(tracked::live == 0);
    CHECK(tracked::errors == 0);
}

TEST_CASE("channel delivers every value exactly once under contention, close and cancellation",
          "[channel][stress]") {
    constexpr int producers = 2;
    constexpr int consumers = 2;
    constexpr int per_producer = 3000;
    tracked::reset();
    {
        channel<tracked> ch{4};
        std::vector<std::stop_source> sources(64);
        // sent[v]: the send of v completed; delivered[v]: times v was received.
        std::vector<std::atomic<int>> sent(producers * per_producer);
        std::vector<std::atomic<int>> delivered(producers * per_producer);
        std::atomic<bool> out_of_order{false};
        std::atomic<int> cancelled_sends{0};
        std::atomic<int> cancelled_receives{0};

        std::optional<weft::thread_pool> pool;
        SECTION("on plain threads") {}
        SECTION("on a thread pool") { pool.emplace(2); }

        auto producer = [&](int p) -> task<void> {
            for (int i = 0; i < per_producer; ++i) {
                if (pool && i % 64 == 0) {
                    co_await pool->schedule();
                }
                const int v = p * per_producer + i;
                try {
                    if (i % 4 == 0) {
                        co_await ch.send(tracked(v), sources[static_cast<std::size_t>(i % 64)].get_token());
                    } else {
                        co_await ch.send(tracked(v));
                    }
                    sent[static_cast<std::size_t>(v)].fetch_add(1);
                } catch (const weft::operation_cancelled&) {
                    cancelled_sends.fetch_add(1);
                }
            }
        };
        auto consumer = [&](int c) -> task<void> {
            std::vector<int> last(producers, -1); // per producer: FIFO as seen here
            for (int i = 0;; ++i) {
                if (pool && i % 64 == 0) {
                    co_await pool->schedule();
                }
                std::optional<tracked> v;
                try {
                    if (i % 4 == 0) {
                        v = co_await ch.receive(
                            sources[static_cast<std::size_t>((i + c) % 64)].get_token());
                    } else {
                        v = co_await ch.receive();
                    }
                } catch (const weft::operation_cancelled&) {
                    cancelled_receives.fetch_add(1);
                    continue;
                }
                if (!v) {
                    co_return;
                }
                const int p = v->value / per_producer;
                if (v->value <= last[static_cast<std::size_t>(p)]) {
                    out_of_order = true;
                }
                last[static_cast<std::size_t>(p)] = v->value;
                delivered[static_cast<std::size_t>(v->value)].fetch_add(1);
            }
        };

        std::atomic<int> producers_done{0};
        std::thread canceller([&] {
            for (auto& s : sources) {
                if (producers_done.load() == producers) {
                    break;
                }
                for (int spin = 0; spin < 50; ++spin) {
                    std::this_thread::yield();
                }
                s.request_stop();
            }
        });
        weft::test::run_on_threads(producers + consumers, [&](int t) {
            if (t < producers) {
                weft::sync_wait(producer(t));
                if (producers_done.fetch_add(1) + 1 == producers) {
                    ch.close();
                }
            } else {
                weft::sync_wait(consumer(t - producers));
            }
        });
        canceller.join();

        int lost = 0;
        int duplicated = 0;
        int delivered_count = 0;
        for (std::size_t v = 0; v < sent.size(); ++v) {
            lost += sent[v] == 1 && delivered[v] == 0 ? 1 : 0;
            duplicated += delivered[v] > 1 || (delivered[v] == 1 && sent[v] == 0) ? 1 : 0;
            delivered_count += delivered[v];
        }
        INFO("cancelled sends " << cancelled_sends.load() << ", receives "
                                << cancelled_receives.load());
        CHECK(lost == 0);
        CHECK(duplicated == 0);
        CHECK_FALSE(out_of_order);
        CHECK(delivered_count + cancelled_sends == producers * per_producer);
        CHECK(ch.size() == 0);
    }
    CHECK(tracked::live == 0);
    CHECK(tracked::errors == 0);
}
