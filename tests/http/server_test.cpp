// weft::http::server over loopback TCP (only when weft's TCP layer is built).
#if __has_include(<weft/io/tcp.hpp>)

#include <weft/http/router.hpp>
#include <weft/http/server.hpp>
#include <weft/io/io_context.hpp>
#include <weft/io/tcp.hpp>
#include <weft/stop.hpp>
#include <weft/task.hpp>
#include <weft/when_all.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <vector>

#include <chrono>
#include <string>
#include <string_view>

using namespace weft::http;
using namespace std::chrono_literals;
using weft::task;
namespace io = weft::io;

namespace {

std::span<const std::byte> bytes_of(std::string_view s) {
    return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

/// Connects, sends `text`, reads until the server closes (5 s at most).
/// Everything `s` receives until the peer closes (at most 5 s).
task<std::string> read_to_end(io::tcp_stream& s) {
    std::string out;
    std::byte buf[4096];
    const auto d = io::deadline::after(5s);
    for (;;) {
        const std::size_t n = co_await s.read_some(buf, d);
        if (n == 0) break;
        out.append(reinterpret_cast<const char*>(buf), n);
    }
    co_return out;
}

task<std::string> exchange(io::io_context& ctx, io::endpoint to, std::string text) {
    io::tcp_stream s = co_await io::tcp_stream::connect(ctx, to);
    co_await s.write_all(bytes_of(text));
    co_return co_await read_to_end(s);
}

router test_router(io::io_context& ctx, bool& cancelled) {
    router rt;
    rt.get("/hello/{name}", [](request&, context& c) -> task<response> {
        co_return response(200, "hi " + std::string(c.param("name")));
    });
    rt.get("/slow", [&ctx, &cancelled](request&, context&) -> task<response> {
        try {
            co_await io::sleep_for(ctx, 10s);
        } catch (const weft::operation_cancelled&) {
            cancelled = true;
            throw;
        }
        co_return response(200, "late");
    });
    return rt;
}

/// Runs `srv` on `listener` and `client` together; stops the server when the
/// client is done; returns the client's result.
std::string run_with(io::io_context& ctx, server& srv, io::tcp_listener& listener, task<std::string> client) {
    auto body = [&]() -> task<std::string> {
        std::string result;
        co_await weft::when_all(srv.run(listener), [&]() -> task<void> {
            try {
                result = co_await std::move(client);
            } catch (...) {
                srv.stop();
                throw;
            }
            srv.stop();
        }());
        co_return result;
    };
    return ctx.run(body());
}

} // namespace

TEST_CASE("server answers pipelined keep-alive requests in order and honours Connection: close", "[http][server]") {
    io::io_context ctx;
    bool cancelled = false;
    const router rt = test_router(ctx, cancelled);
    server srv(ctx, rt);
    auto listener = io::tcp_listener::bind(ctx, io::endpoint::loopback(0));
    const std::string out = run_with(ctx, srv, listener,
        exchange(ctx, listener.local_endpoint(),
                 "GET /hello/a HTTP/1.1\r\nHost: h\r\n\r\n"
                 "GET /hello/b HTTP/1.1\r\nHost: h\r\n\r\n"
                 "GET /nope HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
                 "GET /hello/never HTTP/1.1\r\nHost: h\r\n\r\n"));
    CHECK(out ==
          "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nhi a"
          "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nhi b"
          "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 10\r\n\r\nNot Found\n");
    CHECK(srv.active_connections() == 0);
}

TEST_CASE("server keeps requests that arrive while a handler runs", "[http][server]") {
    io::io_context ctx;
    router rt;
    rt.get("/delay/{n}", [&ctx](request&, context& c) -> task<response> {
        co_await io::sleep_for(ctx, 50ms);
        co_return response(200, std::string(c.param("n")));
    });
    server srv(ctx, rt);
    auto listener = io::tcp_listener::bind(ctx, io::endpoint::loopback(0));
    auto client = [&]() -> task<std::string> {
        io::tcp_stream s = co_await io::tcp_stream::connect(ctx, listener.local_endpoint());
        co_await s.write_all(bytes_of("GET /delay/1 HTTP/1.1\r\nHost: h\r\n\r\nGET /del"));
        co_await io::sleep_for(ctx, 20ms);  // the first handler is running now
        co_await s.write_all(bytes_of("ay/2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"));
        std::string out;
        std::byte buf[1024];
        for (;;) {
            const std::size_t n = co_await s.read_some(buf, io::deadline::after(5s));
            if (n == 0) break;
            out.append(reinterpret_cast<const char*>(buf), n);
        }
        co_return out;
    };
    const std::string out = run_with(ctx, srv, listener, client());
    CHECK(out ==
          "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1"
          "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n2");
}

TEST_CASE("server answers a malformed request with 400 and closes", "[http][server]") {
    io::io_context ctx;
    bool cancelled = false;
    const router rt = test_router(ctx, cancelled);
    server srv(ctx, rt);
    auto listener = io::tcp_listener::bind(ctx, io::endpoint::loopback(0));
    const std::string out = run_with(ctx, srv, listener,
        exchange(ctx, listener.local_endpoint(), "GET / HTTP/1.1\r\nBad Header\r\n\r\n"));
    CHECK(out.rfind("HTTP/1.1 400 Bad Request\r\n", 0) == 0);
    CHECK(out.find("Connection: close\r\n") != std::string::npos);
}

TEST_CASE("server answers 408 and closes when a request does not arrive in time", "[http][server]") {
    io::io_context ctx;
    bool cancelled = false;
    const router rt = test_router(ctx, cancelled);
    server_options opts;
    opts.idle_timeout = 200ms;
    server srv(ctx, rt, opts);
    auto listener = io::tcp_listener::bind(ctx, io::endpoint::loopback(0));
    const std::string out = run_with(ctx, srv, listener, exchange(ctx, listener.local_endpoint(), "GET /hel"));
    CHECK(out.rfind("HTTP/1.1 408 Request Timeout\r\n", 0) == 0);
}

TEST_CASE("server answers 503 beyond max_connections", "[http][server]") {
    io::io_context ctx;
    bool cancelled = false;
    const router rt = test_router(ctx, cancelled);
    server_options opts;
    opts.max_connections = 1;
    opts.idle_timeout = 1s;
    server srv(ctx, rt, opts);
    auto listener = io::tcp_listener::bind(ctx, io::endpoint::loopback(0));
    auto clients = [&]() -> task<std::string> {
        // The first connection holds the only slot (idle until it times out).
        io::tcp_stream first = co_await io::tcp_stream::connect(ctx, listener.local_endpoint());
        co_await io::sleep_for(ctx, 50ms);
        std::string second = co_await exchange(ctx, listener.local_endpoint(), "GET /hello/x HTTP/1.1\r\nHost: h\r\n\r\n");
        first.close();
        co_return second;
    };
    const std::string out = run_with(ctx, srv, listener, clients());
    CHECK(out.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0) == 0);
}

TEST_CASE("server pauses accepting while out of file descriptors and then serves the waiting clients",
          "[http][server]") {
    const io::io_backend backend = GENERATE(io::io_backend::automatic, io::io_backend::epoll);
    io::io_context ctx(backend);
    bool cancelled = false;
    const router rt = test_router(ctx, cancelled);
    server srv(ctx, rt);
    auto listener = io::tcp_listener::bind(ctx, io::endpoint::loopback(0));
    ::rlimit saved{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
    struct restore {
        ::rlimit limit;
        bool done = false;
        void operator()() {
            if (!done) ::setrlimit(RLIMIT_NOFILE, &limit);
            done = true;
        }
        ~restore() { (*this)(); }
    } restore_limit{saved};
    auto clients = [&]() -> task<std::string> {
        // The clients' sockets first; then no new descriptor can be made (the
        // limit at the lowest free one), so the server cannot accept them.
        std::array<int, 2> fds{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0),
                               ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
        REQUIRE(fds[0] >= 0);
        REQUIRE(fds[1] >= 0);
        const int lowest_free = ::dup(0);
        REQUIRE(lowest_free >= 0);
        ::close(lowest_free);
        ::rlimit tight = saved;
        tight.rlim_cur = static_cast<rlim_t>(lowest_free);
        REQUIRE(::setrlimit(RLIMIT_NOFILE, &tight) == 0);
        const io::endpoint to = listener.local_endpoint();
        std::vector<io::tcp_stream> streams;
        for (const int fd : fds) {
            // Loopback: the kernel completes the handshake into the backlog.
            REQUIRE(::connect(fd, to.data(), to.size()) == 0);
            REQUIRE(::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) == 0); // as the epoll backend needs
            streams.emplace_back(ctx, fd);
            co_await streams.back().write_all(bytes_of("GET /hello/fd HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"));
        }
        co_await io::sleep_for(ctx, 100ms);
        const std::uint64_t pauses = srv.accept_pauses();
        CHECK(pauses >= 2);            // it tried again, without spinning:
        CHECK(pauses <= 100 / 20 + 1); // one try per 20 ms pause
        restore_limit();
        std::string out;
        for (io::tcp_stream& st : streams) {
            const std::string got = co_await read_to_end(st);
            out += got;
        }
        co_return out;
    };
    const std::string out = run_with(ctx, srv, listener, clients());
    CHECK(out.find("hi fd") != std::string::npos);
    CHECK(out.find("hi fd", out.find("hi fd") + 1) != std::string::npos);
}

TEST_CASE("server cancels the handler when the client disconnects", "[http][server]") {
    io::io_context ctx;
    bool cancelled = false;
    const router rt = test_router(ctx, cancelled);
    server srv(ctx, rt);
    auto listener = io::tcp_listener::bind(ctx, io::endpoint::loopback(0));
    auto client = [&]() -> task<std::string> {
        {
            io::tcp_stream s = co_await io::tcp_stream::connect(ctx, listener.local_endpoint());
            const std::string_view req = "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n";
            co_await s.write_all(bytes_of(req));
            co_await io::sleep_for(ctx, 50ms);
        }  // closed
        for (int i = 0; i < 200 && !cancelled; ++i) co_await io::sleep_for(ctx, 10ms);
        co_return std::string();
    };
    const auto start = io::clock::now();
    run_with(ctx, srv, listener, client());
    CHECK(cancelled);
    CHECK(io::clock::now() - start < 5s);
}

TEST_CASE("server sends a stream's head while its handler waits, and cancels it when the client leaves", "[http][server]") {
    io::io_context ctx;
    router rt;
    bool cancelled = false;
    rt.add_stream(method::get, "/events", [&](request&, context&, chunked_writer& out) -> task<void> {
        co_await out.start(200, sse_writer::headers());
        try {
            co_await io::sleep_for(ctx, 10s);  // nothing more to say for now
        } catch (const weft::operation_cancelled&) {
            cancelled = true;
            throw;
        }
    });
    server srv(ctx, rt);
    auto listener = io::tcp_listener::bind(ctx, io::endpoint::loopback(0));
    auto client = [&]() -> task<std::string> {
        std::string head;
        {
            io::tcp_stream s = co_await io::tcp_stream::connect(ctx, listener.local_endpoint());
            co_await s.write_all(bytes_of("GET /events HTTP/1.1\r\nHost: h\r\n\r\n"));
            std::byte buf[1024];
            while (head.find("\r\n\r\n") == std::string::npos) {
                const std::size_t n = co_await s.read_some(buf, io::deadline::after(5s));
                if (n == 0) break;
                head.append(reinterpret_cast<const char*>(buf), n);
            }
        }  // closed
        for (int i = 0; i < 200 && !cancelled; ++i) co_await io::sleep_for(ctx, 10ms);
        co_return head;
    };
    const std::string head = run_with(ctx, srv, listener, client());
    CHECK(head == "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n");
    CHECK(cancelled);
}

TEST_CASE("server answers HEAD and then GET on one keep-alive connection", "[http][server]") {
    io::io_context ctx;
    bool cancelled = false;
    router rt = test_router(ctx, cancelled);
    rt.add_stream(method::get, "/stream", [](request&, context&, chunked_writer& out) -> task<void> {
        co_await out.start(200);
        const std::string_view data = "data";
        co_await out.write_string(data);
    });
    server srv(ctx, rt);
    auto listener = io::tcp_listener::bind(ctx, io::endpoint::loopback(0));
    const std::string out = run_with(ctx, srv, listener,
        exchange(ctx, listener.local_endpoint(),
                 "HEAD /stream HTTP/1.1\r\nHost: h\r\n\r\n"
                 "HEAD /hello/x HTTP/1.1\r\nHost: h\r\n\r\n"
                 "GET /stream HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"));
    CHECK(out ==
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
          "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n"
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ndata\r\n0\r\n\r\n");
}

TEST_CASE("server shutdown lets in-flight requests finish", "[http][server]") {
    io::io_context ctx;
    router rt;
    server srv(ctx, rt);
    rt.get("/finish", [&](request&, context&) -> task<response> {
        srv.stop();  // shutdown begins while this request is in flight
        co_await io::sleep_for(ctx, 100ms);
        co_return response(200, "done");
    });
    auto listener = io::tcp_listener::bind(ctx, io::endpoint::loopback(0));
    auto body = [&]() -> task<std::string> {
        std::string result;
        co_await weft::when_all(srv.run(listener), [&]() -> task<void> {
            result = co_await exchange(ctx, listener.local_endpoint(), "GET /finish HTTP/1.1\r\nHost: h\r\n\r\n");
        }());
        co_return result;
    };
    const std::string out = ctx.run(body());
    CHECK(out == "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone");
}

#endif
