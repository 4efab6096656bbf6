#include "backend.hpp"
#include "multishot.hpp"

#include <weft/io/endpoint.hpp>
#include <weft/io/tcp.hpp>

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <stdexcept>

namespace weft::io {

namespace {

[[noreturn]] void throw_errno(const char* what) {
    throw std::system_error(errno, std::system_category(), what);
}

int open_socket(io_context& ctx, int family) {
    const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC | (detail::nonblocking_fds(ctx) ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) {
        throw_errno("socket");
    }
    return fd;
}

void set_nodelay(int fd) noexcept {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void set_deadline(detail::operation& op, deadline d) noexcept { op.deadline = d.at(); }

} // namespace

// --- endpoint ------------------------------------------------------------------

endpoint::endpoint() noexcept {
    std::memset(&m_address, 0, sizeof m_address);
    m_address.v4.sin_family = AF_INET;
}

endpoint endpoint::loopback(std::uint16_t port, bool v6) noexcept {
    endpoint e;
    if (v6) {
        e.m_address.v6.sin6_family = AF_INET6;
        e.m_address.v6.sin6_addr = in6addr_loopback;
        e.m_address.v6.sin6_port = htons(port);
    } else {
        e.m_address.v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        e.m_address.v4.sin_port = htons(port);
    }
    return e;
}

endpoint endpoint::any(std::uint16_t port, bool v6) noexcept {
    endpoint e;
    if (v6) {
        e.m_address.v6.sin6_family = AF_INET6;
        e.m_address.v6.sin6_addr = in6addr_any;
        e.m_address.v6.sin6_port = htons(port);
    } else {
        e.m_address.v4.sin_addr.s_addr = htonl(INADDR_ANY);
        e.m_address.v4.sin_port = htons(port);
    }
    return e;
}

endpoint endpoint::parse(std::string_view text) {
    const auto bad = [&] { return std::invalid_argument("weft: bad endpoint \"" + std::string(text) + "\""); };
    std::string host;
    std::string_view port_text;
    bool v6 = false;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            throw bad();
        }
        host = std::string(text.substr(1, close - 1));
        port_text = text.substr(close + 2);
        v6 = true;
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos) {
            throw bad();
        }
        host = std::string(text.substr(0, colon));
        port_text = text.substr(colon + 1);
    }
    unsigned port = 0;
    const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535 || port_text.empty()) {
        throw bad();
    }
    endpoint e;
    if (v6) {
        e.m_address.v6.sin6_family = AF_INET6;
        e.m_address.v6.sin6_port = htons(static_cast<std::uint16_t>(port));
        if (::inet_pton(AF_INET6, host.c_str(), &e.m_address.v6.sin6_addr) != 1) {
            throw bad();
        }
    } else {
        e.m_address.v4.sin_port = htons(static_cast<std::uint16_t>(port));
        if (::inet_pton(AF_INET, host.c_str(), &e.m_address.v4.sin_addr) != 1) {
            throw bad();
        }
    }
    return e;
}

endpoint endpoint::from_sockaddr(const sockaddr* address, socklen_t length) {
    endpoint e;
    if (address->sa_family == AF_INET && length >= sizeof(sockaddr_in)) {
        std::memcpy(&e.m_address.v4, address, sizeof(sockaddr_in));
    } else if (address->sa_family == AF_INET6 && length >= sizeof(sockaddr_in6)) {
        std::memcpy(&e.m_address.v6, address, sizeof(sockaddr_in6));
    } else {
        throw std::invalid_argument("weft: not an IPv4 or IPv6 socket address");
    }
    return e;
}

std::uint16_t endpoint::port() const noexcept {
    return ntohs(is_v6() ? m_address.v6.sin6_port : m_address.v4.sin_port);
}

std::string endpoint::to_string() const {
    char buf[INET6_ADDRSTRLEN] = {};
    if (is_v6()) {
        ::inet_ntop(AF_INET6, &m_address.v6.sin6_addr, buf, sizeof buf);
        return "[" + std::string(buf) + "]:" + std::to_string(port());
    }
    ::inet_ntop(AF_INET, &m_address.v4.sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(port());
}

bool operator==(const endpoint& a, const endpoint& b) noexcept {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

namespace {
endpoint socket_name(int fd, bool peer) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    const int r = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len)
                       : ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    if (r < 0) {
        throw_errno(peer ? "getpeername" : "getsockname");
    }
    return endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
}
/// `op` as one plain recv on `fd` into `buffer`.
void prepare_recv(detail::operation& op, int fd, std::span<std::byte> buffer, deadline d) {
    op.kind = detail::op_kind::recv;
    op.fd = fd;
    op.buffer = buffer.data();
    op.length = buffer.size();
    set_deadline(op, d);
}

void prepare_send(detail::operation& op, int fd, std::span<const std::byte> data, deadline d) {
    op.kind = detail::op_kind::send;
    op.fd = fd;
    op.buffer = const_cast<std::byte*>(data.data()); // the kernel only reads it
    op.length = data.size();
    set_deadline(op, d);
}
} // namespace

// --- tcp_stream -------------------------------------------------------------------

tcp_stream::tcp_stream(tcp_stream&& o) noexcept
    : m_ctx(o.m_ctx), m_fd(std::exchange(o.m_fd, -1)), m_rx(std::exchange(o.m_rx, nullptr)),
      m_view_buffer(std::move(o.m_view_buffer)) {}

tcp_stream& tcp_stream::operator=(tcp_stream&& o) noexcept {
    if (this != &o) {
        close();
        m_ctx = o.m_ctx;
        m_fd = std::exchange(o.m_fd, -1);
        m_rx = std::exchange(o.m_rx, nullptr);
        m_view_buffer = std::move(o.m_view_buffer);
    }
    return *this;
}

tcp_stream::~tcp_stream() { close(); }

void tcp_stream::close() noexcept {
    // The receiver first: an armed multishot recv keeps the socket open in
    // the kernel until its cancellation completes.
    detail::multishot_state::close(std::exchange(m_rx, nullptr));
    if (m_fd >= 0) {
        ::close(m_fd);
        m_fd = -1;
    }
}

bool tcp_stream::use_buffer_ring() {
    if (m_rx != nullptr) {
        return true;
    }
    if (m_ctx == nullptr || m_fd < 0 || !m_ctx->internals().m_backend->buffer_ring_available()) {
        return false;
    }
    m_rx = new detail::stream_receiver(m_ctx->internals(), m_fd);
    return true;
}

void tcp_stream::shutdown() {
    if (::shutdown(m_fd, SHUT_WR) < 0) {
        throw_errno("shutdown");
    }
}

endpoint tcp_stream::local_endpoint() const { return socket_name(m_fd, false); }
endpoint tcp_stream::remote_endpoint() const { return socket_name(m_fd, true); }

task<tcp_stream> tcp_stream::connect(io_context& ctx, endpoint to, deadline d) {
    tcp_stream s(ctx, open_socket(ctx, to.family()));
    detail::op_awaiter aw(ctx, "connect");
    detail::operation& op = aw.op();
    op.kind = detail::op_kind::connect;
    op.fd = s.m_fd;
    std::memcpy(op.address, to.data(), to.size());
    op.address_length = to.size();
    set_deadline(op, d);
    co_await aw;
    set_nodelay(s.m_fd);
    co_return s;
}

task<std::size_t> tcp_stream::receive(std::span<std::byte> buffer, deadline d, std::error_code* ec) {
    if (ec != nullptr) {
        ec->clear();
    }
    if (m_rx != nullptr && !m_rx->unsupported()) {
        for (;;) {
            if (const std::size_t n = m_rx->take(buffer); n != 0 || buffer.empty()) {
                co_return n;
            }
            const auto next = m_rx->next_when_empty();
            if (next == detail::stream_receiver::when_empty::end_of_stream) {
                co_return 0;
            }
            if (next == detail::stream_receiver::when_empty::failed) {
                if (ec == nullptr) {
                    throw std::system_error(m_rx->failure(), "recv");
                }
                *ec = m_rx->failure();
                co_return 0;
            }
            if (next == detail::stream_receiver::when_empty::plain_recv) {
                break;
            }
            detail::state_wait wait(*m_ctx, *m_rx, d.at(), "recv");
            if (ec != nullptr) {
                wait.report_errors_to(*ec);
            }
            co_await wait;
            if (ec != nullptr && *ec) {
                co_return 0;
            }
        }
    }
    detail::op_awaiter aw(*m_ctx, "recv");
    if (ec != nullptr) {
        aw.report_errors_to(*ec);
    }
    prepare_recv(aw.op(), m_fd, buffer, d);
    const int n = co_await aw;
    co_return n < 0 ? 0 : static_cast<std::size_t>(n);
}

task<std::span<const std::byte>> tcp_stream::receive_view(deadline d, std::error_code* ec) {
    if (ec != nullptr) {
        ec->clear();
    }
    if (m_rx != nullptr && !m_rx->unsupported()) {
        m_rx->release_lent();
        for (;;) {
            if (const std::span<const std::byte> v = m_rx->lend(); !v.empty()) {
                co_return v;
            }
            const auto next = m_rx->next_when_empty();
            if (next == detail::stream_receiver::when_empty::end_of_stream) {
                co_return std::span<const std::byte>{};
            }
            if (next == detail::stream_receiver::when_empty::failed) {
                if (ec == nullptr) {
                    throw std::system_error(m_rx->failure(), "recv");
                }
                *ec = m_rx->failure();
                co_return std::span<const std::byte>{};
            }
            if (next == detail::stream_receiver::when_empty::plain_recv) {
                break;
            }
            detail::state_wait wait(*m_ctx, *m_rx, d.at(), "recv");
            if (ec != nullptr) {
                wait.report_errors_to(*ec);
            }
            co_await wait;
            if (ec != nullptr && *ec) {
                co_return std::span<const std::byte>{};
            }
        }
    }
    constexpr std::size_t view_buffer_bytes = 16 * 1024;
    if (!m_view_buffer) {
        m_view_buffer = std::make_unique<std::byte[]>(view_buffer_bytes);
    }
    const std::span<std::byte> into(m_view_buffer.get(), view_buffer_bytes);
    detail::op_awaiter aw(*m_ctx, "recv");
    if (ec != nullptr) {
        aw.report_errors_to(*ec);
    }
    prepare_recv(aw.op(), m_fd, into, d);
    const int n = co_await aw;
    co_return std::span<const std::byte>(m_view_buffer.get(), n < 0 ? 0 : static_cast<std::size_t>(n));
}

task<std::size_t> tcp_stream::receive_all(std::span<std::byte> buffer, deadline d, std::error_code* ec) {
    std::size_t got = 0;
    while (got < buffer.size()) {
        const std::size_t n = co_await receive(buffer.subspan(got), d, ec);
        if (ec != nullptr && *ec) {
            break;
        }
        if (n == 0) {
            const auto reset = std::make_error_code(std::errc::connection_reset);
            if (ec == nullptr) {
                throw std::system_error(reset, "read_exact: end of stream before the buffer was full");
            }
            *ec = reset;
            break;
        }
        got += n;
    }
    co_return got;
}

// The throwing form has its own loop rather than a wrapper around the
// error-code one: it is the HTTP server's hot path, and a wrapper would cost
// a coroutine frame per write.
task<void> tcp_stream::write_all(std::span<const std::byte> data, deadline d) {
    while (!data.empty()) {
        detail::op_awaiter aw(*m_ctx, "send");
        prepare_send(aw.op(), m_fd, data, d);
        data = data.subspan(static_cast<std::size_t>(co_await aw));
    }
}

task<std::size_t> tcp_stream::write_all(std::span<const std::byte> data, std::error_code& ec, deadline d) {
    ec.clear();
    std::size_t sent = 0;
    while (sent < data.size()) {
        detail::op_awaiter aw(*m_ctx, "send");
        aw.report_errors_to(ec);
        prepare_send(aw.op(), m_fd, data.subspan(sent), d);
        const int n = co_await aw;
        if (ec) {
            break;
        }
        sent += static_cast<std::size_t>(n);
    }
    co_return sent;
}

// --- tcp_listener -------------------------------------------------------------------

tcp_listener::tcp_listener(tcp_listener&& o) noexcept
    : m_ctx(o.m_ctx), m_fd(std::exchange(o.m_fd, -1)), m_acceptor(std::exchange(o.m_acceptor, nullptr)) {}

tcp_listener& tcp_listener::operator=(tcp_listener&& o) noexcept {
    if (this != &o) {
        close();
        m_ctx = o.m_ctx;
        m_fd = std::exchange(o.m_fd, -1);
        m_acceptor = std::exchange(o.m_acceptor, nullptr);
    }
    return *this;
}

tcp_listener::~tcp_listener() { close(); }

void tcp_listener::close() noexcept {
    const bool had_acceptor = m_acceptor != nullptr;
    detail::multishot_state::close(std::exchange(m_acceptor, nullptr));
    if (m_fd >= 0) {
        ::close(m_fd);
        m_fd = -1;
    }
    if (had_acceptor) {
        // An armed multishot accept holds the socket open in the kernel (and
        // it keeps accepting) until its cancellation is submitted; the loop
        // may not turn again (close after run returned), so submit it now.
        try {
            m_ctx->internals().m_backend->flush();
        } catch (...) {
            // The ring is broken: it ends with the context.
        }
    }
}

tcp_listener tcp_listener::bind(io_context& ctx, endpoint at, int backlog, bool reuse_port) {
    tcp_listener l;
    l.m_ctx = &ctx;
    l.m_fd = open_socket(ctx, at.family());
    const int one = 1;
    ::setsockopt(l.m_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuse_port && ::setsockopt(l.m_fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
        throw_errno("setsockopt(SO_REUSEPORT)");
    }
    if (::bind(l.m_fd, at.data(), at.size()) < 0) {
        throw_errno("bind");
    }
    if (::listen(l.m_fd, backlog) < 0) {
        throw_errno("listen");
    }
    return l;
}

endpoint tcp_listener::local_endpoint() const { return socket_name(m_fd, false); }

task<tcp_stream> tcp_listener::accept(deadline d) {
    return take(d, nullptr);
}

task<tcp_stream> tcp_listener::accept(std::error_code& ec, deadline d) {
    return take(d, &ec);
}

task<tcp_stream> tcp_listener::take(deadline d, std::error_code* ec) {
    if (ec != nullptr) {
        ec->clear();
    }
    if (m_acceptor == nullptr && m_fd >= 0 && m_ctx->internals().m_backend->multishot_accept_possible()) {
        m_acceptor = new detail::multishot_acceptor(m_ctx->internals(), m_fd);
    }
    if (m_acceptor != nullptr && !m_acceptor->unsupported()) {
        for (;;) {
            if (const int fd = m_acceptor->pop(); fd >= 0) {
                set_nodelay(fd);
                co_return tcp_stream(*m_ctx, fd);
            }
            if (const int e = m_acceptor->take_error(); e != 0) {
                if (ec == nullptr) {
                    throw std::system_error(-e, std::system_category(), "accept");
                }
                ec->assign(-e, std::system_category());
                co_return tcp_stream();
            }
            if (m_acceptor->unsupported()) {
                break; // single accepts from now on
            }
            m_acceptor->ensure_armed();
            detail::state_wait wait(*m_ctx, *m_acceptor, d.at(), "accept");
            if (ec != nullptr) {
                wait.report_errors_to(*ec);
            }
            co_await wait;
            if (ec != nullptr && *ec) {
                co_return tcp_stream();
            }
        }
    }
    detail::op_awaiter aw(*m_ctx, "accept");
    if (ec != nullptr) {
        aw.report_errors_to(*ec);
    }
    detail::operation& op = aw.op();
    op.kind = detail::op_kind::accept;
    op.fd = m_fd;
    set_deadline(op, d);
    const int fd = co_await aw;
    if (fd < 0) {
        co_return tcp_stream();
    }
    set_nodelay(fd);
    co_return tcp_stream(*m_ctx, fd);
}

} // namespace weft::io
