/// \file
/// The waiter machinery shared by weft's synchronisation primitives
/// (async_mutex, async_semaphore, async_event, async_latch, channel): an
/// intrusive wait-list node, the list, and the base of their awaiters that
/// decides, exactly once, whether a suspended coroutine was woken normally or
/// cancelled through its stop token.
///
/// How a wait works (every primitive follows these steps):
///
/// 1. `await_suspend`, holding the primitive's lock: complete at once if the
///    operation can (an immediate completion wins even when stop was already
///    requested); otherwise, if stop was already requested, record
///    `cancelled` and do not suspend; otherwise set `m_handle` and link the
///    node (which lives in the awaiter, i.e. in the suspended coroutine's
///    frame) into the primitive's wait list.
/// 2. Without the lock: `arm(token)` constructs the `std::stop_callback`
///    (which may run the cancellation inline, if stop was requested in the
///    meantime), then moves the node's phase from `registering` to
///    `suspended`. If a waker or a canceller already finished with the node
///    (phase `woken`), `arm` returns false and the coroutine continues without
///    suspending.
/// 3. A waker (unlock, release, set, count_down, send/receive, close) or the
///    canceller (the stop callback) takes the primitive's lock and *unlinks*
///    the node. Whoever unlinks it owns the wake-up: it writes the outcome
///    (and any hand-off: a value, the ownership of a lock) under the lock,
///    drops the lock, and calls `wake()` as its very last action, because the
///    coroutine may run inline inside `wake()` and destroy the node. The
///    loser finds the node unlinked and does nothing.
/// 4. `await_resume` destroys the stop callback (which waits for a canceller
///    that lost the race and is still running on another thread) and turns
///    the outcome into a result or an `operation_cancelled`.
///
/// Lifetime: a node must stay linked no longer than its coroutine is
/// suspended; destroying a coroutine suspended on a primitive, or a primitive
/// that still has waiters, is undefined (the primitives assert the latter).
/// Threading: a node and a list are guarded by the owning primitive's lock,
/// except `m_phase`, which is the one atomic handshake between the
/// registering thread and the waker.
#pragma once

#include <weft/detail/spin_mutex.hpp>
#include <weft/detail/trampoline.hpp>
#include <weft/stop.hpp>

#include <atomic>
#include <cassert>
#include <coroutine>
#include <mutex>
#include <optional>
#include <stop_token>
#include <utility>

namespace weft::detail {

/// How a wait ended; written by whoever unlinked the waiter, under the lock.
enum class wait_outcome : unsigned char {
    pending,   ///< still waiting (or never waited)
    completed, ///< the operation succeeded (lock owned, value delivered, ...)
    cancelled, ///< stop was requested before the operation could complete
    closed,    ///< the channel was closed
};

class waiter_list;

/// An intrusive wait-list node. Lives inside an awaiter.
class waiter {
public:
    waiter() noexcept = default;
    waiter(const waiter&) = delete;
    waiter& operator=(const waiter&) = delete;
    ~waiter() { assert(m_list == nullptr && "weft: waiter destroyed while still waiting"); }

    /// True while the node is in a wait list (guarded by the list's lock).
    [[nodiscard]] bool linked() const noexcept { return m_list != nullptr; }
    /// The list the node is in, or null (guarded by the list's lock).
    [[nodiscard]] waiter_list* list() const noexcept { return m_list; }

    /// Ends the registration started by linking the node. Returns true when
    /// the coroutine must stay suspended, false when it was woken (or
    /// cancelled) while registering and must go on at once. After it returns
    /// true the coroutine may already be running on another thread: the
    /// caller must not touch the awaiter again.
    [[nodiscard]] bool finish_registration() noexcept {
        phase expected = phase::registering;
        // release on success: whatever this thread wrote into the coroutine
        // frame before suspending (notably the stop callback, constructed
        // after the lock was dropped) must be visible to the thread that
        // resumes the coroutine; that thread's exchange in wake() acquires.
        // acquire on failure: the waker wrote the outcome (and maybe a value)
        // before its release exchange; we are about to read them.
        return m_phase.compare_exchange_strong(expected, phase::suspended,
                                               std::memory_order_release,
                                               std::memory_order_acquire);
    }

    /// Resumes the waiting coroutine, or, if it is still registering, tells
    /// it not to suspend. Called without any lock held, by whoever unlinked
    /// the node, as its very last use of the node.
    void wake() noexcept {
        // Read before the exchange: once the phase says `woken` a registering
        // thread may go on and destroy this node.
        const std::coroutine_handle<> h = m_handle;
        // acq_rel: release publishes the outcome to a thread still
        // registering (its failing CAS acquires); acquire pairs with the
        // release of finish_registration() so that resuming the coroutine
        // here sees the frame as the suspending thread left it.
        if (m_phase.exchange(phase::woken, std::memory_order_acq_rel) == phase::suspended) {
            detail::resume(h);
        }
    }

    std::coroutine_handle<> m_handle;
    wait_outcome m_outcome = wait_outcome::pending;

private:
    friend class waiter_list;
    enum class phase : unsigned char { registering, suspended, woken };

    waiter* m_prev = nullptr;
    waiter* m_next = nullptr;
    waiter_list* m_list = nullptr;
    std::atomic<phase> m_phase{phase::registering};
};

/// A FIFO of waiters. Not thread-safe: guarded by its primitive's lock.
class waiter_list {
public:
    waiter_list() noexcept = default;
    waiter_list(const waiter_list&) = delete;
    waiter_list& operator=(const waiter_list&) = delete;

    [[nodiscard]] bool empty() const noexcept { return m_head == nullptr; }
    [[nodiscard]] waiter* front() const noexcept { return m_head; }

    void push_back(waiter& w) noexcept {
        assert(!w.linked());
        w.m_list = this;
        w.m_prev = m_tail;
        w.m_next = nullptr;
        if (m_tail != nullptr) {
            m_tail->m_next = &w;
        } else {
            m_head = &w;
        }
        m_tail = &w;
    }

    void remove(waiter& w) noexcept {
        assert(w.m_list == this);
        if (w.m_prev != nullptr) {
            w.m_prev->m_next = w.m_next;
        } else {
            m_head = w.m_next;
        }
        if (w.m_next != nullptr) {
            w.m_next->m_prev = w.m_prev;
        } else {
            m_tail = w.m_prev;
        }
        w.m_prev = w.m_next = nullptr;
        w.m_list = nullptr;
    }

    /// Unlinks and returns the first waiter (the list must not be empty).
    waiter& pop_front() noexcept {
        waiter& w = *m_head;
        remove(w);
        return w;
    }

    /// Unlinks every waiter, giving each `outcome`, and returns them as a
    /// batch to wake once the lock is dropped.
    class batch;
    batch take_all(wait_outcome outcome) noexcept;

private:
    waiter* m_head = nullptr;
    waiter* m_tail = nullptr;
};

/// Waiters already unlinked (so no canceller will touch them) and waiting for
/// `wake_all()`, which must be called without the lock held.
class waiter_list::batch {
public:
    batch() noexcept = default;
    batch(batch&& other) noexcept
        : m_head(std::exchange(other.m_head, nullptr)), m_tail(std::exchange(other.m_tail, nullptr)) {}
    batch& operator=(batch&& other) noexcept {
        assert(m_head == nullptr && "weft: overwriting a waiter batch never woken");
        m_head = std::exchange(other.m_head, nullptr);
        m_tail = std::exchange(other.m_tail, nullptr);
        return *this;
    }
    ~batch() { assert(m_head == nullptr && "weft: waiter batch never woken"); }

    void push_back(waiter& w) noexcept {
        assert(!w.linked());
        w.m_next = nullptr;
        if (m_tail != nullptr) {
            m_tail->m_next = &w;
        } else {
            m_head = &w;
        }
        m_tail = &w;
    }

    /// Wakes every waiter in FIFO order. Each may run inline and destroy its
    /// node (and even the primitive), so the next pointer is read first.
    void wake_all() noexcept {
        waiter* w = std::exchange(m_head, nullptr);
        m_tail = nullptr;
        while (w != nullptr) {
            waiter* next = w->m_next;
            w->wake();
            w = next;
        }
    }

private:
    waiter* m_head = nullptr;
    waiter* m_tail = nullptr;
};

inline waiter_list::batch waiter_list::take_all(wait_outcome outcome) noexcept {
    batch b;
    while (!empty()) {
        waiter& w = pop_front();
        w.m_outcome = outcome;
        b.push_back(w);
    }
    return b;
}

/// The stop callback of a wait on `Primitive`: asks the primitive to cancel
/// the waiter. `Primitive::cancel_waiter(waiter&)` must follow
/// `cancel_waiter()` below.
template <class Primitive>
struct cancel_on_stop {
    Primitive* m_primitive;
    waiter* m_waiter;
    void operator()() const noexcept { m_primitive->cancel_waiter(*m_waiter); }
};

/// The cancellation step shared by every primitive: under `lock`, if the
/// waiter is still linked, unlink it, mark it cancelled and run
/// `after_unlink` (which restores the primitive's invariants, e.g. "no
/// waiters" flags); then, without the lock, wake it. If a waker unlinked it
/// first, the waker owns the wake-up and this does nothing.
template <class Lock, class AfterUnlink>
void cancel_waiter(Lock& lock, waiter& w, AfterUnlink&& after_unlink) noexcept {
    {
        std::lock_guard<Lock> guard(lock);
        if (!w.linked()) {
            return;
        }
        waiter_list* list = w.list();
        list->remove(w);
        w.m_outcome = wait_outcome::cancelled;
        after_unlink(*list);
    }
    w.wake(); // last: the coroutine may run inline and destroy `w`
}

/// The base of every primitive's awaiter: a waiter node plus the stop token
/// to watch (the awaiting coroutine's, or an explicit one) and the stop
/// callback that is armed while the coroutine waits.
///
/// Awaiters are neither copyable nor movable: they are created as prvalues
/// and live in the awaiting coroutine's frame until it resumes.
template <class Primitive>
class wait_operation : public waiter {
public:
    wait_operation(const wait_operation&) = delete;
    wait_operation& operator=(const wait_operation&) = delete;

protected:
    explicit wait_operation(Primitive& p) noexcept : m_primitive(&p) {}
    wait_operation(Primitive& p, std::stop_token token) noexcept
        : m_primitive(&p), m_explicit_token(std::move(token)), m_has_explicit_token(true) {}
    ~wait_operation() = default;

    /// The token this wait watches: the explicit one if given, else that of
    /// the awaiting coroutine (never-stopping for promises without one).
    template <class Promise>
    const std::stop_token& token_for(Promise& p) const noexcept {
        return m_has_explicit_token ? m_explicit_token : detail::stop_token_of(p);
    }

    /// The whole of `await_suspend` for primitives with `m_lock` and
    /// `m_waiters`: under the lock, `try_or_mark(may_wait)` either completes
    /// the operation at once (true) or, when `may_wait`, records that the
    /// primitive now has a waiter. If stop was already requested the
    /// operation still completes when it can, but never waits. Otherwise the
    /// waiter is linked, and armed without the lock.
    template <class Promise, class TryOrMark>
    bool suspend_unless(std::coroutine_handle<Promise> h, TryOrMark try_or_mark) noexcept {
        const std::stop_token& token = token_for(h.promise());
        {
            std::lock_guard<spin_mutex> guard(m_primitive->m_lock);
            const bool stopped = token.stop_requested();
            if (try_or_mark(!stopped)) {
                m_outcome = wait_outcome::completed;
                return false;
            }
            if (stopped) {
                m_outcome = wait_outcome::cancelled;
                return false;
            }
            m_handle = h;
            m_primitive->m_waiters.push_back(*this);
        }
        return arm(token);
    }

    /// Step 2 (see the file comment): call without the primitive's lock,
    /// right after linking. Returns what `await_suspend` must return.
    [[nodiscard]] bool arm(const std::stop_token& token) noexcept {
        if (token.stop_possible()) {
            m_stop_callback.emplace(token, cancel_on_stop<Primitive>{m_primitive, this});
        }
        return finish_registration();
    }

    /// Step 4: disarms the stop callback and returns the outcome.
    wait_outcome disarm() noexcept {
        m_stop_callback.reset();
        return m_outcome;
    }

    /// `disarm()`, throwing `operation_cancelled` when the wait was cancelled.
    wait_outcome disarm_or_throw() {
        const wait_outcome outcome = disarm();
        if (outcome == wait_outcome::cancelled) {
            throw operation_cancelled();
        }
        return outcome;
    }

    Primitive* m_primitive;

private:
    std::optional<std::stop_callback<cancel_on_stop<Primitive>>> m_stop_callback;
    std::stop_token m_explicit_token;
    bool m_has_explicit_token = false;
};

} // namespace weft::detail
