/// \file
/// `async_mutex`: a mutual-exclusion lock whose `lock()` suspends the awaiting
/// coroutine instead of blocking its thread, and `async_mutex_lock`, its RAII
/// guard.
///
/// `co_await m.lock()` (then `m.unlock()`), or `auto guard = co_await
/// m.scoped_lock();`. Waiters are served first come, first served: `unlock()`
/// hands ownership directly to the oldest waiter (the mutex never becomes
/// free in between, so nobody can barge in) and resumes it through the
/// trampoline, on the unlocking thread. The uncontended path is a single
/// compare-and-swap in both `lock()` and `unlock()`; the wait list behind it
/// is guarded by a small spin lock.
///
/// Cancellation: a waiting `lock()` watches the stop token of the awaiting
/// coroutine (or the one passed to `lock(token)` / `scoped_lock(token)`,
/// which replaces it). On stop it leaves the queue and throws
/// `operation_cancelled` without owning the mutex. If the mutex is free, the
/// lock is taken even when stop was already requested (nothing to wait
/// for, so nothing to cancel); if it is not free and stop was already
/// requested, `lock()` throws at once without suspending. A waiter that was
/// handed the mutex before its stop callback ran owns it: the outcome is
/// decided exactly once.
///
/// Lifetime: the mutex must outlive every waiter; destroying it while
/// coroutines wait on it is undefined (asserted in debug builds). It is not
/// movable.
/// Threading: every member is thread-safe. `unlock()` may be called from any
/// thread, not only the one that locked (ownership belongs to the logical
/// task, which may have moved). The owner resumes after `co_await lock()` on
/// whichever thread handed it the lock.
#pragma once

#include <weft/detail/spin_mutex.hpp>
#include <weft/detail/waiter.hpp>

#include <atomic>
#include <cassert>
#include <coroutine>
#include <mutex>
#include <stop_token>
#include <utility>

namespace weft {

class async_mutex;

/// Owns a lock on an `async_mutex` and unlocks it in its destructor.
/// Movable, not copyable. Thread-safety: as for any object (one user at a
/// time); the mutex it unlocks is thread-safe.
class async_mutex_lock {
public:
    async_mutex_lock() noexcept = default;
    /// Takes over a lock the caller already holds on `m`.
    async_mutex_lock(async_mutex& m, std::adopt_lock_t) noexcept : m_mutex(&m) {}
    async_mutex_lock(async_mutex_lock&& other) noexcept
        : m_mutex(std::exchange(other.m_mutex, nullptr)) {}
    async_mutex_lock& operator=(async_mutex_lock&& other) noexcept {
        if (this != &other) {
            reset();
            m_mutex = std::exchange(other.m_mutex, nullptr);
        }
        return *this;
    }
    async_mutex_lock(const async_mutex_lock&) = delete;
    async_mutex_lock& operator=(const async_mutex_lock&) = delete;
    ~async_mutex_lock() { reset(); }

    [[nodiscard]] bool owns_lock() const noexcept { return m_mutex != nullptr; }
    explicit operator bool() const noexcept { return owns_lock(); }
    [[nodiscard]] async_mutex* mutex() const noexcept { return m_mutex; }

    /// Unlocks now (the guard must own a lock).
    void unlock() noexcept;
    /// Gives up ownership without unlocking; returns the mutex.
    [[nodiscard]] async_mutex* release() noexcept { return std::exchange(m_mutex, nullptr); }

private:
    void reset() noexcept {
        if (m_mutex != nullptr) {
            unlock();
        }
    }

    async_mutex* m_mutex = nullptr;
};

class async_mutex {
    // m_state values. `contended` means "locked, and the wait list is not
    // empty"; it holds exactly while the list is non-empty, and it only
    // changes to or from `contended` under m_lock.
    static constexpr unsigned char unlocked = 0;
    static constexpr unsigned char locked = 1;
    static constexpr unsigned char contended = 2;

    class lock_awaiter_base : public detail::wait_operation<async_mutex> {
    public:
        bool await_ready() noexcept { return m_primitive->try_lock(); }

        template <class Promise>
        bool await_suspend(std::coroutine_handle<Promise> h) noexcept {
            return this->suspend_unless(h, [this](bool may_wait) { return m_primitive->try_lock_or_mark_contended(may_wait); });
        }

    protected:
        using detail::wait_operation<async_mutex>::wait_operation;
    };

public:
    /// `co_await lock()`: suspends until this coroutine owns the mutex.
    class [[nodiscard]] lock_awaiter : public lock_awaiter_base {
    public:
        explicit lock_awaiter(async_mutex& m) noexcept : lock_awaiter_base(m) {}
        lock_awaiter(async_mutex& m, std::stop_token t) noexcept
            : lock_awaiter_base(m, std::move(t)) {}
        void await_resume() { this->disarm_or_throw(); }
    };

    /// `co_await scoped_lock()`: as `lock()`, yielding an `async_mutex_lock`.
    class [[nodiscard]] scoped_lock_awaiter : public lock_awaiter_base {
    public:
        explicit scoped_lock_awaiter(async_mutex& m) noexcept : lock_awaiter_base(m) {}
        scoped_lock_awaiter(async_mutex& m, std::stop_token t) noexcept
            : lock_awaiter_base(m, std::move(t)) {}
        async_mutex_lock await_resume() {
            this->disarm_or_throw();
            return async_mutex_lock(*m_primitive, std::adopt_lock);
        }
    };

    async_mutex() noexcept = default;
    async_mutex(const async_mutex&) = delete;
    async_mutex& operator=(const async_mutex&) = delete;
    ~async_mutex() {
        assert(m_waiters.empty() && "weft: async_mutex destroyed while coroutines wait on it");
    }

    /// Locks, suspending while another owner holds the mutex. Watches the
    /// awaiting coroutine's stop token.
    lock_awaiter lock() noexcept { return lock_awaiter(*this); }
    /// Locks, watching `token` instead of the coroutine's stop token.
    lock_awaiter lock(std::stop_token token) noexcept {
        return lock_awaiter(*this, std::move(token));
    }
    /// Locks and returns a guard that unlocks on destruction.
    scoped_lock_awaiter scoped_lock() noexcept { return scoped_lock_awaiter(*this); }
    scoped_lock_awaiter scoped_lock(std::stop_token token) noexcept {
        return scoped_lock_awaiter(*this, std::move(token));
    }

    /// Takes the mutex if it is free. Never suspends; never takes it from
    /// under queued waiters (the mutex is never free while any wait).
    [[nodiscard]] bool try_lock() noexcept {
        unsigned char expected = unlocked;
        // acquire: the new owner must see the previous owner's critical
        // section, published by the release in unlock().
        return m_state.compare_exchange_strong(expected, locked, std::memory_order_acquire,
                                               std::memory_order_relaxed);
    }

    /// Releases the mutex: hands it to the oldest waiter (resumed through the
    /// trampoline, on this thread) or, when none waits, frees it.
    void unlock() noexcept {
        unsigned char expected = locked;
        // release: publishes this critical section to the next owner that
        // takes the mutex through try_lock()'s acquire. relaxed on failure:
        // the slow path below orders through m_lock.
        if (m_state.compare_exchange_strong(expected, unlocked, std::memory_order_release,
                                            std::memory_order_relaxed)) {
            return;
        }
        assert(expected != unlocked && "weft: async_mutex::unlock() of an unlocked mutex");
        detail::waiter* next = nullptr;
        {
            std::lock_guard<detail::spin_mutex> guard(m_lock);
            if (m_waiters.empty()) {
                // The last waiter was cancelled after we read `contended`;
                // its canceller reset the state to `locked` and nobody else
                // can change it while we own the mutex and hold m_lock.
                // release: as in the fast path.
                m_state.store(unlocked, std::memory_order_release);
                return;
            }
            next = &m_waiters.pop_front();
            next->m_outcome = detail::wait_outcome::completed;
            if (m_waiters.empty()) {
                // relaxed: still locked (by `next`); this only re-enables the
                // fast unlock path. The hand-off itself is published by
                // m_lock and by wake().
                m_state.store(locked, std::memory_order_relaxed);
            }
        }
        next->wake(); // ownership passes to `next`; last use of it
    }

    /// A snapshot: true when some owner holds the mutex.
    [[nodiscard]] bool is_locked() const noexcept {
        // relaxed: a diagnostic snapshot that orders nothing.
        return m_state.load(std::memory_order_relaxed) != unlocked;
    }

private:
    template <class>
    friend struct detail::cancel_on_stop;
    friend class detail::wait_operation<async_mutex>;

    // Under m_lock: takes the mutex if free (true); otherwise, when `mark`,
    // makes sure the state says `contended` because the caller is about to
    // queue (false).
    bool try_lock_or_mark_contended(bool mark) noexcept {
        // relaxed: the CASes below carry the ordering.
        unsigned char s = m_state.load(std::memory_order_relaxed);
        for (;;) {
            if (s == unlocked) {
                // acquire: as in try_lock().
                if (m_state.compare_exchange_weak(s, locked, std::memory_order_acquire,
                                                  std::memory_order_relaxed)) {
                    return true;
                }
            } else if (s == locked && mark) {
                // relaxed: the CAS only has to make the owner's fast unlock
                // fail (RMWs on one atomic are totally ordered, so it will);
                // the owner then takes m_lock, which orders the queued node.
                if (m_state.compare_exchange_weak(s, contended, std::memory_order_relaxed)) {
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
                // relaxed: still locked by its owner; only re-enables the
                // fast unlock path (see unlock()).
                m_state.store(locked, std::memory_order_relaxed);
            }
        });
    }

    std::atomic<unsigned char> m_state{unlocked};
    detail::spin_mutex m_lock;
    detail::waiter_list m_waiters;
};

inline void async_mutex_lock::unlock() noexcept {
    assert(m_mutex != nullptr && "weft: async_mutex_lock::unlock() without a lock");
    std::exchange(m_mutex, nullptr)->unlock();
}

} // namespace weft
