/// \file
/// `server`: serves a `router` over TCP on a `weft::io::io_context`.
///
/// `co_await srv.run(listener)` accepts connections until stop is requested on
/// the awaiting coroutine's stop token (or `stop()` is called). Each connection
/// is one coroutine in the server's `async_scope`: it parses requests with a
/// `request_parser` (keep-alive and pipelining: requests are answered in order),
/// dispatches them through the router and writes the responses.
///
/// Handlers run inline: the connection starts a handler on its own stack and,
/// while it has not suspended, collects what it writes in an output buffer
/// (up to 64 KiB), sent when the connection next waits for input, so the
/// responses to pipelined requests leave in one send. Only a handler that
/// suspends (it awaits a timer, other work, or a full socket) makes the
/// connection send what it buffered at once (without waiting) and watch the
/// socket until the handler finishes: pipelined bytes are buffered (up to the
/// parser's limits), and if the client closes its side, the handler's stop
/// token is triggered (within one loop turn) and the connection is closed.
/// Later writes of such a handler complete when the kernel has the bytes
/// (back-pressure for streams). Connections receive through the context's
/// buffer ring (`server_options::use_buffer_ring`).
///
/// Limits: a malformed or oversized request gets its status (400, 413, 431,
/// 501, 505) with `Connection: close`, then the connection is closed; a
/// connection that sends no complete request within `idle_timeout` gets 408 and
/// is closed; beyond `max_connections` open connections a new one gets 503 and
/// is closed at once. Out of file descriptors (EMFILE, ENFILE) or socket
/// memory, the server stops accepting for 20 ms at a time (the clients wait
/// in the listen backlog, the open connections are served) instead of
/// retrying in a busy loop.
///
/// Shutdown: on stop, the server stops accepting and closes idle connections;
/// in-flight requests get up to `shutdown_timeout` to finish (their responses
/// carry `Connection: close`), after which their handlers are cancelled through
/// their stop token. `run` returns when every connection is gone.
///
/// Lifetime: the router, the context and the server must outlive `run`.
/// Threading: everything runs on the context's loop thread; `stop()` must be
/// called there too (or use the stop token of `run`'s awaiter).
#pragma once

#include <weft/async_scope.hpp>
#include <weft/http/request_parser.hpp>
#include <weft/http/router.hpp>
#include <weft/io/io_context.hpp>
#include <weft/io/tcp.hpp>
#include <weft/task.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstddef>
#include <list>
#include <stop_token>

namespace weft::http {

struct server_options {
    http::limits limits;
    std::size_t max_connections = 1024;
    /// Time allowed for each request to arrive completely (408 after it), and
    /// for each single write of a response (the connection is closed after it).
    std::chrono::milliseconds idle_timeout{30'000};
    /// How long in-flight requests may run once shutdown begins.
    std::chrono::milliseconds shutdown_timeout{5'000};
    std::size_t read_buffer_bytes = 16 * 1024;
    /// Receive through the context's buffer ring (`tcp_stream::use_buffer_ring`;
    /// no effect on the epoll backend).
    bool use_buffer_ring = true;
};

class server {
public:
    server(io::io_context& ctx, const router& routes, server_options opts = {});
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    /// Accepts and serves until stopped, then shuts down gracefully (see above).
    task<void> run(io::tcp_listener& listener);
    /// Begins the graceful shutdown of a running `run`.
    void stop();

    std::size_t active_connections() const noexcept { return m_connections.size(); }
    /// How many times accepting paused because the process or the system
    /// was out of file descriptors (or socket memory): each pause waits
    /// 20 ms, serving the open connections, then accepts again. Any thread.
    std::uint64_t accept_pauses() const noexcept {
        // relaxed: a count for metrics and tests; nothing is published with it.
        return m_accept_pauses.load(std::memory_order_relaxed);
    }
    const server_options& options() const noexcept { return m_options; }

private:
    struct connection_state {
        std::stop_source stop;
        bool busy = false;
    };

    task<void> serve_connection(io::tcp_stream stream, connection_state& state);
    task<void> reject_busy(io::tcp_stream stream);

    io::io_context& m_ctx;
    const router& m_routes;
    server_options m_options;
    std::stop_source m_accept_stop;
    bool m_shutting_down = false;
    std::atomic<std::uint64_t> m_accept_pauses{0};
    std::list<connection_state> m_connections;
    async_scope m_scope;
};

} // namespace weft::http
