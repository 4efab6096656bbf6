/// \file
/// TCP over an `io_context`: `tcp_listener` (bind, accept) and `tcp_stream`
/// (connect, read, write, shutdown).
///
/// Both are move-only RAII owners of a socket: destruction closes it. Streams
/// have TCP_NODELAY set. Every operation returns a task that must be awaited
/// on the context's loop thread, and one read and one write may be pending on
/// a stream at a time; closing or destroying a socket with an operation
/// pending is undefined (cancel it first). A listener or a stream that has a
/// multishot request armed (see `accept` and `use_buffer_ring`) cancels it on
/// close; it must still be closed before its context is destroyed. Operations take an optional
/// `deadline` (a linked timeout on io_uring): past it they throw
/// `std::system_error` with `errc::timed_out`. Stop requests cancel them with
/// `operation_cancelled`; other failures throw `std::system_error` carrying
/// the errno.
///
/// Threading: belongs to the loop thread of its context.
#pragma once

#include <weft/io/endpoint.hpp>
#include <weft/io/io_context.hpp>
#include <weft/task.hpp>

#include <cstddef>
#include <memory>
#include <span>
#include <system_error>

namespace weft::io {

namespace detail {
class stream_receiver;
class multishot_acceptor;
} // namespace detail

class tcp_stream {
public:
    tcp_stream() noexcept = default;
    /// Adopts a connected socket.
    tcp_stream(io_context& ctx, int fd) noexcept : m_ctx(&ctx), m_fd(fd) {}
    tcp_stream(tcp_stream&& o) noexcept;
    tcp_stream& operator=(tcp_stream&& o) noexcept;
    ~tcp_stream();

    /// Connects to `to`; ECONNREFUSED and friends as std::system_error.
    static task<tcp_stream> connect(io_context& ctx, endpoint to, deadline d = {});

    /// Reads what is available (at most `buffer.size()`); 0 at end of stream.
    task<std::size_t> read_some(std::span<std::byte> buffer, deadline d = {}) {
        return receive(buffer, d, nullptr);
    }
    /// The same, but a failure is reported in `ec` with 0 returned, instead
    /// of thrown: a stop request as std::errc::operation_canceled, the
    /// deadline as errc::timed_out. For a read that is expected to be
    /// cancelled (watching an idle connection), where an exception per
    /// cancellation would cost more than the read.
    task<std::size_t> read_some(std::span<std::byte> buffer, std::error_code& ec, deadline d = {}) {
        return receive(buffer, d, &ec);
    }
    /// Opts this stream in to receiving through its context's buffer ring:
    /// one multishot recv stays armed for the stream's life and the kernel
    /// fills buffers of a ring shared by the context's streams as data
    /// arrives, so a read finds the data already there (one copy out of the
    /// ring) instead of submitting a receive. Saves a submission and a
    /// readiness poll per read; costs one copy. The stream stops receiving
    /// while 64 KiB it received are unread. Returns false, changing nothing,
    /// on the epoll backend or a kernel without buffer rings (reads are then
    /// plain receives, as without the call). Loop thread only.
    bool use_buffer_ring();
    /// Reads what is available without copying it out: a view of the
    /// received bytes in place, in the context's buffer ring when the stream
    /// uses one (`use_buffer_ring`), else in a 16 KiB buffer the stream owns;
    /// empty at end of stream. The view stays valid until the stream's next
    /// read (`read_some`, `read_exact`, `read_view`) or its close: an echo
    /// sends it straight back (`write_all(co_await s.read_view())`) where
    /// `read_some` would copy it into a buffer of its own first. Moving the
    /// stream keeps the view valid.
    task<std::span<const std::byte>> read_view(deadline d = {}) { return receive_view(d, nullptr); }
    /// The same, but a failure is reported in `ec` with an empty view, as by
    /// `read_some`'s error-code form.
    task<std::span<const std::byte>> read_view(std::error_code& ec, deadline d = {}) {
        return receive_view(d, &ec);
    }
    /// Fills `buffer`; an early end of stream throws errc::connection_reset.
    /// Returns `buffer.size()`.
    task<std::size_t> read_exact(std::span<std::byte> buffer, deadline d = {}) {
        return receive_all(buffer, d, nullptr);
    }
    /// The same, but a failure is reported in `ec` instead of thrown, as by
    /// `read_some`'s error-code form (an early end of stream as
    /// errc::connection_reset); returns the bytes read, all of `buffer`'s
    /// unless `ec` is set.
    task<std::size_t> read_exact(std::span<std::byte> buffer, std::error_code& ec, deadline d = {}) {
        return receive_all(buffer, d, &ec);
    }
    /// Writes all of `data`.
    task<void> write_all(std::span<const std::byte> data, deadline d = {});
    /// The same, but a failure is reported in `ec` instead of thrown (a peer
    /// gone as errc::broken_pipe or errc::connection_reset, a stop request
    /// as errc::operation_canceled, the deadline as errc::timed_out);
    /// returns the bytes the kernel took, all of `data`'s unless `ec` is set.
    /// For a server writing to many clients, where one that leaves is routine.
    task<std::size_t> write_all(std::span<const std::byte> data, std::error_code& ec, deadline d = {});
    /// Shuts down the sending side (the peer reads end of stream).
    void shutdown();
    /// Closes the socket (idempotent).
    void close() noexcept;

    [[nodiscard]] bool is_open() const noexcept { return m_fd >= 0; }
    [[nodiscard]] int native_handle() const noexcept { return m_fd; }
    [[nodiscard]] endpoint local_endpoint() const;
    [[nodiscard]] endpoint remote_endpoint() const;

private:
    task<std::size_t> receive(std::span<std::byte> buffer, deadline d, std::error_code* ec);
    task<std::size_t> receive_all(std::span<std::byte> buffer, deadline d, std::error_code* ec);
    task<std::span<const std::byte>> receive_view(deadline d, std::error_code* ec);

    io_context* m_ctx = nullptr;
    int m_fd = -1;
    detail::stream_receiver* m_rx = nullptr;
    std::unique_ptr<std::byte[]> m_view_buffer; // read_view without a ring
};

class tcp_listener {
public:
    tcp_listener() noexcept = default;
    tcp_listener(tcp_listener&& o) noexcept;
    tcp_listener& operator=(tcp_listener&& o) noexcept;
    ~tcp_listener();

    /// A listening socket on `at` (SO_REUSEADDR always, SO_REUSEPORT on request;
    /// port 0 picks a free one: see `local_endpoint()`).
    static tcp_listener bind(io_context& ctx, endpoint at, int backlog = 4096,
                             bool reuse_port = false);

    /// The next connection. On io_uring one multishot accept stays armed
    /// while connections are awaited: each arriving connection is accepted
    /// by the kernel as it comes and handed to the next `accept` (up to 64
    /// wait queued while nobody accepts). Kernels without multishot accept,
    /// and the epoll backend, accept one connection per call.
    task<tcp_stream> accept(deadline d = {});
    /// The same, but a failure is reported in `ec` instead of thrown (a stop
    /// request as errc::operation_canceled, the deadline as errc::timed_out,
    /// EMFILE and the like as themselves), with a closed stream returned:
    /// an accept loop that meets a full file table or a shutdown goes on or
    /// ends without an exception.
    task<tcp_stream> accept(std::error_code& ec, deadline d = {});

    void close() noexcept;
    [[nodiscard]] bool is_open() const noexcept { return m_fd >= 0; }
    [[nodiscard]] endpoint local_endpoint() const;

private:
    task<tcp_stream> take(deadline d, std::error_code* ec);

    io_context* m_ctx = nullptr;
    int m_fd = -1;
    detail::multishot_acceptor* m_acceptor = nullptr;
};

} // namespace weft::io
