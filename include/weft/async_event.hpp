/// \file
/// `async_event`: a flag that coroutines can wait for, in manual-reset or
/// auto-reset flavour.
///
/// - `reset_mode::manual`: `set()` wakes every waiter and the event stays set
///   (later `wait()`s complete at once) until `reset()`.
/// - `reset_mode::automatic`: `set()` wakes exactly one waiter, the oldest,
///   consuming the signal; with no waiter the event stays set until one
///   `wait()` consumes it. Several `set()`s with no waiter in between count
///   as one.
///
/// Waiters are resumed through the trampoline, on the thread that calls
/// `set()`, in FIFO order. `set()` and `wait()` happen-before: whatever the
/// setter did before `set()` is visible after the `wait()` it completes.
/// `set()` on an event without waiters, `reset()`, `is_set()` and a `wait()`
/// on a set event are single atomic operations; the wait list is guarded by
/// a small spin lock.
///
/// Cancellation: a waiting `wait()` watches the awaiting coroutine's stop
/// token (or the one passed to `wait(token)`, which replaces it); on stop it
/// leaves the queue and throws `operation_cancelled` (an automatic event's
/// signal is then not consumed). A `wait()` on an event that is set
/// completes even when stop was already requested; on an unset one with
/// stop already requested it throws at once without suspending. A waiter
/// woken by `set()` before its stop callback ran completes normally.
///
/// Lifetime: the event must outlive every waiter; destroying it while
/// coroutines wait on it is undefined (asserted in debug builds). A waiter
/// woken by `set()` may destroy the event: `set()` does not touch it after
/// waking the first waiter.
/// Threading: every member is thread-safe.
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

enum class reset_mode : unsigned char { manual, automatic };

class async_event {
    // m_state values. `waiting` means "not set, and the wait list is not
    // empty"; it holds exactly while the list is non-empty, and it only
    // changes to or from `waiting` under m_lock.
    static constexpr unsigned char not_set = 0;
    static constexpr unsigned char is_set_state = 1;
    static constexpr unsigned char waiting = 2;

public:
    class [[nodiscard]] wait_awaiter : public detail::wait_operation<async_event> {
    public:
        explicit wait_awaiter(async_event& e) noexcept : wait_operation(e) {}
        wait_awaiter(async_event& e, std::stop_token t) noexcept : wait_operation(e, std::move(t)) {}

        bool await_ready() noexcept { return m_primitive->try_consume(); }

        template <class Promise>
        bool await_suspend(std::coroutine_handle<Promise> h) noexcept {
            return this->suspend_unless(h, [this](bool may_wait) { return m_primitive->try_consume_or_mark_waiting(may_wait); });
        }

        void await_resume() { this->disarm_or_throw(); }
    };

    explicit async_event(reset_mode mode, bool initially_set = false) noexcept
        : m_state(initially_set ? is_set_state : not_set), m_mode(mode) {}
    async_event(const async_event&) = delete;
    async_event& operator=(const async_event&) = delete;
    ~async_event() {
        assert(m_waiters.empty() && "weft: async_event destroyed while coroutines wait on it");
    }

    /// Suspends until the event is set (an automatic event is then reset).
    /// Watches the awaiting coroutine's stop token.
    wait_awaiter wait() noexcept { return wait_awaiter(*this); }
    /// As `wait()`, watching `token` instead of the coroutine's.
    wait_awaiter wait(std::stop_token token) noexcept {
        return wait_awaiter(*this, std::move(token));
    }

    /// Sets the event: wakes all waiters (manual) or the oldest one
    /// (automatic).
    void set() noexcept {
        // relaxed: the CAS below carries the ordering.
        unsigned char s = m_state.load(std::memory_order_relaxed);
        for (;;) {
            if (s == is_set_state) {
                return;
            }
            if (s == not_set) {
                // release: a wait() that sees the event set (acquire) must
                // see what this thread did before set().
                if (m_state.compare_exchange_weak(s, is_set_state, std::memory_order_release,
                                                  std::memory_order_relaxed)) {
                    return;
                }
                continue;
            }
            detail::waiter_list::batch woken;
            {
                std::lock_guard<detail::spin_mutex> guard(m_lock);
                // relaxed: under m_lock `waiting` cannot change; any other
                // value sends us back to the CAS above.
                s = m_state.load(std::memory_order_relaxed);
                if (s != waiting) {
                    continue;
                }
                if (m_mode == reset_mode::manual) {
                    woken = m_waiters.take_all(detail::wait_outcome::completed);
                    // release: as in the fast path, for later wait()s.
                    m_state.store(is_set_state, std::memory_order_release);
                } else {
                    detail::waiter& w = m_waiters.pop_front();
                    w.m_outcome = detail::wait_outcome::completed;
                    woken.push_back(w);
                    if (m_waiters.empty()) {
                        // relaxed: the signal went to `w` (published by
                        // m_lock and wake()); the event is left unset.
                        m_state.store(not_set, std::memory_order_relaxed);
                    }
                }
            }
            woken.wake_all(); // last use of the waiters and of *this
            return;
        }
    }

    /// Unsets a set event. Does nothing to waiters.
    void reset() noexcept {
        unsigned char expected = is_set_state;
        // relaxed: resetting publishes nothing; coherence of m_state orders
        // it against this thread's own set().
        m_state.compare_exchange_strong(expected, not_set, std::memory_order_relaxed);
    }

    /// A snapshot: true when the event is set.
    [[nodiscard]] bool is_set() const noexcept {
        // acquire: a caller that sees the event set may rely on what the
        // setter did before set(), as a completed wait() would.
        return m_state.load(std::memory_order_acquire) == is_set_state;
    }

    [[nodiscard]] reset_mode mode() const noexcept { return m_mode; }

private:
    template <class>
    friend struct detail::cancel_on_stop;
    friend class detail::wait_operation<async_event>;

    // wait()'s fast path: true when the event is set (and, automatic, was
    // consumed by this call).
    bool try_consume() noexcept {
        if (m_mode == reset_mode::manual) {
            return is_set();
        }
        unsigned char expected = is_set_state;
        // acquire: pairs with set()'s release.
        return m_state.compare_exchange_strong(expected, not_set, std::memory_order_acquire,
                                               std::memory_order_relaxed);
    }

    // Under m_lock: completes a wait on a set event (true); otherwise, when
    // `mark`, makes sure the state says `waiting` because the caller is about
    // to queue (false).
    bool try_consume_or_mark_waiting(bool mark) noexcept {
        // acquire: if the event is set (manual), this load is what makes
        // set()'s release visible to us.
        unsigned char s = m_state.load(std::memory_order_acquire);
        for (;;) {
            if (s == is_set_state) {
                if (m_mode == reset_mode::manual) {
                    return true;
                }
                // acquire: pairs with set()'s release.
                if (m_state.compare_exchange_weak(s, not_set, std::memory_order_acquire,
                                                  std::memory_order_acquire)) {
                    return true;
                }
            } else if (s == not_set && mark) {
                // On success the CAS only has to make a concurrent set()'s
                // CAS fail and take m_lock, which orders the queued node; on
                // failure we may read `is_set_state` and must then see what
                // the setter published: acquire (GCC rejects a failure order
                // stronger than the success order, so both are acquire).
                if (m_state.compare_exchange_weak(s, waiting, std::memory_order_acquire,
                                                  std::memory_order_acquire)) {
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
                // relaxed: back to "not set, nobody waits"; publishes nothing.
                m_state.store(not_set, std::memory_order_relaxed);
            }
        });
    }

    std::atomic<unsigned char> m_state;
    const reset_mode m_mode;
    detail::spin_mutex m_lock;
    detail::waiter_list m_waiters;
};

} // namespace weft
