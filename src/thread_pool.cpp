// weft::thread_pool: work-stealing workers that resume coroutine handles.
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

#include <weft/thread_pool.hpp>

#include "pool_queues.hpp"

#include <weft/detail/trampoline.hpp>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>


namespace weft {

using namespace pool_detail;


struct thread_pool::impl {
    struct alignas(cache_line) worker {
        work_stealing_deque m_deque;

        // Owner-only state (no other thread reads these).
        impl* m_pool = nullptr;
        std::size_t m_index = 0;
        std::coroutine_handle<> m_lifo;
        unsigned m_lifo_runs = 0;
        std::uint32_t m_tick = 0;
        std::uint64_t m_rng = 0;

        /// Set to 1 by whoever takes this worker off the sleeper list; the
        /// worker sleeps on it (std::atomic::wait: a futex on Linux).
        alignas(cache_line) std::atomic<std::uint32_t> m_wake{0};

        std::size_t next_random() noexcept { // xorshift64
            m_rng ^= m_rng << 13;
            m_rng ^= m_rng >> 7;
            m_rng ^= m_rng << 17;
            return static_cast<std::size_t>(m_rng);
        }
    };

    static constexpr std::uint64_t searching_one = 1;
    static constexpr std::uint64_t unparked_one = std::uint64_t{1} << 32;
    static std::uint64_t searching_of(std::uint64_t s) noexcept { return s & 0xffffffffu; }
    static std::uint64_t unparked_of(std::uint64_t s) noexcept { return s >> 32; }

    /// The worker running on this thread, if any (of any pool).
    static constinit thread_local worker* tl_worker;

    explicit impl(std::size_t n) : m_thread_count(n) {
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

    void start() {
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

    void run_worker(worker& w) {
        int gate;
        // acquire: pairs with start()'s release store.
        while ((gate = m_start_gate.load(std::memory_order_acquire)) == 0) {
            m_start_gate.wait(0, std::memory_order_acquire);
        }
        if (gate != 1) {
            return; // the constructor failed to start a sibling
        }
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

    /// Local work first (LIFO slot, own deque), then the injection queue.
    std::coroutine_handle<> next_task(worker& w) {
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

    /// Spins for work to steal (if allowed to search), then sleeps; repeats
    /// after each wake-up. Null once the pool has closed.
    std::coroutine_handle<> find_work_or_sleep(worker& w) {
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

    std::coroutine_handle<> search(worker& w) {
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

    std::coroutine_handle<> steal_from_others(worker& w) noexcept {
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

    /// Takes a batch from the injection queues (ring first, then overflow):
    /// returns the first handle and moves the rest into w's deque, where the
    /// other workers can steal them.
    std::coroutine_handle<> take_remote(worker& w) {
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

    std::size_t take_overflow(std::coroutine_handle<>* out, std::size_t max) {
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
        // seq_cst: every store to m_overflow_size is (see post_overflow).
        m_overflow_size.store(size - n, std::memory_order_seq_cst);
        return n;
    }

    // ---- posting ------------------------------------------------------------

    void post_local(worker& w, std::coroutine_handle<> h) {
        if (!w.m_lifo) {
            w.m_lifo = h; // not stealable: nobody to wake
            return;
        }
        push_stealable(w, w.m_lifo); // on throw, nothing changed
        w.m_lifo = h;
        notify_one_parked();
    }

    /// Pushes h on w's deque; when that is full, moves its older half and h to
    /// the overflow queue. The caller notifies. On throw, nothing changed.
    void push_stealable(worker& w, std::coroutine_handle<> h) {
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
            // seq_cst: publication half of the handshake (see the top).
            m_overflow_size.store(m_overflow.size(), std::memory_order_seq_cst);
            return;
        }
    }

    void post_remote(std::coroutine_handle<> h) {
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
            // seq_cst: publication half of the handshake (see the top).
            m_overflow_size.store(m_overflow.size(), std::memory_order_seq_cst);
        }
        notify_one_parked();
    }

    /// Under m_overflow_mutex (which try_close() holds while it closes).
    void throw_if_closed() const {
        // relaxed: written under m_overflow_mutex, which we hold.
        if (m_closed.load(std::memory_order_relaxed)) {
            throw std::logic_error("weft::thread_pool: post() after shutdown");
        }
    }

    void post_bulk_remote(std::span<const std::coroutine_handle<>> hs) {
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
                // seq_cst: publication half of the handshake (see the top).
                m_overflow_size.store(m_overflow.size(), std::memory_order_seq_cst);
            }
        }
        notify_many(hs.size());
    }

    void post_bulk_local(worker& w, std::span<const std::coroutine_handle<>> hs) {
        const std::size_t local = std::min(hs.size(), w.m_deque.free_slots());
        if (local < hs.size()) { // the part that does not fit goes to the overflow queue
            std::lock_guard lock(m_overflow_mutex);
            m_overflow.reserve(m_overflow.size() + (hs.size() - local)); // the only throw
            for (std::size_t i = local; i < hs.size(); ++i) {
                assert(hs[i] && "posting a null coroutine handle");
                m_overflow.push(hs[i]);
            }
            // seq_cst: publication half of the handshake (see the top).
            m_overflow_size.store(m_overflow.size(), std::memory_order_seq_cst);
        }
        w.m_deque.push_all(hs.data(), local); // room checked above
        notify_many(hs.size());
    }

    // ---- sleeping and waking --------------------------------------------------

    bool try_begin_search() noexcept {
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

    void end_search() {
        // seq_cst: see the handshake at the top of the file.
        const std::uint64_t prev = m_state.fetch_sub(searching_one, std::memory_order_seq_cst);
        if (searching_of(prev) == 1) {
            notify_one_parked(); // the last searcher hands the search on
        }
    }

    /// Wakes one sleeper, unless somebody searches or nobody sleeps.
    void notify_one_parked() {
        // seq_cst: the poster's half of the handshake; follows the seq_cst
        // store that published the work.
        const std::uint64_t s = m_state.load(std::memory_order_seq_cst);
        if (searching_of(s) != 0 || unparked_of(s) == m_thread_count) {
            return;
        }
        worker* target = nullptr;
        {
            std::lock_guard lock(m_sleep_mutex);
            // seq_cst: as above; the unparked count only changes under this
            // mutex, but the searching count does not.
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

    /// Wakes up to `k` sleepers at once (fewer when some already search).
    void notify_many(std::size_t k) {
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

    static void unpark(worker& w) noexcept {
        // release: pairs with park()'s acquire load.
        w.m_wake.store(1, std::memory_order_release);
        w.m_wake.notify_one();
    }

    /// Puts w to sleep until it is woken; false when the pool has closed.
    bool park(worker& w, bool searching) {
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

    /// Whether any queue that other workers could take from holds work.
    bool has_pending_work() const noexcept {
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

    /// Closes the pool if shutdown was requested, all workers sleep and no
    /// queue holds work (a sleeping worker's deque and LIFO slot are empty:
    /// it emptied them itself and only it pushes there), then wakes everyone
    /// to exit.
    void try_close() {
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

    // ---- data -------------------------------------------------------------------

    const std::size_t m_thread_count;
    std::vector<std::unique_ptr<worker>> m_workers; // fixed before any thread starts
    std::vector<std::thread> m_threads;             // guarded by m_shutdown_mutex after start
    std::atomic<int> m_start_gate{0};               // 0 wait, 1 run, 2 construction failed

    injection_ring m_ring{ring_capacity};

    alignas(cache_line) std::mutex m_overflow_mutex;
    handle_fifo m_overflow;                                // guarded by m_overflow_mutex
    std::atomic<bool> m_closed{false};                     // written under m_overflow_mutex
    alignas(cache_line) std::atomic<std::size_t> m_overflow_size{0}; // == m_overflow.size()

    alignas(cache_line) std::atomic<std::uint64_t> m_state{0}; // unparked << 32 | searching
    std::mutex m_sleep_mutex;
    std::vector<worker*> m_sleepers; // guarded by m_sleep_mutex

    std::atomic<bool> m_stopping{false};
    std::mutex m_shutdown_mutex;
};

constinit thread_local thread_pool::impl::worker* thread_pool::impl::tl_worker = nullptr;

thread_pool::thread_pool(std::size_t thread_count)
    : m_impl(std::make_unique<impl>(thread_count == 0 ? 1 : thread_count)) {
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
