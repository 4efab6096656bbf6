#include <weft/http/server.hpp>

#include <weft/stop.hpp>
#include <weft/when_any.hpp>
#include <weft/with_stop_token.hpp>

#include <algorithm>
#include <system_error>
#include <vector>

namespace weft::http {

namespace {

/// byte_sink over a tcp_stream; each write must finish within `timeout`.
class stream_sink final : public byte_sink {
public:
    stream_sink(io::tcp_stream& s, std::chrono::milliseconds timeout) noexcept : m_stream(s), m_timeout(timeout) {}
    task<void> write(std::span<const std::byte> bytes) override {
        co_await m_stream.write_all(bytes, io::deadline::after(m_timeout));
    }

private:
    io::tcp_stream& m_stream;
    std::chrono::milliseconds m_timeout;
};

task<void> write_error(byte_sink& sink, int status, std::string_view reason) {
    response r(status, std::string(reason) + "\n", "text/plain");
    r.headers.add("Connection", "close");
    const std::string bytes = serialize(r);
    co_await sink.write_string(bytes);
}

/// Reads while a handler runs: buffers pipelined bytes into the parser (up to
/// `cap` buffered bytes), returns when the client closes its side.
task<void> watch_for_disconnect(io::io_context& ctx, io::tcp_stream& s, request_parser& parser,
                                std::span<std::byte> buffer, std::size_t cap) {
    for (;;) {
        if (parser.buffered() >= cap) {
            co_await io::sleep_for(ctx, std::chrono::hours(1));  // until cancelled
            continue;
        }
        const std::size_t n = co_await s.read_some(buffer);
        if (n == 0) co_return;
        parser.feed(std::span<const std::byte>(buffer.data(), n));
    }
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

bool is_timeout(const std::system_error& e) noexcept {
    return e.code() == std::errc::timed_out;
}

} // namespace

server::server(io::io_context& ctx, const router& routes, server_options opts)
    : m_ctx(ctx), m_routes(routes), m_options(opts) {}

void server::stop() { m_accept_stop.request_stop(); }

task<void> server::reject_busy(io::tcp_stream stream) {
    try {
        stream_sink sink(stream, m_options.idle_timeout);
        co_await write_error(sink, 503, "Service Unavailable");
    } catch (const std::exception&) {
        // The client is gone or slow: nothing more to do.
    }
    co_await linger_close(stream, m_options.idle_timeout);
}

task<void> server::serve_connection(io::tcp_stream stream, connection_state& state) {
    request_parser parser(m_options.limits);
    std::vector<std::byte> buffer(m_options.read_buffer_bytes == 0 ? 4096 : m_options.read_buffer_bytes);
    std::vector<std::byte> watch_buffer(buffer.size());
    stream_sink sink(stream, m_options.idle_timeout);
    const std::size_t cap = m_options.limits.max_header_bytes + m_options.limits.max_body_bytes;
    try {
        for (;;) {
            // One complete request, within idle_timeout.
            const io::deadline deadline = io::deadline::after(m_options.idle_timeout);
            parse_status status = parser.next();
            bool timed_out = false;
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
            auto outcome = co_await when_any(m_routes.serve(req, sink),
                                             watch_for_disconnect(m_ctx, stream, parser, watch_buffer, cap));
            state.busy = false;
            if (outcome.index() == 1) co_return;  // client closed while the handler ran
            if (!keep_alive || m_shutting_down) co_return;
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
            io::tcp_stream s;
            try {
                s = co_await with_stop_token(listener.accept(), m_accept_stop.get_token());
            } catch (const std::system_error&) {
                if (m_accept_stop.stop_requested()) break;
                continue;  // e.g. ECONNABORTED, EMFILE: keep accepting
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
