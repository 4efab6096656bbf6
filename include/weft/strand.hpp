/// \file
/// `strand<Ex>`: serialises coroutines on top of any scheduler `Ex`.
///
/// `co_await s.schedule()` continues the calling coroutine on `Ex` (through
/// `Ex::schedule()`), but never at the same time as any other coroutine
/// resumed through the same strand, and in the order in which they called
/// `schedule()` (FIFO; between threads, the order in which their calls took
/// effect). A coroutine is *on* the strand from that resumption until it next
/// suspends; whatever it resumes synchronously on the way (a finishing task's
/// awaiter, for instance) runs within that turn too. After awaiting anything
/// else it is no longer on the strand: `co_await s.schedule()` again.
///
/// How: awaiting coroutines are pushed on a lock-free intrusive stack (the
/// node lives in the awaiter, i.e. in the awaiting coroutine's frame: no
/// allocation per `schedule()`). The push that finds the strand idle starts a
/// drain coroutine (one allocation per busy period), which moves onto `Ex`,
/// takes the stack, restores its FIFO order, and resumes the coroutines one by
/// one with `detail::resume_now`, so each turn finishes before the next
/// begins. After `max_batch` turns it schedules itself on `Ex` again, so a
/// busy strand does not monopolise one of `Ex`'s threads.
///
/// Errors: when `Ex::schedule()` throws (a shut-down thread_pool, say), every
/// coroutine of that batch is resumed on the current thread, still one at a
/// time, and `co_await s.schedule()` throws that exception in it.
///
/// Lifetime: `Ex` is held by reference and must outlive the strand. The strand
/// must outlive every coroutine that awaits `schedule()` on it until that
/// coroutine has been resumed. It may be destroyed as soon as no work is
/// queued on it, even by the last coroutine it resumed (then the drain lets go
/// of it at once); the destructor waits, spinning with
/// `std::this_thread::yield`, until a drain running on another thread has let
/// go of it. Destroying it while coroutines are still queued is undefined.
///
/// Threading: `schedule()` may be called from any thread. `Ex::schedule()` is
/// called from the threads the strand's work runs on. Neither copyable nor
/// movable (queued awaiters point to it).
#pragma once

#include <weft/concepts.hpp>
#include <weft/detail/detached_task.hpp>
#include <weft/detail/trampoline.hpp>

#include <atomic>
#include <cassert>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <optional>
#include <thread>
#include <utility>

namespace weft {

namespace detail {

/// A coroutine waiting for its turn on a strand.
struct strand_node {
    strand_node* m_next = nullptr;
    std::coroutine_handle<> m_handle;
    /// Set by the drain just before resuming: the exception to throw, if any.
    const std::exception_ptr* m_error = nullptr;
};

/// The value of a strand's state word while a drain runs and nothing new has
/// been queued since it last looked.
inline constinit strand_node strand_busy_marker{};

/// The strands whose drains are resuming a coroutine on this thread,
/// innermost first (a drain can run inside another one's turn, e.g. over
/// inline_executor).
struct strand_turn {
    const void* m_strand;
    strand_turn* m_outer;
    bool m_strand_destroyed = false;
};
constinit inline thread_local strand_turn* current_strand_turn = nullptr;

} // namespace detail

template <scheduler Ex>
class strand {
public:
    /// Turns a drain takes before it reschedules itself on the inner executor.
    static constexpr std::size_t max_batch = 64;

    explicit strand(Ex& inner) noexcept : m_inner(inner) {}
    strand(const strand&) = delete;
    strand& operator=(const strand&) = delete;

    ~strand() {
        for (detail::strand_turn* t = detail::current_strand_turn; t != nullptr; t = t->m_outer) {
            if (t->m_strand == this) {
                // Destroyed by the coroutine it is running: the drain stops
                // without touching *this again.
                t->m_strand_destroyed = true;
                // relaxed: this thread's own drain wrote it last, or a queued
                // coroutine did (which would be the caller's bug we assert on).
                assert(m_head.load(std::memory_order_relaxed) == &detail::strand_busy_marker &&
                       "weft::strand destroyed with coroutines still queued on it");
                return;
            }
        }
        // A drain on another thread may be between resuming our last coroutine
        // and marking the strand idle, its last access to *this. acquire:
        // pairs with that release CAS.
        while (m_head.load(std::memory_order_acquire) != nullptr) {
            std::this_thread::yield();
        }
    }

    class schedule_awaiter : private detail::strand_node {
    public:
        explicit schedule_awaiter(strand& s) noexcept : m_strand(&s) {}
        bool await_ready() const noexcept { return false; }
        /// Throws std::bad_alloc (the coroutine then resumes with it) when the
        /// drain coroutine cannot be allocated.
        void await_suspend(std::coroutine_handle<> h) {
            m_handle = h;
            m_strand->enqueue(this); // *this may be gone once this returns
        }
        void await_resume() const {
            if (m_error != nullptr && *m_error) {
                std::rethrow_exception(*m_error);
            }
        }

    private:
        strand* m_strand;
    };

    /// `co_await s.schedule()` continues on the inner executor, serialised.
    /// Makes `strand<Ex>` a `weft::scheduler`.
    [[nodiscard]] schedule_awaiter schedule() noexcept { return schedule_awaiter{*this}; }

    [[nodiscard]] Ex& inner_executor() const noexcept { return m_inner; }

    /// True while this thread runs a turn of this strand.
    [[nodiscard]] bool running_in_this_thread() const noexcept {
        for (const detail::strand_turn* t = detail::current_strand_turn; t != nullptr;
             t = t->m_outer) {
            if (t->m_strand == this) {
                return true;
            }
        }
        return false;
    }

private:
    void enqueue(detail::strand_node* n) {
        // The drain we may have to start is allocated before the node is
        // published, so that std::bad_alloc leaves the strand untouched.
        std::optional<detail::detached_task> starter;
        // relaxed: only a first guess for the CAS.
        detail::strand_node* old = m_head.load(std::memory_order_relaxed);
        for (;;) {
            if (old == nullptr && !starter) {
                starter.emplace(drain());
            }
            n->m_next = (old == &detail::strand_busy_marker) ? nullptr : old;
            // release: publishes the node (and the coroutine's frame) to the
            // drain's acquire exchange; acquire: when we find the strand idle,
            // the previous drain's turns (its release CAS to idle) happen
            // before the turns of the drain we start. relaxed on failure: we
            // only retry.
            if (m_head.compare_exchange_weak(old, n, std::memory_order_acq_rel,
                                             std::memory_order_relaxed)) {
                break;
            }
        }
        // From here on, *n and *this may be gone (a drain elsewhere may have
        // resumed the coroutine already); touch neither.
        if (old == nullptr) {
            std::move(*starter).start();
        }
    }

    /// Takes what was queued since the last look, oldest first; null when
    /// nothing was.
    detail::strand_node* take_queued() noexcept {
        // acquire: pairs with the enqueuers' release CAS (a release sequence
        // of RMWs, so one exchange sees every node pushed so far).
        detail::strand_node* lifo =
            m_head.exchange(&detail::strand_busy_marker, std::memory_order_acquire);
        detail::strand_node* fifo = nullptr;
        while (lifo != nullptr && lifo != &detail::strand_busy_marker) {
            detail::strand_node* next = lifo->m_next;
            lifo->m_next = fifo;
            fifo = lifo;
            lifo = next;
        }
        return fifo;
    }

    /// Runs one turn; false when the coroutine destroyed the strand.
    bool run_turn(detail::strand_node* n, const std::exception_ptr& error) {
        detail::strand_turn turn{this, detail::current_strand_turn};
        detail::current_strand_turn = &turn;
        n->m_error = &error;
        const std::coroutine_handle<> h = n->m_handle; // *n dies with the coroutine
        detail::resume_now(h);
        detail::current_strand_turn = turn.m_outer;
        return !turn.m_strand_destroyed;
    }

    detail::detached_task drain() {
        detail::strand_node* pending = nullptr; // taken, not yet run; FIFO
        for (;;) {
            std::exception_ptr error;
            try {
                co_await m_inner.schedule();
            } catch (...) {
                error = std::current_exception();
            }
            for (std::size_t turns = 0; turns < max_batch;) {
                if (pending == nullptr) {
                    pending = take_queued();
                    if (pending == nullptr) {
                        detail::strand_node* expected = &detail::strand_busy_marker;
                        // release: our turns happen before those of the next
                        // drain (its starter's acquire CAS) and before a
                        // destructor waiting on another thread. relaxed on
                        // failure: something was queued; take_queued acquires.
                        if (m_head.compare_exchange_strong(expected, nullptr,
                                                           std::memory_order_release,
                                                           std::memory_order_relaxed)) {
                            co_return; // idle; *this may be destroyed from here on
                        }
                        continue;
                    }
                }
                detail::strand_node* n = std::exchange(pending, pending->m_next);
                if (!run_turn(n, error)) {
                    assert(pending == nullptr &&
                           "weft::strand destroyed with coroutines still queued on it");
                    co_return;
                }
                ++turns;
            }
        }
    }

    Ex& m_inner;
    /// nullptr: idle. &strand_busy_marker: a drain runs, nothing new queued.
    /// Otherwise: a drain runs (or is being started) and this is the newest of
    /// the coroutines queued since it last looked, linked newest to oldest.
    std::atomic<detail::strand_node*> m_head{nullptr};
};

/// `strand s(ex)` deduces `strand<Ex>`; `strand s2(s)` (strands are not
/// copyable) is a strand over the strand `s`.
template <scheduler Ex>
strand(strand<Ex>&) -> strand<strand<Ex>>;

} // namespace weft
