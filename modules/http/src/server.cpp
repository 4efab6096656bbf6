#include <weft/http/server.hpp>

#include <weft/stop.hpp>
#include <weft/detail/trampoline.hpp>
#include <weft/with_stop_token.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <exception>
#include <system_error>
#include <vector>

namespace weft::http {

namespace {

/// The connection's byte_sink. While a handler runs inline (before it first
/// suspends), its writes are collected in an output buffer, without
/// suspending, up to `inline_limit` bytes; the connection sends them when the
/// handler is done (several pipelined responses together) or as soon as the
/// handler suspends. Any other write first sends what is buffered, then its
/// own bytes, and completes when the kernel has them all: back-pressure for
/// streaming handlers. Each send must finish within `timeout`.
class connection_sink final : public byte_sink {
public:
    static constexpr std::size_t inline_limit = 64 * 1024;

    connection_sink(io::tcp_stream& s, std::chrono::milliseconds timeout) : m_stream(s), m_timeout(timeout) {
        m_out.reserve(4096);
    }

    task<void> write(std::span<const std::byte> bytes) override {
        if (m_inline && m_out.size() + bytes.size() <= inline_limit) {
            m_out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
            co_return;
        }
        m_inline = false;
        m_sending = true;
        // (A streaming handler's writes find the buffer empty: no flush
        // coroutine for them.)
        if (!m_out.empty()) co_await flush();
        co_await m_stream.write_all(bytes, io::deadline::after(m_timeout));
        m_sending = false;
    }

    /// Sends what is buffered.
    task<void> flush() {
        if (m_out.empty()) co_return;
        co_await m_stream.write_all(std::as_bytes(std::span<const char>(m_out.data(), m_out.size())),
                                    io::deadline::after(m_timeout));
        m_out.clear();
    }

    /// Hands the kernel as much of the buffer as it takes now, without
    /// waiting (for a handler that suspended: its head should not wait for
    /// its next write). What is left goes with that write, or at the end.
    void send_buffered_now() noexcept {
        if (m_sending || m_out.empty()) return;
        std::size_t sent = 0;
        while (sent < m_out.size()) {
            const ssize_t n = ::send(m_stream.native_handle(), m_out.data() + sent, m_out.size() - sent,
                                     MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n <= 0) break;  // full, or failing: the next send reports it
            sent += static_cast<std::size_t>(n);
        }
        m_out.erase(0, sent);
    }

    void set_inline(bool on) noexcept { m_inline = on; }
    std::size_t buffered() const noexcept { return m_out.size(); }

private:
    io::tcp_stream& m_stream;
    std::chrono::milliseconds m_timeout;
    std::string m_out;
    bool m_inline = false;
    bool m_sending = false;
};

task<void> write_error(byte_sink& sink, int status, std::string_view reason) {
    response r(status, std::string(reason) + "\n", "text/plain");
    r.headers.add("Connection", "close");
    const std::string bytes = serialize(r);
    co_await sink.write_string(bytes);
}

/// Reads while a suspended handler runs: buffers pipelined bytes into the
/// parser (up to `cap` buffered bytes); when the client closes its side (or
/// the connection fails), stops `handler_stop` and returns. Ends quietly when
/// cancelled through `cancelled` (the token it runs under); a cancellation
/// it did not ask for (the kernel's ECANCELED) counts as the connection
/// failing.
task<void> watch_for_disconnect(io::io_context& ctx, io::tcp_stream& s, request_parser& parser,
                                std::span<std::byte> buffer, std::size_t cap, std::stop_source& handler_stop,
                                bool& gone, const std::stop_token& cancelled) {
    try {
        for (;;) {
            if (parser.buffered() >= cap) {
                co_await io::sleep_for(ctx, std::chrono::hours(1));  // until cancelled
                continue;
            }
            // The handler finishing first cancels this read, once per
            // request: reported as a code, it costs no exception.
            std::error_code ec;
            const std::size_t n = co_await s.read_some(buffer, ec);
            if (ec == std::errc::operation_canceled && cancelled.stop_requested()) co_return;
            if (ec || n == 0) break;  // reset or closed by the peer: gone
            parser.feed(std::span<const std::byte>(buffer.data(), n));
        }
    } catch (const operation_cancelled&) {
        co_return;  // the handler finished first
    } catch (const std::exception&) {
        // reset by the peer: gone too
    }
    gone = true;
    handler_stop.request_stop();
}

/// After an error response: stop sending, then read and drop what the client
/// still sends (briefly, bounded) so that closing does not reset the
/// connection before the client has read the response.
task<void> linger_close(io::tcp_stream& s, std::chrono::milliseconds timeout) {
    try {
        s.shutdown();
        std::byte sink[1024];
        const auto d = io::deadline::after(std::min<std::chrono::milliseconds>(timeout, std::chrono::seconds(2)));
        for (std::size_t total = 0; total < 64 * 1024;) {
            const std::size_t n = co_await s.read_some(sink, d);
            if (n == 0) break;
            total += n;
        }
    } catch (const std::exception&) {
    }
    s.close();
}

task<void> nap(io::io_context& ctx, std::chrono::milliseconds d) { co_await io::sleep_for(ctx, d); }

/// How long the accept loop waits when the process or the system is out of
/// file descriptors (or socket memory) before it accepts again.
constexpr std::chrono::milliseconds accept_pause{20};

bool out_of_descriptors(const std::error_code& ec) noexcept {
    return ec == std::errc::too_many_files_open || ec == std::errc::too_many_files_open_in_system ||
           ec == std::errc::no_buffer_space || ec == std::errc::not_enough_memory;
}

/// Runs a task<void> inline up to its first suspension, so that the caller
/// learns whether it finished synchronously (most handlers do) and pays for
/// concurrent work, such as watching the socket, only when it did not.
class inline_run {
public:
    explicit inline_run(task<void>& t) noexcept : m_task(t) {}
    inline_run(const inline_run&) = delete;
    inline_run& operator=(const inline_run&) = delete;

    /// `co_await start(token)`: runs the task under `token` until it suspends
    /// or finishes; yields whether it finished. Never suspends the caller.
    struct start_awaiter {
        inline_run& m_run;
        const std::stop_token* m_token;
        bool await_ready() const noexcept { return false; }
        bool await_suspend(std::coroutine_handle<>) {
            auto h = m_run.m_task.handle();
            h.promise().set_stop_token_ptr(m_token);
            h.promise().set_on_done(&inline_run::on_done, &m_run);
            // A nested trampoline: returns once the task and whatever it
            // resumed have finished or suspended.
            weft::detail::resume_now(h);
            return false;
        }
        bool await_resume() const noexcept { return m_run.m_done; }
    };
    start_awaiter start(const std::stop_token* token) noexcept { return {*this, token}; }

    /// `co_await join()`: until the task has finished; rethrows its exception.
    struct join_awaiter {
        inline_run& m_run;
        bool await_ready() const noexcept { return m_run.m_done; }
        void await_suspend(std::coroutine_handle<> h) noexcept { m_run.m_waiter = h; }
        void await_resume() { m_run.m_task.handle().promise().take_result(); }
    };
    join_awaiter join() noexcept { return {*this}; }

    bool done() const noexcept { return m_done; }

private:
    static void on_done(void* self, std::coroutine_handle<>) noexcept {
        auto& run = *static_cast<inline_run*>(self);
        run.m_done = true;
        if (run.m_waiter) {
            weft::detail::resume(std::exchange(run.m_waiter, {}));
        }
    }

    task<void>& m_task;
    bool m_done = false;
    std::coroutine_handle<> m_waiter;
};

bool is_timeout(const std::system_error& e) noexcept {
    return e.code() == std::errc::timed_out;
}

} // namespace

server::server(io::io_context& ctx, const router& routes, server_options opts)
    : m_ctx(ctx), m_routes(routes), m_options(opts) {}

void server::stop() { m_accept_stop.request_stop(); }

task<void> server::reject_busy(io::tcp_stream stream) {
    try {
        connection_sink sink(stream, m_options.idle_timeout);
        co_await write_error(sink, 503, "Service Unavailable");
    } catch (const std::exception&) {
        // The client is gone or slow: nothing more to do.
    }
    co_await linger_close(stream, m_options.idle_timeout);
}

task<void> server::serve_connection(io::tcp_stream stream, connection_state& state) {
    if (m_options.use_buffer_ring) stream.use_buffer_ring();
    request_parser parser(m_options.limits);
    std::vector<std::byte> buffer(m_options.read_buffer_bytes == 0 ? 4096 : m_options.read_buffer_bytes);
    connection_sink sink(stream, m_options.idle_timeout);
    const std::size_t cap = m_options.limits.max_header_bytes + m_options.limits.max_body_bytes;
    const std::stop_token connection_token = co_await get_stop_token();
    try {
        for (;;) {
            // One complete request, within idle_timeout.
            const io::deadline deadline = io::deadline::after(m_options.idle_timeout);
            parse_status status = parser.next();
            bool timed_out = false;
            if (status == parse_status::need_more && sink.buffered() != 0) {
                co_await sink.flush();  // the responses so far, before waiting for more
            }
            while (status == parse_status::need_more) {
                if (m_shutting_down) co_return;
                std::size_t n = 0;
                try {
                    n = co_await stream.read_some(buffer, deadline);
                } catch (const std::system_error& e) {
                    if (!is_timeout(e)) throw;
                    timed_out = true;
                }
                if (timed_out) break;
                if (n == 0) co_return;
                parser.feed(std::span<const std::byte>(buffer.data(), n));
                status = parser.next();
            }
            if (timed_out) {
                co_await write_error(sink, 408, "Request Timeout");
                co_await linger_close(stream, m_options.idle_timeout);
                co_return;
            }
            if (status == parse_status::error) {
                co_await write_error(sink, parser.error().status, parser.error().reason);
                co_await linger_close(stream, m_options.idle_timeout);
                co_return;
            }

            request req = parser.take();
            const bool keep_alive = req.keep_alive() && !m_shutting_down;
            if (!keep_alive) req.headers.set("Connection", "close");
            state.busy = true;
            task<void> handler = m_routes.serve(req, sink);
            inline_run run(handler);
            // The handler's stop token is the connection's: a disconnect, like
            // a shutdown, cancels it and ends the connection.
            sink.set_inline(true);
            const bool finished_inline = co_await run.start(&connection_token);
            sink.set_inline(false);
            if (!finished_inline) {
                // It suspended: its head goes out now, and the socket is
                // watched until it finishes, so that a client going away
                // cancels it.
                sink.send_buffered_now();
                bool gone = false;
                std::stop_source watch_stop;
                const std::stop_token watch_token = watch_stop.get_token();
                task<void> watch =
                    watch_for_disconnect(m_ctx, stream, parser, buffer, cap, state.stop, gone, watch_token);
                inline_run watching(watch);
                co_await watching.start(&watch_token);
                std::exception_ptr failure;
                try {
                    co_await run.join();
                } catch (...) {
                    failure = std::current_exception();
                }
                watch_stop.request_stop();
                co_await watching.join();
                if (failure) std::rethrow_exception(failure);
                if (gone) co_return;
            } else {
                co_await run.join();  // rethrows what the handler threw
            }
            state.busy = false;
            if (!keep_alive || m_shutting_down) {
                co_await sink.flush();
                co_return;
            }
            if (sink.buffered() >= connection_sink::inline_limit) co_await sink.flush();
        }
    } catch (const std::exception&) {
        // Cancelled (shutdown), reset by the peer, write timeout...: close.
    }
}

task<void> server::run(io::tcp_listener& listener) {
    m_shutting_down = false;
    {
        std::stop_callback on_stop(co_await get_stop_token(), [this]() noexcept { m_accept_stop.request_stop(); });
        while (!m_accept_stop.stop_requested()) {
            std::error_code ec;
            io::tcp_stream s = co_await with_stop_token(listener.accept(ec), m_accept_stop.get_token());
            if (ec) {
                if (m_accept_stop.stop_requested()) break;
                if (out_of_descriptors(ec)) {
                    // The connection stays in the backlog and the next accept
                    // would fail at once until a descriptor frees: retrying
                    // now would spin. Wait a little (the connections being
                    // served go on meanwhile), as nginx does.
                    m_accept_pauses.fetch_add(1, std::memory_order_relaxed);
                    co_await with_stop_token(nap(m_ctx, accept_pause), std::stop_token{});
                }
                continue;  // ECONNABORTED and the like: keep accepting
            }
            if (m_connections.size() >= m_options.max_connections) {
                m_scope.spawn(reject_busy(std::move(s)));
                continue;
            }
            auto it = m_connections.emplace(m_connections.end());
            auto conn = [](server* self, io::tcp_stream stream, std::list<connection_state>::iterator at) -> task<void> {
                co_await with_stop_token(self->serve_connection(std::move(stream), *at), at->stop.get_token());
                self->m_connections.erase(at);
            };
            m_scope.spawn(conn(this, std::move(s), it));
        }
    }

    // Graceful shutdown: idle connections close now, busy ones get shutdown_timeout.
    m_shutting_down = true;
    for (connection_state& c : m_connections) {
        if (!c.busy) c.stop.request_stop();
    }
    const auto until = io::clock::now() + m_options.shutdown_timeout;
    while (!m_connections.empty() && io::clock::now() < until) {
        co_await with_stop_token(nap(m_ctx, std::chrono::milliseconds(5)), std::stop_token{});
    }
    for (connection_state& c : m_connections) c.stop.request_stop();
    co_await m_scope.join();
}

} // namespace weft::http
