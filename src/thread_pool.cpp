// weft::thread_pool: work-stealing workers that resume coroutine handles.
// Here: the worker loop, posting and the public functions; sleeping, waking
// and closing are in pool_sleep.cpp, thread_pool::impl in pool_impl.hpp.
//
// Layout of the machinery (see include/weft/thread_pool.hpp for the contract):
//
// * Per worker: a fixed-capacity Chase–Lev deque (the owner pushes and pops at
//   the bottom, thieves take from the top with one CAS), and a one-handle LIFO
//   slot that only the owner touches. When the deque is full the owner moves
//   the older half of it to the overflow queue with one CAS and one lock (the
//   same trade tokio makes): no growable buffers, hence no memory reclamation
//   problem, and 8 KiB per worker.
// * Injection (handles posted from threads that are not workers): a bounded
//   lock-free MPMC ring (Vyukov's) of 8192 handles. A post is one CAS on the
//   ring's enqueue index (a cache line that only producers write) and a release
//   store into the cell; workers claim a run of published cells with one CAS
//   and move all but the first into their deque, where others can steal them.
//   The enqueue index also carries the pool's "closed" bit, so that closing
//   and posting decide atomically. When the ring is full (or the overflow
//   queue is not empty, to keep rough FIFO order), posts go to an unbounded
//   mutex-protected overflow queue instead.
// * Workers look for work in this order: LIFO slot (at most `max_lifo_runs`
//   in a row), own deque (newest first), injection (ring, then overflow), then
//   steal from the others starting at a random victim. Every
//   `fairness_interval` handles a worker looks at the injection queues and at
//   the oldest end of its own deque first, so that neither foreign submissions
//   nor old local work can starve.
//
// Whoever makes work visible to other workers wakes a sleeper if nobody
// searches for work (notify_one_parked(): see pool_sleep.cpp for the scheme
// and why no work is stranded).

#include "pool_impl.hpp"

#include <weft/detail/trampoline.hpp>
#include <weft/thread_name.hpp>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>


namespace weft {

using namespace pool_detail;

thread_pool::impl::impl(std::size_t n, std::string_view name) : m_thread_count(n), m_name(name) {
    m_workers.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        auto w = std::make_unique<worker>();
        w->m_pool = this;
        w->m_index = i;
        w->m_rng = 0x9e3779b97f4a7c15ull * (i + 1);
        m_workers.push_back(std::move(w));
    }
    m_sleepers.reserve(n); // push_back under m_sleep_mutex never allocates
    // relaxed: no thread runs yet (std::thread's start publishes it).
    m_state.store(unparked_one * n, std::memory_order_relaxed);
}

void thread_pool::impl::start() {
    m_threads.reserve(m_thread_count);
    try {
        for (auto& w : m_workers) {
            m_threads.emplace_back([this, pw = w.get()] { run_worker(*pw); });
        }
    } catch (...) {
        // release: pairs with the workers' acquire load of the gate.
        m_start_gate.store(2, std::memory_order_release);
        m_start_gate.notify_all();
        for (auto& t : m_threads) {
            t.join();
        }
        m_threads.clear();
        throw;
    }
    // release: see above (nothing left to publish, but cheap and uniform).
    m_start_gate.store(1, std::memory_order_release);
    m_start_gate.notify_all();
}

// ---- the worker loop --------------------------------------------------

void thread_pool::impl::run_worker(worker& w) {
    int gate;
    // acquire: pairs with start()'s release store.
    while ((gate = m_start_gate.load(std::memory_order_acquire)) == 0) {
        m_start_gate.wait(0, std::memory_order_acquire);
    }
    if (gate != 1) {
        return; // the constructor failed to start a sibling
    }
    set_current_thread_name(m_name + '-' + std::to_string(w.m_index));
    tl_worker = &w;
    for (;;) {
        std::coroutine_handle<> h = next_task(w);
        if (!h) {
            h = find_work_or_sleep(w);
            if (!h) {
                break; // closed
            }
        }
        detail::resume(h); // no trampoline runs here: this becomes it
    }
    tl_worker = nullptr;
}

std::coroutine_handle<> thread_pool::impl::next_task(worker& w) {
    if (++w.m_tick % fairness_interval == 0) {
        if (auto h = take_remote(w)) {
            w.m_lifo_runs = 0;
            return h;
        }
        if (auto h = w.m_deque.steal()) { // oldest local handle
            w.m_lifo_runs = 0;
            return h;
        }
    }
    if (w.m_lifo) {
        if (w.m_lifo_runs < max_lifo_runs) {
            ++w.m_lifo_runs;
            return std::exchange(w.m_lifo, {});
        }
        // A long chain of LIFO hand-offs: make the slot's handle stealable
        // and give the oldest local handle a turn.
        w.m_lifo_runs = 0;
        try {
            push_stealable(w, w.m_lifo);
        } catch (...) { // out of memory for the overflow: just run it
            return std::exchange(w.m_lifo, {});
        }
        w.m_lifo = {};
        notify_one_parked();
        return w.m_deque.steal();
    }
    w.m_lifo_runs = 0;
    if (auto h = w.m_deque.pop()) {
        return h;
    }
    return take_remote(w);
}

std::coroutine_handle<> thread_pool::impl::find_work_or_sleep(worker& w) {
    bool searching = try_begin_search();
    for (;;) {
        if (searching) {
            if (auto h = search(w)) {
                end_search();
                return h;
            }
        }
        if (!park(w, searching)) {
            return {};
        }
        searching = true; // the waker counted us as a searcher
    }
}

std::coroutine_handle<> thread_pool::impl::search(worker& w) {
    const auto start = std::chrono::steady_clock::now();
    for (unsigned round = 0;; ++round) {
        if (auto h = take_remote(w)) {
            return h;
        }
        if (auto h = steal_from_others(w)) {
            return h;
        }
        if (std::chrono::steady_clock::now() - start > spin_budget) {
            return {};
        }
        for (unsigned i = 0, n = 1u << std::min(round, 6u); i < n; ++i) {
            WEFT_CPU_RELAX();
        }
    }
}

std::coroutine_handle<> thread_pool::impl::steal_from_others(worker& w) noexcept {
    const std::size_t n = m_thread_count;
    if (n < 2) {
        return {};
    }
    std::size_t v = w.next_random() % n;
    for (std::size_t i = 0; i < n; ++i, v = (v + 1 == n) ? 0 : v + 1) {
        if (v == w.m_index) {
            continue;
        }
        if (auto h = m_workers[v]->m_deque.steal()) {
            return h;
        }
    }
    return {};
}

std::coroutine_handle<> thread_pool::impl::take_remote(worker& w) {
    std::coroutine_handle<> batch[remote_batch_max];
    const std::size_t max = std::min(remote_batch_max, w.m_deque.free_slots() + 1);
    std::size_t n = m_ring.pop_batch(batch, max, m_thread_count);
    if (n == 0) {
        n = take_overflow(batch, max);
        if (n == 0) {
            return {};
        }
    }
    if (n > 1) {
        w.m_deque.push_all(batch + 1, n - 1); // room checked above
        notify_one_parked();
    }
    return batch[0];
}

std::size_t thread_pool::impl::take_overflow(std::coroutine_handle<>* out, std::size_t max) {
    // seq_cst: when searching or re-checking, this load is the worker's
    // half of the handshake; otherwise a cheap hint (a plain load on x86).
    // The mutex gives the actual synchronisation.
    if (m_overflow_size.load(std::memory_order_seq_cst) == 0) {
        return 0;
    }
    std::lock_guard lock(m_overflow_mutex);
    const std::size_t size = m_overflow.size();
    const std::size_t n = std::min({size, size / m_thread_count + 1, max});
    for (std::size_t i = 0; i < n; ++i) {
        out[i] = m_overflow.pop();
    }
    // seq_cst: every store to m_overflow_size is (push_stealable, post_remote,
    // post_bulk_remote: the publication half of the handshake in pool_sleep.cpp).
    m_overflow_size.store(size - n, std::memory_order_seq_cst);
    return n;
}

// ---- posting ------------------------------------------------------------

void thread_pool::impl::post_local(worker& w, std::coroutine_handle<> h) {
    if (!w.m_lifo) {
        w.m_lifo = h; // not stealable: nobody to wake
        return;
    }
    push_stealable(w, w.m_lifo); // on throw, nothing changed
    w.m_lifo = h;
    notify_one_parked();
}

void thread_pool::impl::push_stealable(worker& w, std::coroutine_handle<> h) {
    constexpr std::size_t half = work_stealing_deque::capacity / 2;
    while (!w.m_deque.push(h)) {
        std::lock_guard lock(m_overflow_mutex);
        m_overflow.reserve(m_overflow.size() + half + 1); // the only throw
        std::coroutine_handle<> moved[half];
        const std::size_t n = w.m_deque.take_oldest(moved, half);
        if (n == 0) {
            continue; // a thief got in the way, so there is room now
        }
        for (std::size_t i = 0; i < n; ++i) {
            m_overflow.push(moved[i]);
        }
        m_overflow.push(h);
        // seq_cst: publication half of the handshake (see pool_sleep.cpp).
        m_overflow_size.store(m_overflow.size(), std::memory_order_seq_cst);
        return;
    }
}

void thread_pool::impl::post_remote(std::coroutine_handle<> h) {
    // relaxed: only a hint. While the overflow queue holds handles, posts
    // join it rather than overtake it through the ring.
    if (m_overflow_size.load(std::memory_order_relaxed) == 0) {
        switch (m_ring.push(h)) {
        case injection_ring::push_result::pushed:
            notify_one_parked();
            return;
        case injection_ring::push_result::closed:
            throw std::logic_error("weft::thread_pool: post() after shutdown");
        case injection_ring::push_result::full:
            break;
        }
    }
    {
        std::lock_guard lock(m_overflow_mutex);
        throw_if_closed();
        m_overflow.reserve(m_overflow.size() + 1);
        m_overflow.push(h);
        // seq_cst: publication half of the handshake (see pool_sleep.cpp).
        m_overflow_size.store(m_overflow.size(), std::memory_order_seq_cst);
    }
    notify_one_parked();
}

void thread_pool::impl::throw_if_closed() const {
    // relaxed: written under m_overflow_mutex, which we hold.
    if (m_closed.load(std::memory_order_relaxed)) {
        throw std::logic_error("weft::thread_pool: post() after shutdown");
    }
}

void thread_pool::impl::post_bulk_remote(std::span<const std::coroutine_handle<>> hs) {
    {
        // Held throughout, so that the pool cannot close half-way: all or
        // nothing is posted.
        std::lock_guard lock(m_overflow_mutex);
        throw_if_closed();
        m_overflow.reserve(m_overflow.size() + hs.size()); // the only throw
        std::size_t i = 0;
        // relaxed: written under the mutex we hold.
        if (m_overflow_size.load(std::memory_order_relaxed) == 0) {
            for (; i < hs.size(); ++i) {
                assert(hs[i] && "posting a null coroutine handle");
                // Cannot report closed: closing takes the mutex we hold.
                if (m_ring.push(hs[i]) != injection_ring::push_result::pushed) {
                    break;
                }
            }
        }
        if (i < hs.size()) {
            for (; i < hs.size(); ++i) {
                assert(hs[i] && "posting a null coroutine handle");
                m_overflow.push(hs[i]);
            }
            // seq_cst: publication half of the handshake (see pool_sleep.cpp).
            m_overflow_size.store(m_overflow.size(), std::memory_order_seq_cst);
        }
    }
    notify_many(hs.size());
}

void thread_pool::impl::post_bulk_local(worker& w, std::span<const std::coroutine_handle<>> hs) {
    const std::size_t local = std::min(hs.size(), w.m_deque.free_slots());
    if (local < hs.size()) { // the part that does not fit goes to the overflow queue
        std::lock_guard lock(m_overflow_mutex);
        m_overflow.reserve(m_overflow.size() + (hs.size() - local)); // the only throw
        for (std::size_t i = local; i < hs.size(); ++i) {
            assert(hs[i] && "posting a null coroutine handle");
            m_overflow.push(hs[i]);
        }
        // seq_cst: publication half of the handshake (see pool_sleep.cpp).
        m_overflow_size.store(m_overflow.size(), std::memory_order_seq_cst);
    }
    w.m_deque.push_all(hs.data(), local); // room checked above
    notify_many(hs.size());
}

// ---- the public functions --------------------------------------------------

constinit thread_local thread_pool::impl::worker* thread_pool::impl::tl_worker = nullptr;

thread_pool::thread_pool(std::size_t thread_count, std::string_view name)
    : m_impl(std::make_unique<impl>(thread_count == 0 ? 1 : thread_count, name)) {
    m_impl->start();
}

thread_pool::~thread_pool() { shutdown(); }

void thread_pool::post(std::coroutine_handle<> h) {
    assert(h && "posting a null coroutine handle");
    impl::worker* w = impl::tl_worker;
    if (w != nullptr && w->m_pool == m_impl.get()) {
        m_impl->post_local(*w, h);
    } else {
        m_impl->post_remote(h);
    }
}

void thread_pool::post_bulk(std::span<const std::coroutine_handle<>> hs) {
    if (hs.empty()) {
        return;
    }
    impl::worker* w = impl::tl_worker;
    if (w != nullptr && w->m_pool == m_impl.get()) {
        m_impl->post_bulk_local(*w, hs);
    } else {
        m_impl->post_bulk_remote(hs);
    }
}

std::size_t thread_pool::thread_count() const noexcept { return m_impl->m_thread_count; }

bool thread_pool::running_in_this_thread() const noexcept {
    const impl::worker* w = impl::tl_worker;
    return w != nullptr && w->m_pool == m_impl.get();
}

void thread_pool::shutdown() {
    if (running_in_this_thread()) {
        throw std::logic_error(
            "weft::thread_pool::shutdown() called from one of the pool's own threads");
    }
    impl& p = *m_impl;
    std::lock_guard lock(p.m_shutdown_mutex);
    if (p.m_threads.empty()) {
        return; // already shut down
    }
    // seq_cst: read by the last worker to fall asleep (see park()).
    p.m_stopping.store(true, std::memory_order_seq_cst);
    p.try_close(); // when every worker already sleeps, nobody else will
    for (auto& t : p.m_threads) {
        t.join();
    }
    p.m_threads.clear();
}

} // namespace weft
