// weft::thread_pool's sleeping and waking (members of thread_pool::impl,
// declared in pool_impl.hpp): workers that search for work or park, the
// wake-ups, and closing once shutdown is requested and everyone sleeps. The
// queues, the worker loop and posting are in thread_pool.cpp; the first check
// of notify_one_parked(), which every post makes, is inline in pool_impl.hpp.
//
// Sleeping and waking (the scheme is tokio's):
//
// * `m_state` packs two counters: workers that are *searching* (spinning for
//   work to steal) and workers that are *unparked* (not asleep). Only a bounded
//   number of workers search at a time (half of them, at least one); the rest
//   go straight to sleep when they run dry. A searcher spins for at most
//   `spin_budget` with pause instructions, then sleeps.
// * Whoever makes work visible to other workers (a deque push, an injection)
//   does so with a seq_cst operation, then loads `m_state` (seq_cst). If nobody
//   searches and somebody sleeps, it wakes exactly one sleeper, which counts as
//   a searcher from then on. While somebody searches nobody else is woken: the
//   searcher will find the work, and when the last searcher finds work it wakes
//   the next sleeper (so workers join in one by one while there is work).
// * A worker goes to sleep in this order: under `m_sleep_mutex` it decrements
//   the counters (seq_cst RMW) and puts itself on the sleeper list; then it
//   re-checks every queue others can take from (seq_cst loads) and, if it sees
//   work, wakes a sleeper (maybe itself) before sleeping on its own futex word
//   (std::atomic::wait). A wake-up takes the worker off the list under the
//   mutex and sets its word, so each wake-up wakes exactly one worker, and
//   sleeping workers never spin.
//
// Why no work is stranded: let P publish W with a seq_cst operation and then
// load m_state (L, seq_cst). All these are in the single total order S of
// seq_cst operations. Every worker whose parking RMW comes after L in S
// re-checks after it, so its seq_cst loads see W (or W already taken) and it
// wakes a sleeper. Every worker asleep before L is visible to L: if none of
// them searched, P itself wakes one. A worker awake at L (running or
// searching) takes W, or eventually parks, after L. A woken worker is a
// searcher that either finds W or parks again, re-checking.

#include "pool_impl.hpp"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>


namespace weft {

bool thread_pool::impl::try_begin_search() noexcept {
    // relaxed: only a heuristic cap on the number of searchers; the RMW
    // below is what the handshake relies on.
    const std::uint64_t s = m_state.load(std::memory_order_relaxed);
    if (2 * searching_of(s) >= m_thread_count && searching_of(s) != 0) {
        return false;
    }
    // seq_cst: the searcher's loads of the queues come after this in the
    // total order (handshake).
    m_state.fetch_add(searching_one, std::memory_order_seq_cst);
    return true;
}

void thread_pool::impl::end_search() {
    // seq_cst: see the handshake at the top of the file.
    const std::uint64_t prev = m_state.fetch_sub(searching_one, std::memory_order_seq_cst);
    if (searching_of(prev) == 1) {
        notify_one_parked(); // the last searcher hands the search on
    }
}

void thread_pool::impl::wake_one_parked() {
    worker* target = nullptr;
    {
        std::lock_guard lock(m_sleep_mutex);
        // seq_cst: as in notify_one_parked(); the unparked count only
        // changes under this mutex, but the searching count does not.
        const std::uint64_t s2 = m_state.load(std::memory_order_seq_cst);
        if (searching_of(s2) != 0 || m_sleepers.empty()) {
            return;
        }
        // seq_cst: like every RMW of m_state.
        m_state.fetch_add(searching_one | unparked_one, std::memory_order_seq_cst);
        target = m_sleepers.back();
        m_sleepers.pop_back();
    }
    unpark(*target);
}

void thread_pool::impl::notify_many(std::size_t k) {
    // seq_cst: as in notify_one_parked.
    const std::uint64_t s = m_state.load(std::memory_order_seq_cst);
    if (unparked_of(s) == m_thread_count) {
        return;
    }
    std::lock_guard lock(m_sleep_mutex);
    // seq_cst: as in notify_one_parked.
    const std::uint64_t s2 = m_state.load(std::memory_order_seq_cst);
    const std::size_t want = std::min(k, m_thread_count);
    const std::size_t searching = static_cast<std::size_t>(searching_of(s2));
    if (want <= searching) {
        return;
    }
    const std::size_t wake = std::min(want - searching, m_sleepers.size());
    // seq_cst: like every RMW of m_state.
    m_state.fetch_add(wake * (searching_one | unparked_one), std::memory_order_seq_cst);
    for (std::size_t i = 0; i < wake; ++i) {
        unpark(*m_sleepers.back());
        m_sleepers.pop_back();
    }
}

void thread_pool::impl::unpark(worker& w) noexcept {
    // release: pairs with park()'s acquire load.
    w.m_wake.store(1, std::memory_order_release);
    w.m_wake.notify_one();
}

bool thread_pool::impl::park(worker& w, bool searching) {
    bool last_awake = false;
    {
        std::lock_guard lock(m_sleep_mutex);
        // seq_cst: the worker's half of the handshake; the re-check below
        // comes after it in the total order.
        const std::uint64_t prev = m_state.fetch_sub(
            unparked_one | (searching ? searching_one : 0), std::memory_order_seq_cst);
        last_awake = unparked_of(prev) == 1;
        m_sleepers.push_back(&w); // reserved: does not throw
    }
    if (has_pending_work()) {
        notify_one_parked(); // maybe ourselves
    } else if (last_awake && m_stopping.load(std::memory_order_seq_cst)) {
        // seq_cst above: a plain flag; shutdown() stores it before it takes
        // m_sleep_mutex, which we took after, so we cannot both miss it.
        try_close();
    }
    // acquire: pairs with unpark()'s release store.
    while (w.m_wake.load(std::memory_order_acquire) == 0) {
        w.m_wake.wait(0, std::memory_order_acquire);
    }
    // relaxed: only we reset it, and nobody sets it again before we are on
    // the sleeper list again, which m_sleep_mutex orders after this store.
    w.m_wake.store(0, std::memory_order_relaxed);
    // acquire: pairs with try_close()'s release store.
    return !m_closed.load(std::memory_order_acquire);
}

bool thread_pool::impl::has_pending_work() const noexcept {
    // seq_cst (here and in looks_empty()): the worker's re-check half of
    // the handshake.
    if (!m_ring.looks_empty() || m_overflow_size.load(std::memory_order_seq_cst) != 0) {
        return true;
    }
    for (const auto& w : m_workers) {
        if (!w->m_deque.looks_empty()) {
            return true;
        }
    }
    return false;
}

void thread_pool::impl::try_close() {
    std::vector<worker*> sleepers;
    {
        std::lock_guard overflow_lock(m_overflow_mutex); // no bulk post in between
        // relaxed: written under this mutex.
        if (m_closed.load(std::memory_order_relaxed) || !m_overflow.empty()) {
            return;
        }
        std::lock_guard sleep_lock(m_sleep_mutex);
        // seq_cst: like every access to m_state (the unparked count is
        // exact under this mutex).
        if (unparked_of(m_state.load(std::memory_order_seq_cst)) != 0) {
            return;
        }
        if (!m_ring.close_if_empty()) {
            return; // a post got in first; it wakes a worker
        }
        // release: pairs with park()'s acquire load.
        m_closed.store(true, std::memory_order_release);
        sleepers.swap(m_sleepers);
    }
    for (worker* w : sleepers) {
        unpark(*w);
    }
}

} // namespace weft
