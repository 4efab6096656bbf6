#include "backend.hpp"

#include <weft/detail/trampoline.hpp>

#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <utility>

namespace weft::io {

namespace detail {

namespace {

bool timed_out(const operation& op) noexcept {
    const int r = op.result;
    return op.timed_out && (r == -ECANCELED || r == -EINTR || r == -ETIMEDOUT);
}

bool cancelled(const operation& op) noexcept {
    const int r = op.result;
    return !timed_out(op) && op.cancel_requested && (r == -ECANCELED || r == -EINTR);
}

} // namespace

int finish(const operation& op, std::error_code& ec) noexcept {
    if (op.result >= 0) {
        ec.clear();
        return op.result;
    }
    if (timed_out(op)) {
        ec.assign(ETIMEDOUT, std::system_category());
    } else if (cancelled(op)) {
        ec = std::make_error_code(std::errc::operation_canceled);
    } else {
        ec.assign(-op.result, std::system_category());
    }
    return -1;
}

int finish(const operation& op, const char* what) {
    std::error_code ec;
    const int r = finish(op, ec);
    if (!ec) {
        return r;
    }
    if (cancelled(op)) {
        throw operation_cancelled();
    }
    throw std::system_error(ec, what);
}

bool nonblocking_fds(io_context& ctx) noexcept { return ctx.backend() == io_backend::epoll; }

} // namespace detail

namespace {
/// A long turn hands its operations to the kernel after every this many
/// resumptions, without waiting: the first coroutines' sends then leave (and
/// their peers can answer) while the rest of the turn runs, instead of all at
/// its end. Costs one system call per this many resumptions in long turns.
constexpr std::size_t flush_every = 16;

/// The context whose loop runs on this thread, if any.
constinit thread_local io_context::impl* t_running = nullptr;

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

void io_context::post(std::coroutine_handle<> h) { post_bulk(std::span(&h, 1)); }

void io_context::post_bulk(std::span<const std::coroutine_handle<>> hs) {
    if (hs.empty()) return;
    std::lock_guard lock(m_impl->m_mutex);
    m_impl->m_posted.insert(m_impl->m_posted.end(), hs.begin(), hs.end());
    m_impl->wake_if_sleeping();
}

void io_context::impl::wake_if_sleeping() noexcept {
    // seq_cst: see m_sleeping. Under the mutex (the callers hold it): once
    // it is released the loop may finish and the context be destroyed.
    m_foreign.store(true, std::memory_order_seq_cst);
    if (m_sleeping.exchange(false, std::memory_order_seq_cst)) {
        m_backend->wake();
    }
}

void io_context::request_cancel(detail::operation& op) noexcept {
    if (t_running == m_impl.get()) {
        // On the loop thread (a stop requested by a coroutine of this loop):
        // the next turn handles it without a wake-up.
        try {
            m_impl->m_local_cancels.push_back(&op);
            op.cancel_queued.store(true, std::memory_order_relaxed);
            return;
        } catch (const std::bad_alloc&) {
            // fall back to the shared queue
        }
    }
    std::lock_guard lock(m_impl->m_mutex);
    m_impl->m_cancels.push_back(&op);
    op.cancel_queued.store(true, std::memory_order_release);
    m_impl->wake_if_sleeping();
}

void io_context::withdraw_cancel(detail::operation& op) noexcept {
    if (std::erase(m_impl->m_local_cancels, &op) != 0) {
        op.cancel_queued.store(false, std::memory_order_relaxed);
        return;
    }
    std::lock_guard lock(m_impl->m_mutex);
    std::erase(m_impl->m_cancels, &op);
    op.cancel_queued.store(false, std::memory_order_relaxed);
}

void io_context::cancel_timer(detail::operation& op) noexcept {
    if (op.pending) {
        op.pending = false;
        m_impl->m_timers.remove(op);
    }
}

bool io_context::start(detail::operation& op) {
    impl& s = *m_impl;
    assert((!s.m_attached || s.m_loop_thread == std::this_thread::get_id()) &&
           "weft: an io operation was awaited off its io_context's loop thread");
    op.cancel_requested = false;
    op.timed_out = false;
    using detail::op_kind;
    if (op.kind != op_kind::timeout && op.kind != op_kind::wait && op.kind != op_kind::callback) {
        if (!s.m_backend->start(op)) {
            return false;
        }
    }
    op.pending = true;
    if (op.deadline != clock::time_point::max()) {
        s.m_timers.push(op);
    }
    return true;
}

void io_context::impl::abort(detail::operation& op) {
    using detail::op_kind;
    switch (op.kind) {
    case op_kind::timeout:
    case op_kind::callback:
        complete(op, -ECANCELED);
        break;
    case op_kind::wait:
        op.detach(op);
        complete(op, -ECANCELED);
        break;
    default:
        m_backend->cancel(op);
        break;
    }
}

void io_context::impl::expire_timers() {
    if (m_timers.empty()) {
        return;
    }
    const auto now = clock::now();
    while (!m_timers.empty() && m_timers.top().deadline <= now) {
        detail::operation& op = m_timers.top();
        m_timers.remove(op);
        if (op.kind == detail::op_kind::timeout || op.kind == detail::op_kind::callback) {
            complete(op, 0);
        } else {
            op.timed_out = true;
            abort(op);
        }
    }
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
    struct running_scope {
        impl* outer;
        explicit running_scope(impl* s) noexcept : outer(std::exchange(t_running, s)) {}
        ~running_scope() { t_running = outer; }
    } running(&s);
    std::vector<std::coroutine_handle<>> posted;
    std::vector<detail::operation*> cancels;
    std::vector<std::coroutine_handle<>> ready;
    for (;;) {
        cancels.swap(s.m_local_cancels);
        if (s.m_foreign.load(std::memory_order_acquire)) {
            std::lock_guard lock(s.m_mutex);
            posted.swap(s.m_posted);
            cancels.insert(cancels.end(), s.m_cancels.begin(), s.m_cancels.end());
            s.m_cancels.clear();
            s.m_foreign.store(false, std::memory_order_relaxed);
        }
        // Every queued operation is alive: its awaiter withdraws the request
        // (under the mutex) before the operation ends, and no coroutine is
        // resumed while this list is handled.
        for (detail::operation* op : cancels) {
            op->cancel_queued.store(false, std::memory_order_relaxed);
            if (op->pending && !op->cancel_requested) {
                op->cancel_requested = true;
                s.abort(*op);
            }
        }
        cancels.clear();
        s.m_ready.insert(s.m_ready.end(), posted.begin(), posted.end());
        posted.clear();
        s.expire_timers();
        std::size_t resumed = 0;
        while (!s.m_ready.empty()) {
            ready.swap(s.m_ready);
            for (std::coroutine_handle<> h : ready) {
                weft::detail::resume(h);
                if (++resumed % flush_every == 0) {
                    s.m_backend->flush();
                }
            }
            ready.clear();
        }
        if (done ? done.done() : s.m_stop.exchange(false, std::memory_order_relaxed)) {
            return;
        }
        bool block = s.m_local_cancels.empty();
        if (block) {
            // Raised before m_foreign is read (see m_sleeping): a post from
            // now on either is seen here or wakes the poll.
            s.m_sleeping.store(true, std::memory_order_seq_cst);
            block = !s.m_foreign.load(std::memory_order_seq_cst);
        }
        s.m_backend->poll(block, s.m_timers.empty() ? clock::time_point::max() : s.m_timers.top().deadline);
        s.m_sleeping.store(false, std::memory_order_relaxed);
    }
}

// --- timer_heap ----------------------------------------------------------------------

namespace detail {

void timer_heap::push(operation& op) {
    m_heap.push_back(&op);
    op.timer_index = m_heap.size() - 1;
    sift_up(op.timer_index);
}

void timer_heap::remove(operation& op) noexcept {
    const std::size_t i = op.timer_index;
    op.timer_index = ~std::size_t{0};
    operation* last = m_heap.back();
    m_heap.pop_back();
    if (i == m_heap.size()) {
        return;
    }
    place(i, last);
    if (i > 0 && last->deadline < m_heap[(i - 1) / 2]->deadline) {
        sift_up(i);
    } else {
        sift_down(i);
    }
}

void timer_heap::sift_up(std::size_t i) noexcept {
    operation* op = m_heap[i];
    while (i > 0) {
        const std::size_t parent = (i - 1) / 2;
        if (!(op->deadline < m_heap[parent]->deadline)) {
            break;
        }
        place(i, m_heap[parent]);
        i = parent;
    }
    place(i, op);
}

void timer_heap::sift_down(std::size_t i) noexcept {
    operation* op = m_heap[i];
    const std::size_t n = m_heap.size();
    for (;;) {
        std::size_t child = 2 * i + 1;
        if (child >= n) {
            break;
        }
        if (child + 1 < n && m_heap[child + 1]->deadline < m_heap[child]->deadline) {
            ++child;
        }
        if (!(m_heap[child]->deadline < op->deadline)) {
            break;
        }
        place(i, m_heap[child]);
        i = child;
    }
    place(i, op);
}

} // namespace detail

} // namespace weft::io
