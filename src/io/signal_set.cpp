#include "backend.hpp"

#include <weft/io/signal_set.hpp>

#include <pthread.h>
#include <sys/signalfd.h>
#include <unistd.h>

namespace weft::io {

signal_set::signal_set(io_context& ctx, std::initializer_list<int> signals) : m_ctx(&ctx) {
    sigemptyset(&m_set);
    for (int s : signals) {
        sigaddset(&m_set, s);
    }
    if (const int r = ::pthread_sigmask(SIG_BLOCK, &m_set, &m_previous); r != 0) {
        throw std::system_error(r, std::system_category(), "pthread_sigmask");
    }
    // Non-blocking in both backends: wait() polls for readability, then reads
    // on the loop thread itself (an io_uring read could run on an io-wq
    // worker, which would not see signals directed at the loop thread).
    m_fd = ::signalfd(-1, &m_set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (m_fd < 0) {
        const int e = errno;
        ::pthread_sigmask(SIG_SETMASK, &m_previous, nullptr);
        throw std::system_error(e, std::system_category(), "signalfd");
    }
}

signal_set::~signal_set() {
    ::close(m_fd);
    ::pthread_sigmask(SIG_SETMASK, &m_previous, nullptr);
}

task<int> signal_set::wait() {
    for (;;) {
        signalfd_siginfo info{};
        const ssize_t n = ::read(m_fd, &info, sizeof info);
        if (n == static_cast<ssize_t>(sizeof info)) {
            co_return static_cast<int>(info.ssi_signo);
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            throw std::system_error(errno, std::system_category(), "read(signalfd)");
        }
        detail::op_awaiter aw(*m_ctx, "poll(signalfd)");
        aw.op().kind = detail::op_kind::poll_in;
        aw.op().fd = m_fd;
        co_await aw;
    }
}

} // namespace weft::io
