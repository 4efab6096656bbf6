// thread_pool::impl, the state behind weft::thread_pool, and its member
// functions' declarations. Private to src/: thread_pool.cpp defines the worker
// loop, posting and the public functions (and explains the queues),
// pool_sleep.cpp sleeping, waking and closing (and explains the handshake).
#pragma once

#include <weft/thread_pool.hpp>

#include "pool_queues.hpp"

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace weft {

struct thread_pool::impl {
    struct alignas(pool_detail::cache_line) worker {
        pool_detail::work_stealing_deque m_deque;

        // Owner-only state (no other thread reads these).
        impl* m_pool = nullptr;
        std::size_t m_index = 0;
        std::coroutine_handle<> m_lifo;
        unsigned m_lifo_runs = 0;
        std::uint32_t m_tick = 0;
        std::uint64_t m_rng = 0;

        /// Set to 1 by whoever takes this worker off the sleeper list; the
        /// worker sleeps on it (std::atomic::wait: a futex on Linux).
        alignas(pool_detail::cache_line) std::atomic<std::uint32_t> m_wake{0};

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

    // The members defined in thread_pool.cpp are declared inline, as they
    // were when defined in the class: only thread_pool.cpp calls them, and
    // post() and the worker loop must keep them inlined (a call per handle
    // otherwise).

    inline impl(std::size_t n, std::string_view name);
    inline void start();

    // ---- the worker loop (thread_pool.cpp) ----------------------------------

    inline void run_worker(worker& w);
    /// Local work first (LIFO slot, own deque), then the injection queue.
    inline std::coroutine_handle<> next_task(worker& w);
    /// Spins for work to steal (if allowed to search), then sleeps; repeats
    /// after each wake-up. Null once the pool has closed.
    inline std::coroutine_handle<> find_work_or_sleep(worker& w);
    inline std::coroutine_handle<> search(worker& w);
    inline std::coroutine_handle<> steal_from_others(worker& w) noexcept;
    /// Takes a batch from the injection queues (ring first, then overflow):
    /// returns the first handle and moves the rest into w's deque, where the
    /// other workers can steal them.
    inline std::coroutine_handle<> take_remote(worker& w);
    inline std::size_t take_overflow(std::coroutine_handle<>* out, std::size_t max);

    // ---- posting (thread_pool.cpp) ------------------------------------------

    inline void post_local(worker& w, std::coroutine_handle<> h);
    /// Pushes h on w's deque; when that is full, moves its older half and h to
    /// the overflow queue. The caller notifies. On throw, nothing changed.
    inline void push_stealable(worker& w, std::coroutine_handle<> h);
    inline void post_remote(std::coroutine_handle<> h);
    /// Under m_overflow_mutex (which try_close() holds while it closes).
    inline void throw_if_closed() const;
    inline void post_bulk_remote(std::span<const std::coroutine_handle<>> hs);
    inline void post_bulk_local(worker& w, std::span<const std::coroutine_handle<>> hs);

    // ---- sleeping and waking (pool_sleep.cpp) -------------------------------

    bool try_begin_search() noexcept;
    void end_search();

    /// Wakes one sleeper, unless somebody searches or nobody sleeps. Called on
    /// every post, so the common case (nobody to wake) stays inline here.
    void notify_one_parked() {
        // seq_cst: the poster's half of the handshake; follows the seq_cst
        // store that published the work.
        const std::uint64_t s = m_state.load(std::memory_order_seq_cst);
        if (searching_of(s) != 0 || unparked_of(s) == m_thread_count) {
            return;
        }
        wake_one_parked();
    }

    /// notify_one_parked()'s slow path: wakes the last sleeper to park, which
    /// counts as a searcher from then on, unless somebody searches by now.
    void wake_one_parked();
    /// Wakes up to `k` sleepers at once (fewer when some already search).
    void notify_many(std::size_t k);
    static void unpark(worker& w) noexcept;
    /// Puts w to sleep until it is woken; false when the pool has closed.
    bool park(worker& w, bool searching);
    /// Whether any queue that other workers could take from holds work.
    bool has_pending_work() const noexcept;
    /// Closes the pool if shutdown was requested, all workers sleep and no
    /// queue holds work (a sleeping worker's deque and LIFO slot are empty:
    /// it emptied them itself and only it pushes there), then wakes everyone
    /// to exit.
    void try_close();

    // ---- data -------------------------------------------------------------------

    const std::size_t m_thread_count;
    const std::string m_name; ///< the workers' names are m_name-<index>
    std::vector<std::unique_ptr<worker>> m_workers; // fixed before any thread starts
    std::vector<std::thread> m_threads;             // guarded by m_shutdown_mutex after start
    std::atomic<int> m_start_gate{0};               // 0 wait, 1 run, 2 construction failed

    pool_detail::injection_ring m_ring{pool_detail::ring_capacity};

    alignas(pool_detail::cache_line) std::mutex m_overflow_mutex;
    pool_detail::handle_fifo m_overflow;                   // guarded by m_overflow_mutex
    std::atomic<bool> m_closed{false};                     // written under m_overflow_mutex
    alignas(pool_detail::cache_line) std::atomic<std::size_t> m_overflow_size{0}; // == m_overflow.size()

    alignas(pool_detail::cache_line) std::atomic<std::uint64_t> m_state{0}; // unparked << 32 | searching
    std::mutex m_sleep_mutex;
    std::vector<worker*> m_sleepers; // guarded by m_sleep_mutex

    std::atomic<bool> m_stopping{false};
    std::mutex m_shutdown_mutex;
};

} // namespace weft
