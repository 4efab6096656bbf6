#include "backend.hpp"

#include <weft/detail/trampoline.hpp>

#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace weft::io {

namespace detail {

int finish(const operation& op, const char* what) {
    const int r = op.result;
    if (r >= 0) {
        return r;
    }
    if (op.cancel_requested && (r == -ECANCELED || r == -EINTR)) {
        throw operation_cancelled();
    }
    throw std::system_error(-r, std::system_category(), what);
}

bool nonblocking_fds(io_context& ctx) noexcept { return ctx.backend() == io_backend::epoll; }

} // namespace detail

namespace {
void log_fallback_once(const std::string& why) {
    static std::once_flag once;
    std::call_once(once, [&] {
        std::fprintf(stderr, "weft: io_uring unavailable (%s), using epoll\n", why.c_str());
    });
}
} // namespace

io_context::io_context(io_backend backend) : m_impl(std::make_unique<impl>()) {
    if (backend == io_backend::automatic) {
        const char* env = std::getenv("WEFT_IO_BACKEND");
        if (env != nullptr && std::strcmp(env, "epoll") == 0) {
            log_fallback_once("WEFT_IO_BACKEND=epoll");
            backend = io_backend::epoll;
        }
    }
    if (backend != io_backend::epoll) {
        std::string why;
        m_impl->m_backend = detail::make_uring_backend(*m_impl, why);
        if (m_impl->m_backend) {
            m_impl->m_kind = io_backend::uring;
        } else if (backend == io_backend::uring) {
            throw std::system_error(std::make_error_code(std::errc::function_not_supported),
                                    "io_uring unavailable: " + why);
        } else {
            log_fallback_once(why);
        }
    }
    if (!m_impl->m_backend) {
        m_impl->m_backend = detail::make_epoll_backend(*m_impl);
        m_impl->m_kind = io_backend::epoll;
    }
}

io_context::~io_context() = default;

io_backend io_context::backend() const noexcept { return m_impl->m_kind; }

void io_context::run() { run_until({}); }

void io_context::stop() noexcept {
    m_impl->m_stop.store(true, std::memory_order_relaxed);
    std::lock_guard lock(m_impl->m_mutex);
    m_impl->m_backend->wake();
}

void io_context::post(std::coroutine_handle<> h) {
    std::lock_guard lock(m_impl->m_mutex);
    const bool was_empty = m_impl->m_posted.empty() && m_impl->m_cancels.empty();
    m_impl->m_posted.push_back(h);
    // Under the lock: once it is released the loop may finish and the
    // context be destroyed.
    if (was_empty) {
        m_impl->m_backend->wake();
    }
}

void io_context::request_cancel(std::uint64_t id) noexcept {
    std::lock_guard lock(m_impl->m_mutex);
    const bool was_empty = m_impl->m_posted.empty() && m_impl->m_cancels.empty();
    m_impl->m_cancels.push_back(id);
    if (was_empty) {
        m_impl->m_backend->wake();
    }
}

bool io_context::start(detail::operation& op) {
    impl& s = *m_impl;
    assert((!s.m_attached || s.m_loop_thread == std::this_thread::get_id()) &&
           "weft: an io operation was awaited off its io_context's loop thread");
    op.id = s.m_next_id++;
    op.cancel_requested = false;
    s.m_in_flight.emplace(op.id, &op);
    bool pending = false;
    try {
        pending = s.m_backend->start(op);
    } catch (...) {
        s.m_in_flight.erase(op.id);
        throw;
    }
    if (!pending) {
        s.m_in_flight.erase(op.id);
    }
    return pending;
}

void io_context::run_until(std::coroutine_handle<> done) {
    impl& s = *m_impl;
    if (!s.m_attached) {
        s.m_backend->attach();
        s.m_attached = true;
        s.m_loop_thread = std::this_thread::get_id();
    } else if (s.m_loop_thread != std::this_thread::get_id()) {
        throw std::logic_error("weft: io_context::run called from a second thread");
    }
    std::vector<std::coroutine_handle<>> posted;
    std::vector<std::uint64_t> cancels;
    std::vector<std::coroutine_handle<>> ready;
    for (;;) {
        {
            std::lock_guard lock(s.m_mutex);
            posted.swap(s.m_posted);
            cancels.swap(s.m_cancels);
        }
        for (std::uint64_t id : cancels) {
            auto it = s.m_in_flight.find(id);
            if (it != s.m_in_flight.end()) {
                detail::operation& op = *it->second;
                op.cancel_requested = true;
                s.m_backend->cancel(op);
            }
        }
        cancels.clear();
        s.m_ready.insert(s.m_ready.end(), posted.begin(), posted.end());
        posted.clear();
        while (!s.m_ready.empty()) {
            ready.swap(s.m_ready);
            for (std::coroutine_handle<> h : ready) {
                weft::detail::resume(h);
            }
            ready.clear();
        }
        if (done ? done.done() : s.m_stop.exchange(false, std::memory_order_relaxed)) {
            return;
        }
        s.m_backend->poll(true);
    }
}

} // namespace weft::io
