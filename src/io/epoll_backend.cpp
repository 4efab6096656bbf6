// The epoll backend: readiness-based. An operation first tries its system
// call; on EAGAIN it waits in the fd's reader or writer queue for EPOLLIN /
// EPOLLOUT (level-triggered, registered only while someone waits). The loop's
// timer heap bounds each epoll_wait. File reads and writes run synchronously
// (pread/pwrite).
#include "backend.hpp"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <functional>
#include <unordered_map>
#include <system_error>
#include <utility>

namespace weft::io::detail {

namespace {

[[noreturn]] void throw_errno(const char* what) {
    throw std::system_error(errno, std::system_category(), what);
}

/// Tries `op`'s system call once: the result (>= 0 or -errno), with -EAGAIN
/// meaning "wait for readiness".
int attempt(operation& op) {
    for (;;) {
        ssize_t r = -1;
        switch (op.kind) {
        case op_kind::recv:
            r = ::recv(op.fd, op.buffer, op.length, 0);
            break;
        case op_kind::send:
            r = ::send(op.fd, op.buffer, op.length, MSG_NOSIGNAL);
            break;
        case op_kind::read:
            r = op.offset == ~std::uint64_t{0}
                    ? ::read(op.fd, op.buffer, op.length)
                    : ::pread(op.fd, op.buffer, op.length, static_cast<off_t>(op.offset));
            break;
        case op_kind::write:
            r = op.offset == ~std::uint64_t{0}
                    ? ::write(op.fd, op.buffer, op.length)
                    : ::pwrite(op.fd, op.buffer, op.length, static_cast<off_t>(op.offset));
            break;
        case op_kind::accept:
            r = ::accept4(op.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            break;
        case op_kind::connect:
            if (!op.connecting) {
                r = ::connect(op.fd, reinterpret_cast<const sockaddr*>(op.address), op.address_length);
                if (r < 0 && errno == EINPROGRESS) {
                    op.connecting = true;
                    return -EAGAIN;
                }
            } else {
                int err = 0;
                socklen_t len = sizeof err;
                if (::getsockopt(op.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
                    return -errno;
                }
                return -err;
            }
            break;
        case op_kind::timeout:
        case op_kind::wait:
        case op_kind::callback:
            return -EAGAIN; // never reach the backend
        case op_kind::poll_in: {
            pollfd p{op.fd, POLLIN, 0};
            r = ::poll(&p, 1, 0);
            if (r == 0) {
                return -EAGAIN;
            }
            if (r > 0) {
                r = p.revents;
            }
            break;
        }
        }
        if (r >= 0) {
            return static_cast<int>(r);
        }
        if (errno == EINTR) {
            continue;
        }
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

bool wants_write(op_kind k) noexcept { return k == op_kind::send || k == op_kind::write || k == op_kind::connect; }

class epoll_backend final : public backend {
public:
    explicit epoll_backend(io_context::impl& core) : m_core(core) {
        m_epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
        if (m_epoll_fd < 0) {
            throw_errno("epoll_create1");
        }
        m_event_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (m_event_fd < 0) {
            ::close(m_epoll_fd);
            throw_errno("eventfd");
        }
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = m_event_fd;
        if (::epoll_ctl(m_epoll_fd, EPOLL_CTL_ADD, m_event_fd, &ev) < 0) {
            ::close(m_event_fd);
            ::close(m_epoll_fd);
            throw_errno("epoll_ctl");
        }
    }
    ~epoll_backend() override {
        ::close(m_event_fd);
        ::close(m_epoll_fd);
    }

    void attach() override {}

    bool start(operation& op) override {
        const int r = attempt(op);
        if (r != -EAGAIN) {
            op.result = r;
            return false;
        }
        fd_state& st = m_fds[op.fd];
        (wants_write(op.kind) ? st.writers : st.readers).push_back(&op);
        update(op.fd, st);
        return true;
    }

    void cancel(operation& op) override { finish(op, -ECANCELED); }

    void poll(bool block, clock::time_point wake_at) override {
        int timeout_ms = block ? -1 : 0;
        if (block && wake_at != clock::time_point::max()) {
            const auto ms = std::chrono::ceil<std::chrono::milliseconds>(wake_at - clock::now()).count();
            timeout_ms = static_cast<int>(std::clamp<long long>(ms, 0, 60'000));
        }
        epoll_event events[64];
        const int n = ::epoll_wait(m_epoll_fd, events, 64, timeout_ms);
        if (n < 0 && errno != EINTR) {
            throw_errno("epoll_wait");
        }
        for (int i = 0; i < n; ++i) {
            const int fd = events[i].data.fd;
            if (fd == m_event_fd) {
                std::uint64_t value = 0;
                [[maybe_unused]] ssize_t r = ::read(m_event_fd, &value, sizeof value);
                continue;
            }
            auto it = m_fds.find(fd);
            if (it == m_fds.end()) {
                continue;
            }
            const std::uint32_t e = events[i].events;
            const bool error = (e & (EPOLLERR | EPOLLHUP)) != 0;
            if ((e & EPOLLIN) != 0 || error) {
                retry(it->second.readers);
            }
            if ((e & EPOLLOUT) != 0 || error) {
                retry(it->second.writers);
            }
            update(fd, it->second);
        }
    }

    void wake() noexcept override {
        const std::uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(m_event_fd, &one, sizeof one);
    }


private:
    struct fd_state {
        std::deque<operation*> readers;
        std::deque<operation*> writers;
        std::uint32_t registered = 0; // events currently in the epoll set
    };

    /// Runs the waiting operations of one direction until one would block.
    void retry(std::deque<operation*>& waiting) {
        while (!waiting.empty()) {
            operation& op = *waiting.front();
            const int r = attempt(op);
            if (r == -EAGAIN) {
                return;
            }
            waiting.pop_front();
            m_core.complete(op, r);
        }
    }

    /// Makes the epoll registration of `fd` match its waiters.
    void update(int fd, fd_state& st) {
        const std::uint32_t wanted = (st.readers.empty() ? 0u : std::uint32_t{EPOLLIN}) |
                                     (st.writers.empty() ? 0u : std::uint32_t{EPOLLOUT});
        if (wanted != st.registered) {
            epoll_event ev{};
            ev.events = wanted;
            ev.data.fd = fd;
            const int op = wanted == 0 ? EPOLL_CTL_DEL : st.registered == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
            if (::epoll_ctl(m_epoll_fd, op, fd, &ev) < 0 && op != EPOLL_CTL_DEL) {
                throw_errno("epoll_ctl");
            }
            st.registered = wanted;
        }
        if (wanted == 0) {
            m_fds.erase(fd);
        }
    }

    /// Removes `op` from its fd queue and completes it with `result`.
    void finish(operation& op, int result) {
        auto it = m_fds.find(op.fd);
        if (it != m_fds.end()) {
            auto& q = wants_write(op.kind) ? it->second.writers : it->second.readers;
            q.erase(std::remove(q.begin(), q.end(), &op), q.end());
            update(op.fd, it->second);
        }
        m_core.complete(op, result);
    }

    io_context::impl& m_core;
    int m_epoll_fd = -1;
    int m_event_fd = -1;
    std::unordered_map<int, fd_state> m_fds;
};

} // namespace

std::unique_ptr<backend> make_epoll_backend(io_context::impl& core) {
    return std::make_unique<epoll_backend>(core);
}

} // namespace weft::io::detail
