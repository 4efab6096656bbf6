/// \file
/// `async_semaphore`: a counting semaphore whose `acquire()` suspends the
/// awaiting coroutine while no unit is available.
///
/// `async_semaphore sem{initial, max};` then `co_await sem.acquire();` …
/// `sem.release();`. Waiters are served first come, first served: `release(n)`
/// hands units directly to the oldest waiters (resumed through the
/// trampoline, on the releasing thread), and `try_acquire()` never takes a
/// unit while coroutines wait. `try_acquire()` and a `release()` that finds
/// no waiter are a single compare-and-swap; the wait list is guarded by a
/// small spin lock. Like `std::counting_semaphore`, a `release()` happens
/// before the `acquire()` that takes the released unit.
///
/// Cancellation: a waiting `acquire()` watches the awaiting coroutine's stop
/// token (or the one passed to `acquire(token)`, which replaces it); on stop
/// it leaves the queue and throws `operation_cancelled` without taking a
/// unit. A unit that is available is taken even when stop was already
/// requested; if none is and stop was already requested, `acquire()` throws
/// at once without suspending. A waiter handed a unit before its stop
/// callback ran keeps it: the outcome is decided exactly once.
///
/// Errors: the constructor throws `std::invalid_argument` unless
/// 0 <= initial <= max; `release(n)` throws `std::invalid_argument` for
/// n < 0 and `std::overflow_error` when the count would exceed `max` (and
/// then releases nothing).
///
/// Lifetime: the semaphore must outlive every waiter; destroying it while
/// coroutines wait on it is undefined (asserted in debug builds).
/// Threading: every member is thread-safe.
#pragma once

#include <weft/detail/spin_mutex.hpp>
#include <weft/detail/waiter.hpp>

#include <atomic>
#include <cassert>
#include <coroutine>
#include <cstddef>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <stop_token>
#include <utility>

namespace weft {

class async_semaphore {
    // m_count >= 0: that many units are available and nobody waits.
    // m_count == has_waiters: no unit is available and the wait list is not
    // empty; it holds exactly while the list is non-empty, and it only
    // changes to or from `has_waiters` under m_lock.
    static constexpr std::ptrdiff_t has_waiters = -1;

public:
    class [[nodiscard]] acquire_awaiter : public detail::wait_operation<async_semaphore> {
    public:
        explicit acquire_awaiter(async_semaphore& s) noexcept : wait_operation(s) {}
        acquire_awaiter(async_semaphore& s, std::stop_token t) noexcept
            : wait_operation(s, std::move(t)) {}

        bool await_ready() noexcept { return m_primitive->try_acquire(); }

        template <class Promise>
        bool await_suspend(std::coroutine_handle<Promise> h) noexcept {
            return this->suspend_unless(h, [this](bool may_wait) { return m_primitive->try_acquire_or_mark_waiting(may_wait); });
        }

        void await_resume() { this->disarm_or_throw(); }
    };

    /// Starts with `initial` units; `release` may raise the count up to `max`.
    explicit async_semaphore(std::ptrdiff_t initial,
                             std::ptrdiff_t max = std::numeric_limits<std::ptrdiff_t>::max())
        : m_count(initial), m_max(max) {
        if (initial < 0 || max < initial) {
            throw std::invalid_argument("weft: async_semaphore needs 0 <= initial <= max");
        }
    }
    async_semaphore(const async_semaphore&) = delete;
    async_semaphore& operator=(const async_semaphore&) = delete;
    ~async_semaphore() {
        assert(m_waiters.empty() && "weft: async_semaphore destroyed while coroutines wait on it");
    }

    /// Takes one unit, suspending while none is available. Watches the
    /// awaiting coroutine's stop token.
    acquire_awaiter acquire() noexcept { return acquire_awaiter(*this); }
    /// Takes one unit, watching `token` instead of the coroutine's.
    acquire_awaiter acquire(std::stop_token token) noexcept {
        return acquire_awaiter(*this, std::move(token));
    }

    /// Takes one unit if one is available and nobody waits.
    [[nodiscard]] bool try_acquire() noexcept {
        // relaxed: the CAS below carries the ordering.
        std::ptrdiff_t c = m_count.load(std::memory_order_relaxed);
        while (c > 0) {
            // acquire: pairs with the release in release() so that taking a
            // unit sees what its releaser did before releasing it.
            if (m_count.compare_exchange_weak(c, c - 1, std::memory_order_acquire,
                                              std::memory_order_relaxed)) {
                return true;
            }
        }
        return false;
    }

    /// Adds `n` units: the oldest waiters get one each (resumed through the
    /// trampoline, on this thread), the rest become available.
    void release(std::ptrdiff_t n = 1) {
        if (n < 0) {
            throw std::invalid_argument("weft: async_semaphore::release(n) with n < 0");
        }
        if (n == 0) {
            return;
        }
        if (n > m_max) {
            throw std::overflow_error("weft: async_semaphore::release() beyond max");
        }
        // relaxed: the CAS below carries the ordering.
        std::ptrdiff_t c = m_count.load(std::memory_order_relaxed);
        for (;;) {
            if (c != has_waiters) {
                if (c > m_max - n) {
                    throw std::overflow_error("weft: async_semaphore::release() beyond max");
                }
                // release: publishes what this thread did before releasing to
                // whoever takes the unit (try_acquire's acquire).
                if (m_count.compare_exchange_weak(c, c + n, std::memory_order_release,
                                                  std::memory_order_relaxed)) {
                    return;
                }
                continue;
            }
            detail::waiter_list::batch woken;
            {
                std::lock_guard<detail::spin_mutex> guard(m_lock);
                // relaxed: under m_lock `has_waiters` cannot change, and any
                // other value sends us back to the CAS above.
                c = m_count.load(std::memory_order_relaxed);
                if (c != has_waiters) {
                    continue;
                }
                std::ptrdiff_t left = n;
                while (left > 0 && !m_waiters.empty()) {
                    detail::waiter& w = m_waiters.pop_front();
                    w.m_outcome = detail::wait_outcome::completed;
                    woken.push_back(w);
                    --left;
                }
                if (m_waiters.empty()) {
                    // release: the units left over are published like any
                    // other release (m_count was 0 units, and left <= max).
                    m_count.store(left, std::memory_order_release);
                }
            }
            woken.wake_all(); // units handed over; last use of the waiters
            return;
        }
    }

    /// A snapshot of the units available now (0 while coroutines wait).
    [[nodiscard]] std::ptrdiff_t available() const noexcept {
        // relaxed: a diagnostic snapshot that orders nothing.
        const std::ptrdiff_t c = m_count.load(std::memory_order_relaxed);
        return c == has_waiters ? 0 : c;
    }

    [[nodiscard]] std::ptrdiff_t max() const noexcept { return m_max; }

private:
    template <class>
    friend struct detail::cancel_on_stop;
    friend class detail::wait_operation<async_semaphore>;

    // Under m_lock: takes a unit if one is available (true); otherwise, when
    // `mark`, makes sure the count says `has_waiters` because the caller is
    // about to queue (false).
    bool try_acquire_or_mark_waiting(bool mark) noexcept {
        // relaxed: the CASes below carry the ordering.
        std::ptrdiff_t c = m_count.load(std::memory_order_relaxed);
        for (;;) {
            if (c > 0) {
                // acquire: as in try_acquire().
                if (m_count.compare_exchange_weak(c, c - 1, std::memory_order_acquire,
                                                  std::memory_order_relaxed)) {
                    return true;
                }
            } else if (c == 0 && mark) {
                // relaxed: only makes a concurrent release()'s CAS fail and
                // take m_lock, which orders the queued node.
                if (m_count.compare_exchange_weak(c, has_waiters, std::memory_order_relaxed)) {
                    return false;
                }
            } else {
                return false;
            }
        }
    }

    void cancel_waiter(detail::waiter& w) noexcept {
        detail::cancel_waiter(m_lock, w, [this](detail::waiter_list& list) {
            if (list.empty()) {
                // relaxed: zero units, no waiters; publishes nothing.
                m_count.store(0, std::memory_order_relaxed);
            }
        });
    }

    std::atomic<std::ptrdiff_t> m_count;
    const std::ptrdiff_t m_max;
    detail::spin_mutex m_lock;
    detail::waiter_list m_waiters;
};

} // namespace weft
