/// \file
/// `async_latch`: a single-use countdown that coroutines can wait for.
///
/// `async_latch latch{n};` — each of n participants calls `count_down()`;
/// `co_await latch.wait()` suspends until the count reaches zero, then every
/// waiter is resumed, in FIFO order, through the trampoline on the thread
/// whose `count_down()` reached zero. Once zero, the latch stays open:
/// `wait()` and `try_wait()` complete at once. Like `std::latch`, every
/// `count_down()` happens before the return of every `wait()` it releases.
/// `count_down()` that does not reach zero and `try_wait()` are single
/// atomic operations; the wait list is guarded by a small spin lock.
///
/// Errors: the constructor throws `std::invalid_argument` for count < 0;
/// `count_down(n)` throws `std::invalid_argument` (and counts nothing down)
/// for n < 0 or n greater than the current count.
///
/// Cancellation: a waiting `wait()` watches the awaiting coroutine's stop
/// token (or the one passed to `wait(token)`, which replaces it); on stop it
/// leaves the queue and throws `operation_cancelled`. A `wait()` on an open
/// latch completes even when stop was already requested; on a closed one
/// with stop already requested it throws at once without suspending. A
/// waiter released by `count_down()` before its stop callback ran completes
/// normally.
///
/// Lifetime: the latch must outlive every waiter; destroying it while
/// coroutines wait on it is undefined (asserted in debug builds). A waiter
/// may destroy the latch once released: the last `count_down()` does not
/// touch it after waking the first waiter.
/// Threading: every member is thread-safe.
#pragma once

#include <weft/detail/spin_mutex.hpp>
#include <weft/detail/waiter.hpp>

#include <atomic>
#include <cassert>
#include <coroutine>
#include <cstddef>
#include <mutex>
#include <stdexcept>
#include <stop_token>
#include <utility>

namespace weft {

class async_latch {
public:
    class [[nodiscard]] wait_awaiter : public detail::wait_operation<async_latch> {
    public:
        explicit wait_awaiter(async_latch& l) noexcept : wait_operation(l) {}
        wait_awaiter(async_latch& l, std::stop_token t) noexcept : wait_operation(l, std::move(t)) {}

        bool await_ready() const noexcept { return m_primitive->try_wait(); }

        template <class Promise>
        bool await_suspend(std::coroutine_handle<Promise> h) noexcept {
            return this->suspend_unless(h, [this](bool) {
                // Under m_lock: a count_down() that reached zero before we
                // took the lock is visible here; one that reaches zero later
                // will find us in the list.
                return m_primitive->try_wait();
            });
        }

        void await_resume() { this->disarm_or_throw(); }
    };

    explicit async_latch(std::ptrdiff_t count) : m_count(count) {
        if (count < 0) {
            throw std::invalid_argument("weft: async_latch needs count >= 0");
        }
    }
    async_latch(const async_latch&) = delete;
    async_latch& operator=(const async_latch&) = delete;
    ~async_latch() {
        assert(m_waiters.empty() && "weft: async_latch destroyed while coroutines wait on it");
    }

    /// Decrements the count by `n`; at zero, wakes every waiter.
    void count_down(std::ptrdiff_t n = 1) {
        if (n < 0) {
            throw std::invalid_argument("weft: async_latch::count_down(n) with n < 0");
        }
        // relaxed: the CAS below carries the ordering.
        std::ptrdiff_t c = m_count.load(std::memory_order_relaxed);
        do {
            if (n > c) {
                throw std::invalid_argument("weft: async_latch::count_down(n) below zero");
            }
            // acq_rel: release, so a wait() that sees zero (acquire) sees
            // what every counter did before counting down (each RMW continues
            // the release sequences of the ones before it); acquire, so the
            // thread that reaches zero itself sees all of that before it
            // hands the waiters their wake-up.
        } while (!m_count.compare_exchange_weak(c, c - n, std::memory_order_acq_rel,
                                                std::memory_order_relaxed));
        if (c != n || n == 0) {
            return; // not the count_down() that reached zero
        }
        detail::waiter_list::batch woken;
        {
            std::lock_guard<detail::spin_mutex> guard(m_lock);
            woken = m_waiters.take_all(detail::wait_outcome::completed);
        }
        woken.wake_all(); // last use of the waiters and of *this
    }

    /// True once the count is zero.
    [[nodiscard]] bool try_wait() const noexcept {
        // acquire: pairs with count_down()'s release (see there).
        return m_count.load(std::memory_order_acquire) == 0;
    }

    /// Suspends until the count is zero. Watches the awaiting coroutine's
    /// stop token.
    wait_awaiter wait() noexcept { return wait_awaiter(*this); }
    /// As `wait()`, watching `token` instead of the coroutine's.
    wait_awaiter wait(std::stop_token token) noexcept {
        return wait_awaiter(*this, std::move(token));
    }

private:
    template <class>
    friend struct detail::cancel_on_stop;
    friend class detail::wait_operation<async_latch>;

    void cancel_waiter(detail::waiter& w) noexcept {
        detail::cancel_waiter(m_lock, w, [](detail::waiter_list&) {});
    }

    std::atomic<std::ptrdiff_t> m_count;
    detail::spin_mutex m_lock;
    detail::waiter_list m_waiters;
};

} // namespace weft
