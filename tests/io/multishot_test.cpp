// Buffer-ring receives, multishot accept, loop timers and with_timeout, on
// both backends (the io_uring paths fall back to plain operations on epoll,
// with the same results).
#include "io_test_support.hpp"
#include "test_support.hpp"

#include <weft/async_scope.hpp>
#include <weft/io/io_context.hpp>
#include <weft/io/tcp.hpp>
#include <weft/io/with_timeout.hpp>
#include <weft/stop.hpp>
#include <weft/task.hpp>
#include <weft/when_all.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using weft::io::deadline;
using weft::io::endpoint;
using weft::io::io_backend;
using weft::io::io_context;
using weft::io::tcp_listener;
using weft::io::tcp_stream;
using weft::io::test::backend_under_test;
using weft::io::test::bytes;
using weft::io::test::connected_pair;
using weft::task;

namespace {

task<void> nap(io_context& ctx, std::chrono::hours d) { co_await weft::io::sleep_for(ctx, d); }

/// Byte `i` of the test pattern.
std::byte pattern(std::size_t i) { return static_cast<std::byte>((i * 31 + i / 251) & 0xFF); }

/// The first `n` bytes of the pattern.
std::vector<std::byte> patterned(std::size_t n) {
    std::vector<std::byte> data(n);
    for (std::size_t i = 0; i < n; ++i) data[i] = pattern(i);
    return data;
}

/// Writes `data`, then shuts down the sending side.
task<void> send_and_shut(tcp_stream& s, std::span<const std::byte> data) {
    co_await s.write_all(data);
    s.shutdown();
}

} // namespace

TEST_CASE("a buffer-ring stream reads what arrives in small pieces, then 0 at end of stream", "[io][multishot]") {
    io_context ctx(backend_under_test());
    auto listener = tcp_listener::bind(ctx, endpoint::loopback(0));
    auto body = [&]() -> task<std::string> {
        auto [client, server] = co_await connected_pair(ctx, listener);
        const bool ring = server.use_buffer_ring();
        if (ctx.backend() == io_backend::epoll) CHECK_FALSE(ring);
        CHECK(server.use_buffer_ring() == ring); // a second call changes nothing
        const std::string hello = "hello, buffer ring";
        co_await client.write_all(bytes(hello));
        client.shutdown();
        std::string got;
        std::array<std::byte, 5> piece{};
        for (;;) {
            const std::size_t n = co_await server.read_some(piece, deadline::after(5s));
            if (n == 0) break;
            got.append(reinterpret_cast<const char*>(piece.data()), n);
        }
        co_return got;
    };
    CHECK(ctx.run(body()) == "hello, buffer ring");
}

TEST_CASE("read_view hands out received bytes in place, valid until the next read, then empty at end of stream",
          "[io][multishot]") {
    io_context ctx(backend_under_test());
    auto listener = tcp_listener::bind(ctx, endpoint::loopback(0));
    const std::size_t total = 200 * 1024; // more than the ring holds for one stream
    auto body = [&]() -> task<std::size_t> {
        auto [client, server] = co_await connected_pair(ctx, listener);
        server.use_buffer_ring();
        const std::vector<std::byte> data = patterned(total);
        auto reader = [&]() -> task<std::size_t> {
            std::size_t at = 0;
            std::size_t mismatches = 0;
            for (int round = 0;; ++round) {
                std::span<const std::byte> v = co_await server.read_view(deadline::after(10s));
                if (v.empty()) break;
                if (round % 8 == 0) {
                    // The view outlives a wait (more data arriving meanwhile)
                    // and a move of its stream.
                    co_await weft::io::sleep_for(ctx, 1ms);
                    tcp_stream moved = std::move(server);
                    server = std::move(moved);
                }
                for (std::size_t i = 0; i < v.size(); ++i) mismatches += v[i] == pattern(at + i) ? 0 : 1;
                at += v.size();
                if (round % 5 == 0) {
                    // read_some after read_view: the lent bytes are not read twice.
                    std::array<std::byte, 100> buf{};
                    const std::size_t n = co_await server.read_some(buf, deadline::after(10s));
                    for (std::size_t i = 0; i < n; ++i) mismatches += buf[i] == pattern(at + i) ? 0 : 1;
                    at += n;
                }
            }
            CHECK((co_await server.read_view(deadline::after(1s))).empty());
            co_return mismatches == 0 ? at : 0;
        };
        auto [_, received] = co_await weft::when_all(send_and_shut(client, data), reader());
        co_return received;
    };
    CHECK(ctx.run(body()) == total);
}

TEST_CASE("a buffer-ring stream whose reader lags behind loses no byte and keeps order", "[io][multishot]") {
    io_context ctx(backend_under_test());
    auto listener = tcp_listener::bind(ctx, endpoint::loopback(0));
    // Far more than the stream may hold unread (64 KiB) and than the ring
    // holds in all (4 MiB would be too slow in sanitizer builds, 1 MiB shows
    // the stop-and-rearm path many times over).
    const std::size_t total = weft::test::sanitized ? 256 * 1024 : 1024 * 1024;
    auto body = [&]() -> task<std::size_t> {
        auto [client, server] = co_await connected_pair(ctx, listener);
        server.use_buffer_ring();
        const std::vector<std::byte> data = patterned(total);
        auto reader = [&]() -> task<std::size_t> {
            std::size_t at = 0;
            std::size_t mismatches = 0;
            std::array<std::byte, 1000> buf{};
            for (int round = 0;; ++round) {
                if (round % 16 == 0) co_await weft::io::sleep_for(ctx, 1ms); // lag behind now and then
                const std::size_t n = co_await server.read_some(buf, deadline::after(10s));
                if (n == 0) break;
                for (std::size_t i = 0; i < n; ++i) mismatches += buf[i] == pattern(at + i) ? 0 : 1;
                at += n;
            }
            co_return mismatches == 0 ? at : 0;
        };
        auto [_, received] = co_await weft::when_all(send_and_shut(client, data), reader());
        co_return received;
    };
    CHECK(ctx.run(body()) == total);
}

TEST_CASE("streams that hold more than the whole buffer ring still read every byte", "[io][multishot]") {
    io_context ctx(backend_under_test());
    auto listener = tcp_listener::bind(ctx, endpoint::loopback(0));
    // 80 streams x 60 KB unread > the ring's whole 4 MiB pool: some run it dry (ENOBUFS)
    // and read on with plain receives.
    constexpr int streams = 80;
    constexpr std::size_t each = 60'000;
    auto body = [&]() -> task<int> {
        std::vector<tcp_stream> clients;
        std::vector<tcp_stream> servers;
        for (int i = 0; i < streams; ++i) {
            auto [c, s] = co_await connected_pair(ctx, listener);
            s.use_buffer_ring();
            clients.push_back(std::move(c));
            servers.push_back(std::move(s));
        }
        std::vector<std::byte> data(each);
        for (std::size_t i = 0; i < each; ++i) data[i] = pattern(i);
        for (auto& c : clients) co_await c.write_all(data);
        std::array<std::byte, 1> first{};
        for (auto& s : servers) co_await s.read_exact(first); // arms every receive
        co_await weft::io::sleep_for(ctx, 20ms);               // the kernel fills the ring meanwhile
        int intact = 0;
        std::vector<std::byte> rest(each - 1);
        for (auto& s : servers) {
            co_await s.read_exact(rest, deadline::after(10s));
            bool same = true;
            for (std::size_t i = 0; i < rest.size(); ++i) same = same && rest[i] == pattern(i + 1);
            intact += same ? 1 : 0;
        }
        co_return intact;
    };
    CHECK(ctx.run(body()) == streams);
}

TEST_CASE("read_some on a buffer-ring stream honours its deadline and its stop token", "[io][multishot]") {
    io_context ctx(backend_under_test());
    auto listener = tcp_listener::bind(ctx, endpoint::loopback(0));
    auto body = [&]() -> task<void> {
        auto [client, server] = co_await connected_pair(ctx, listener);
        server.use_buffer_ring();
        std::array<std::byte, 8> buf{};
        try {
            co_await server.read_some(buf, deadline::after(10ms));
            FAIL("read returned");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::timed_out);
        }
        std::stop_source stop;
        auto stopper = [&]() -> task<void> {
            co_await weft::io::sleep_for(ctx, 5ms);
            stop.request_stop();
        };
        auto reader = [&]() -> task<bool> {
            try {
                co_await server.read_some(buf);
            } catch (const weft::operation_cancelled&) {
                co_return true;
            }
            co_return false;
        };
        auto [cancelled, _] = co_await weft::when_all(weft::with_stop_token(reader(), stop.get_token()), stopper());
        CHECK(cancelled);
        // The stream still works after both.
        const std::string hi = "hi";
        co_await client.write_all(bytes(hi));
        const std::size_t n = co_await server.read_some(buf, deadline::after(5s));
        CHECK(n == 2);
    };
    ctx.run(body());
}

TEST_CASE("closing buffer-ring streams with their receive armed leaves the loop usable", "[io][multishot]") {
    io_context ctx(backend_under_test());
    auto listener = tcp_listener::bind(ctx, endpoint::loopback(0));
    auto body = [&]() -> task<int> {
        int echoed = 0;
        for (int i = 0; i < 20; ++i) {
            auto [client, server] = co_await connected_pair(ctx, listener);
            server.use_buffer_ring();
            const std::string ping = "ping";
            co_await client.write_all(bytes(ping));
            std::array<std::byte, 4> buf{};
            co_await server.read_exact(buf);
            echoed += 1;
            if (i % 2 == 0) {
                // Unread data queued in ring buffers when it closes.
                co_await client.write_all(bytes(ping));
                co_await weft::io::sleep_for(ctx, 1ms);
            }
            server.close(); // armed: cancelled, freed after its last completion
        }
        co_await weft::io::sleep_for(ctx, 5ms);
        co_return echoed;
    };
    CHECK(ctx.run(body()) == 20);
}

TEST_CASE("connections that arrive while nobody accepts wait for accept", "[io][multishot]") {
    io_context ctx(backend_under_test());
    auto listener = tcp_listener::bind(ctx, endpoint::loopback(0));
    constexpr int count = 10;
    auto body = [&]() -> task<int> {
        // The first accept arms the multishot accept on io_uring.
        auto [c0, s0] = co_await connected_pair(ctx, listener);
        std::vector<tcp_stream> clients;
        for (int i = 0; i < count; ++i) clients.push_back(co_await tcp_stream::connect(ctx, listener.local_endpoint()));
        co_await weft::io::sleep_for(ctx, 5ms); // they are accepted by the kernel meanwhile
        int served = 0;
        for (int i = 0; i < count; ++i) {
            tcp_stream s = co_await listener.accept(deadline::after(5s));
            const std::string x = "x";
            co_await s.write_all(bytes(x));
            ++served;
        }
        for (auto& c : clients) {
            std::array<std::byte, 1> b{};
            co_await c.read_exact(b);
        }
        co_return served;
    };
    CHECK(ctx.run(body()) == count);
}

TEST_CASE("closing a listener closes the connections it accepted for nobody", "[io][multishot]") {
    io_context ctx(backend_under_test());
    auto body = [&]() -> task<std::size_t> {
        auto listener = tcp_listener::bind(ctx, endpoint::loopback(0));
        auto [c0, s0] = co_await connected_pair(ctx, listener);
        tcp_stream waiting = co_await tcp_stream::connect(ctx, listener.local_endpoint());
        co_await weft::io::sleep_for(ctx, 5ms);
        listener.close();
        std::array<std::byte, 1> b{};
        // io_uring accepted it, so closing the listener closes it (EOF);
        // epoll left it in the backlog, where closing the listener resets it.
        try {
            co_return co_await waiting.read_some(b, deadline::after(5s));
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::connection_reset);
        }
        co_return 0;
    };
    CHECK(ctx.run(body()) == 0);
}

TEST_CASE("timers fire in deadline order whatever order they were set in", "[io][timer]") {
    io_context ctx(backend_under_test());
    std::vector<int> order;
    auto sleeper = [&](int id, std::chrono::milliseconds d) -> task<void> {
        co_await weft::io::sleep_for(ctx, d);
        order.push_back(id);
    };
    auto body = [&]() -> task<void> {
        std::vector<task<void>> all;
        const int delays[] = {9, 3, 12, 1, 7, 5, 11, 2, 8, 4, 10, 6};
        for (int d : delays) all.push_back(sleeper(d, std::chrono::milliseconds(d * 3)));
        co_await weft::when_all(std::move(all));
    };
    ctx.run(body());
    CHECK(order == std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
}

TEST_CASE("with_timeout cancels slow work with timed_out and passes fast work through", "[io][timeout]") {
    io_context ctx(backend_under_test());
    auto listener = tcp_listener::bind(ctx, endpoint::loopback(0));
    auto body = [&]() -> task<void> {
        auto [client, server] = co_await connected_pair(ctx, listener);
        std::array<std::byte, 8> buf{};
        const auto start = std::chrono::steady_clock::now();
        try {
            co_await weft::io::with_timeout(ctx, server.read_some(buf), 20ms);
            FAIL("read returned");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::timed_out);
        }
        CHECK(std::chrono::steady_clock::now() - start >= 20ms);

        const std::string abc = "abc";
        co_await client.write_all(bytes(abc));
        const std::size_t n = co_await weft::io::with_timeout(ctx, server.read_some(buf), 5s);
        CHECK(n == 3);

        // A task of several operations: the sleep inside it is what gets cancelled.
        auto two_steps = [&]() -> task<int> {
            co_await weft::io::sleep_for(ctx, 1ms);
            co_await weft::io::sleep_for(ctx, 1h);
            co_return 1;
        };
        try {
            co_await weft::io::with_timeout(ctx, two_steps(), 10ms);
            FAIL("two_steps returned");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::timed_out);
        }
    };
    ctx.run(body());
}

TEST_CASE("with_timeout reports a stop from outside as operation_cancelled", "[io][timeout]") {
    io_context ctx(backend_under_test());
    std::stop_source stop;
    auto body = [&]() -> task<bool> {
        auto stopper = [&]() -> task<void> {
            co_await weft::io::sleep_for(ctx, 5ms);
            stop.request_stop();
        };
        auto timed = [&]() -> task<bool> {
            try {
                co_await weft::io::with_timeout(ctx, nap(ctx, 1h), 10s);
            } catch (const weft::operation_cancelled&) {
                co_return true;
            }
            co_return false;
        };
        auto [cancelled, _] = co_await weft::when_all(timed(), stopper());
        co_return cancelled;
    };
    CHECK(ctx.run(body(), stop.get_token()));
}

TEST_CASE("a listener closed after its loop returned refuses new connections", "[io][multishot]") {
    io_context ctx(backend_under_test());
    auto listener = tcp_listener::bind(ctx, endpoint::loopback(0));
    const endpoint at = listener.local_endpoint();
    // One accepted connection arms the multishot accept; then the loop ends.
    ctx.run([&]() -> task<void> { co_await connected_pair(ctx, listener); }());
    listener.close();
    // No loop turns any more, yet the socket must be gone: a connect fails.
    io_context other(io_backend::epoll);
    CHECK_THROWS_AS(other.run(tcp_stream::connect(other, at)), std::system_error);
}
