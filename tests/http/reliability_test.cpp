// weft::http::server against hostile clients and many idle connections, over
// real loopback sockets (only when weft's TCP layer is built). The server runs
// on its own thread; the clients are plain blocking POSIX sockets with receive
// and send timeouts, so nothing here can hang.
#if __has_include(<weft/io/tcp.hpp>)

#include "test_support.hpp"

#include <weft/http/router.hpp>
#include <weft/http/server.hpp>
#include <weft/io/io_context.hpp>
#include <weft/io/tcp.hpp>
#include <weft/task.hpp>
#include <weft/when_all.hpp>

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <vector>

using namespace weft::http;
using namespace std::chrono_literals;
using weft::task;
namespace io = weft::io;

namespace {

/// Runs a `server` with a `GET /` → 200 "ok" route on its own thread, on an
/// ephemeral loopback port; the destructor stops it and joins the thread.
class background_server {
public:
    explicit background_server(server_options opts) {
        std::promise<std::uint16_t> port;
        auto ready = port.get_future();
        m_thread = std::thread([this, opts, &port] {
            bool published = false;  // `port` dies once the constructor has its value
            try {
                io::io_context ctx;
                router rt;
                rt.get("/", [](request&, context&) -> task<response> { co_return response(200, "ok"); });
                server srv(ctx, rt, opts);
                auto listener = io::tcp_listener::bind(ctx, io::endpoint::loopback(0));
                published = true;
                port.set_value(listener.local_endpoint().port());
                auto body = [&]() -> task<void> {
                    co_await weft::when_all(srv.run(listener), [&]() -> task<void> {
                        while (!m_stop.load()) co_await io::sleep_for(ctx, 10ms);
                        srv.stop();
                    }());
                };
                ctx.run(body());
            } catch (...) {
                m_error = std::current_exception();
                if (!published) port.set_value(0);
            }
        });
        m_port = ready.get();
        if (m_port == 0) {
            m_thread.join();
            std::rethrow_exception(m_error);
        }
    }
    background_server(const background_server&) = delete;
    background_server& operator=(const background_server&) = delete;
    ~background_server() { stop_and_join(); }

    /// Stops the server, waits for its thread; returns the server thread's
    /// exception if `run` failed (nullptr otherwise).
    std::exception_ptr stop_and_join() {
        m_stop = true;
        if (m_thread.joinable()) m_thread.join();
        return m_error;
    }

    std::uint16_t port() const noexcept { return m_port; }

private:
    std::thread m_thread;
    std::atomic<bool> m_stop{false};
    std::exception_ptr m_error;
    std::uint16_t m_port = 0;
};

/// A blocking client socket; closed on destruction.
struct client_fd {
    int fd = -1;
    client_fd() = default;
    client_fd(client_fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
    client_fd& operator=(client_fd&&) = delete;
    ~client_fd() {
        if (fd >= 0) ::close(fd);
    }
};

/// Connects to 127.0.0.1:port with `timeout` on every send and receive; fd -1 on failure.
client_fd connect_to(std::uint16_t port, std::chrono::milliseconds timeout = 5000ms) {
    client_fd c;
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c.fd < 0) return c;
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    ::setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(c.fd);
        c.fd = -1;
    }
    return c;
}

/// Sends all of `text` (stops early if the server has closed or a send times out).
void send_all(int fd, const std::string& text) {
    std::size_t done = 0;
    while (done < text.size()) {
        const ssize_t n = ::send(fd, text.data() + done, text.size() - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        done += static_cast<std::size_t>(n);
    }
}

/// Reads until the peer closes, an error (e.g. a reset) or the receive timeout.
std::string read_until_close(int fd) {
    std::string out;
    char buf[4096];
    for (;;) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

/// Sends `text` on a fresh connection, returns everything the server sends back.
std::string exchange(std::uint16_t port, const std::string& text) {
    client_fd c = connect_to(port);
    REQUIRE(c.fd >= 0);
    send_all(c.fd, text);
    return read_until_close(c.fd);
}

std::string status_line(const std::string& response) {
    return response.substr(0, response.find("\r\n"));
}

std::size_t open_fd_count() {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
    return n;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

const std::string ok_request = "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";

struct hostile_request {
    const char* name;
    std::string text;
    const char* status_line;
};

std::vector<hostile_request> hostile_requests() {
    const std::string host = "Host: h\r\n";
    std::string nul_header = "GET / HTTP/1.1\r\n" + host + "X-A: 1\r\n\r\n";
    nul_header.insert(nul_header.find("X-A: ") + 5, 1, '\0');
    return {
        {"no spaces in the request line", "GET/HTTP/1.1\r\n" + host + "\r\n", "HTTP/1.1 400 Bad Request"},
        {"double space in the request line", "GET  / HTTP/1.1\r\n" + host + "\r\n", "HTTP/1.1 400 Bad Request"},
        {"missing version", "GET /\r\n" + host + "\r\n", "HTTP/1.1 400 Bad Request"},
        {"separator in the method", "GE(T / HTTP/1.1\r\n" + host + "\r\n", "HTTP/1.1 400 Bad Request"},
        {"binary garbage", std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 15), "HTTP/1.1 400 Bad Request"},
        {"20 KiB header", "GET / HTTP/1.1\r\n" + host + "X-Big: " + std::string(20 * 1024, 'a') + "\r\n\r\n",
         "HTTP/1.1 431 Request Header Fields Too Large"},
        {"2 MiB Content-Length", "POST / HTTP/1.1\r\n" + host + "Content-Length: 2097152\r\n\r\n",
         "HTTP/1.1 413 Content Too Large"},
        {"non-hex chunk size", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nzz\r\n",
         "HTTP/1.1 400 Bad Request"},
        {"overflowing chunk size", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
         "HTTP/1.1 400 Bad Request"},
        {"negative Content-Length", "POST / HTTP/1.1\r\n" + host + "Content-Length: -1\r\n\r\n", "HTTP/1.1 400 Bad Request"},
        {"overflowing Content-Length",
         "POST / HTTP/1.1\r\n" + host + "Content-Length: 99999999999999999999999\r\n\r\n", "HTTP/1.1 400 Bad Request"},
        {"Content-Length with Transfer-Encoding",
         "POST / HTTP/1.1\r\n" + host + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         "HTTP/1.1 400 Bad Request"},
        {"NUL in a header value", nul_header, "HTTP/1.1 400 Bad Request"},
        {"invalid UTF-8 in the path", "GET /\xC0\xAF HTTP/1.1\r\n" + host + "\r\n", "HTTP/1.1 400 Bad Request"},
        {"lone continuation byte in the path", "GET /\x80 HTTP/1.1\r\n" + host + "\r\n", "HTTP/1.1 400 Bad Request"},
        {"control byte in the path", "GET /a\x01" "b HTTP/1.1\r\n" + host + "\r\n", "HTTP/1.1 400 Bad Request"},
        {"DEL in the path", "GET /a\x7F HTTP/1.1\r\n" + host + "\r\n", "HTTP/1.1 400 Bad Request"},
        {"unknown HTTP version", "GET / HTTP/2.0\r\n" + host + "\r\n", "HTTP/1.1 505 HTTP Version Not Supported"},
        {"bare LF line endings", "GET / HTTP/1.1\n" + host + "\n", "HTTP/1.1 400 Bad Request"},
    };
}

} // namespace

TEST_CASE("server answers each hostile request with its error status and keeps serving", "[http][reliability]") {
    server_options opts;
    opts.idle_timeout = 3s;
    background_server bg(opts);

    for (const hostile_request& h : hostile_requests()) {
        INFO(h.name);
        const std::string out = exchange(bg.port(), h.text);
        // Each one gets its status and Connection: close, then EOF (read_until_close returned).
        CHECK(status_line(out) == h.status_line);
        CHECK(out.find("\r\nConnection: close\r\n") != std::string::npos);
    }

    const std::string out = exchange(bg.port(), ok_request);
    CHECK(status_line(out) == "HTTP/1.1 200 OK");
    CHECK(out.size() >= 2);
    CHECK(out.substr(out.size() - 2) == "ok");
    CHECK(bg.stop_and_join() == nullptr);
}

TEST_CASE("server times out thousands of idle connections with 408 while serving a fresh one", "[http][reliability]") {
    // Raise the soft fd limit to the hard limit. Client and server share this
    // process, so each connection costs two descriptors; keep 64 spare.
    rlimit lim{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &lim) == 0);
    const rlimit old = lim;
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
    ::getrlimit(RLIMIT_NOFILE, &lim);
    const std::size_t by_limit = lim.rlim_cur > 256 ? static_cast<std::size_t>((lim.rlim_cur - 128) / 2) : 0;
    // Sanitizer builds (CI runs this suite under ASan and TSan) are several
    // times slower per connection: they hold fewer.
    const std::size_t wanted = weft::test::sanitized ? 2'000 : 10'000;
    const std::size_t target = std::min<std::size_t>(wanted, by_limit);
    REQUIRE(target >= 100);

    const std::size_t fds_before = open_fd_count();
    const auto start = std::chrono::steady_clock::now();
    {
        server_options opts;
        opts.max_connections = target + 100;
        opts.idle_timeout = 2s;
        opts.read_buffer_bytes = 4 * 1024;
        background_server bg(opts);

        std::vector<client_fd> idle;
        idle.reserve(target);
        for (std::size_t i = 0; i < target; ++i) {
            client_fd c = connect_to(bg.port());
            if (c.fd < 0) break;
            idle.push_back(std::move(c));
        }
        std::printf("reliability: %zu idle connections open (fd limit %llu) in %lld ms\n", idle.size(),
                    static_cast<unsigned long long>(lim.rlim_cur),
                    static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                               std::chrono::steady_clock::now() - start)
                                               .count()));
        CHECK(idle.size() == target);

        // While they are all open, a fresh connection is served normally.
        const std::string out = exchange(bg.port(), ok_request);
        CHECK(status_line(out) == "HTTP/1.1 200 OK");

        // Every idle one is answered 408 and closed.
        std::size_t timed_out = 0;
        for (const client_fd& c : idle) {
            if (starts_with(read_until_close(c.fd), "HTTP/1.1 408 Request Timeout\r\n")) ++timed_out;
        }
        CHECK(timed_out == idle.size());

        idle.clear();  // every client fd closed
        CHECK(bg.stop_and_join() == nullptr);
    }

    CHECK(std::chrono::steady_clock::now() - start < 20s);
    CHECK(open_fd_count() == fds_before);  // client, server and listener fds all closed
    ::setrlimit(RLIMIT_NOFILE, &old);
}

#endif
