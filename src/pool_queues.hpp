// The queues behind weft::thread_pool: a Chase–Lev work-stealing deque per
// worker, the lock-free injection ring for foreign posts, and the FIFO behind
// it. Private to src/; see thread_pool.cpp for how they fit together.
#pragma once

#include <weft/detail/trampoline.hpp>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64) || defined(_M_IX86)
#include <immintrin.h>
#define WEFT_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define WEFT_CPU_RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#define WEFT_CPU_RELAX() ((void)0)
#endif

namespace weft::pool_detail {


constexpr std::size_t cache_line = 64;

/// Consecutive runs from the LIFO slot before the deque gets a turn.
constexpr unsigned max_lifo_runs = 3;
/// Every this many handles, a worker looks at the injection queue and at the
/// oldest end of its deque before anything else (prime, as in tokio).
constexpr std::uint32_t fairness_interval = 61;
/// Most handles a worker takes from the injection queues at once.
constexpr std::size_t remote_batch_max = 128;
/// Cells of the lock-free injection ring (16 bytes each).
constexpr std::size_t ring_capacity = 8192;
/// How long a searching worker spins before it goes to sleep.
constexpr std::chrono::microseconds spin_budget{50};

/// A fixed-capacity Chase–Lev work-stealing deque of coroutine handles
/// (Chase & Lev 2005, with the memory orders of Lê et al. 2013, written
/// without stand-alone fences so that ThreadSanitizer understands it: the two
/// store→load fences become seq_cst accesses). The owner pushes and pops at
/// the bottom; any thread steals from the top. Slots are atomics because a
/// thief may read a slot that the owner is overwriting; such a thief's CAS
/// then fails and it drops the value.
class work_stealing_deque {
public:
    static constexpr std::int64_t capacity = 1024;
    static_assert((capacity & (capacity - 1)) == 0, "capacity must be a power of two");

    /// Owner only. False when full.
    bool push(std::coroutine_handle<> h) noexcept {
        // relaxed: only the owner writes m_bottom.
        const std::int64_t b = m_bottom.load(std::memory_order_relaxed);
        // acquire: pairs with the thieves' CAS on m_top, so their read of a slot
        // happens before we overwrite it.
        const std::int64_t t = m_top.load(std::memory_order_acquire);
        if (b - t >= capacity) {
            return false;
        }
        // relaxed: published by the store to m_bottom below.
        slot(b).store(h.address(), std::memory_order_relaxed);
        // seq_cst: release, so a thief that sees the new bottom also sees the
        // slot and the coroutine frame; and part of the sleeper handshake (the
        // caller's seq_cst load of the pool state cannot move before it).
        m_bottom.store(b + 1, std::memory_order_seq_cst);
        return true;
    }

    /// Owner only: pushes all of `hs`, which must fit (see free_slots()), with
    /// a single store of m_bottom.
    void push_all(const std::coroutine_handle<>* hs, std::size_t n) noexcept {
        // relaxed: only the owner writes m_bottom.
        const std::int64_t b = m_bottom.load(std::memory_order_relaxed);
        for (std::size_t i = 0; i < n; ++i) {
            // relaxed: published by the store to m_bottom below.
            slot(b + static_cast<std::int64_t>(i)).store(hs[i].address(), std::memory_order_relaxed);
        }
        // seq_cst: as in push().
        m_bottom.store(b + static_cast<std::int64_t>(n), std::memory_order_seq_cst);
    }

    /// Owner only: the newest handle, or null when empty.
    std::coroutine_handle<> pop() noexcept {
        // relaxed: only the owner writes m_bottom.
        const std::int64_t b = m_bottom.load(std::memory_order_relaxed) - 1;
        // seq_cst store, then seq_cst load of m_top: the Chase–Lev store→load
        // fence. A thief loads m_top then m_bottom, both seq_cst; so either it
        // sees the lowered bottom, or we see its raised top, and the last
        // element is always decided by the CAS below.
        m_bottom.store(b, std::memory_order_seq_cst);
        std::int64_t t = m_top.load(std::memory_order_seq_cst);
        if (t > b) {
            // Empty: restore. release: every bottom store is a release, so a
            // thief's acquire load of any bottom value sees the slot writes
            // that came before it.
            m_bottom.store(b + 1, std::memory_order_release);
            return {};
        }
        // relaxed: we wrote this slot ourselves.
        void* p = slot(b).load(std::memory_order_relaxed);
        if (t < b) {
            return std::coroutine_handle<>::from_address(p); // thieves stop before b
        }
        // The last element: race the thieves for it. seq_cst: totally ordered
        // with the thieves' CAS; relaxed on failure: we only learn we lost.
        const bool won = m_top.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                                       std::memory_order_relaxed);
        // release: see above.
        m_bottom.store(b + 1, std::memory_order_release);
        return won ? std::coroutine_handle<>::from_address(p) : std::coroutine_handle<>{};
    }

    enum class steal_result { taken, empty, lost_race };

    /// Any thread: the oldest handle.
    steal_result steal(std::coroutine_handle<>& out) noexcept {
        // seq_cst (both loads): top must be read before bottom, and both are
        // ordered against the owner's seq_cst bottom store and top load in
        // pop(). The load of m_bottom is also the acquire that pairs with the
        // owner's release stores of it, making the slot (and the coroutine
        // frame it points to) visible.
        std::int64_t t = m_top.load(std::memory_order_seq_cst);
        const std::int64_t b = m_bottom.load(std::memory_order_seq_cst);
        if (t >= b) {
            return steal_result::empty;
        }
        // relaxed: made visible by the acquire above; if the owner reuses the
        // slot meanwhile, m_top has moved and the CAS fails.
        void* p = slot(t).load(std::memory_order_relaxed);
        // seq_cst on success: claims element t, and (release) orders our read
        // of its slot before the owner's next write to it. relaxed on failure:
        // nothing was read that we keep.
        if (!m_top.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                           std::memory_order_relaxed)) {
            return steal_result::lost_race;
        }
        out = std::coroutine_handle<>::from_address(p);
        return steal_result::taken;
    }

    /// Any thread: the oldest handle, or null when empty (retries lost races;
    /// each lost race means another thread made progress).
    std::coroutine_handle<> steal() noexcept {
        std::coroutine_handle<> h;
        steal_result r;
        while ((r = steal(h)) == steal_result::lost_race) {
        }
        return r == steal_result::taken ? h : std::coroutine_handle<>{};
    }

    /// Owner only: moves up to `n` of the oldest handles to `out` with a single
    /// CAS; returns how many (0 when a thief got in the way). The owner is not
    /// popping meanwhile, and thieves only ever advance m_top by CAS, so the
    /// slots read here cannot change before a successful CAS.
    std::size_t take_oldest(std::coroutine_handle<>* out, std::size_t n) noexcept {
        // acquire: as in push() (the slots below were last read by thieves).
        std::int64_t t = m_top.load(std::memory_order_acquire);
        // relaxed: only the owner writes m_bottom.
        const std::int64_t b = m_bottom.load(std::memory_order_relaxed);
        const std::int64_t count = std::min<std::int64_t>(static_cast<std::int64_t>(n), b - t);
        if (count <= 0) {
            return 0;
        }
        for (std::int64_t i = 0; i < count; ++i) {
            // relaxed: the owner wrote these slots.
            out[i] = std::coroutine_handle<>::from_address(
                slot(t + i).load(std::memory_order_relaxed));
        }
        // seq_cst: like a thief's CAS. relaxed on failure: nothing taken.
        if (!m_top.compare_exchange_strong(t, t + count, std::memory_order_seq_cst,
                                           std::memory_order_relaxed)) {
            return 0;
        }
        return static_cast<std::size_t>(count);
    }

    /// Owner only: how many more handles push() accepts at least.
    std::size_t free_slots() const noexcept {
        // relaxed: own variable. acquire: as in push().
        const std::int64_t b = m_bottom.load(std::memory_order_relaxed);
        const std::int64_t t = m_top.load(std::memory_order_acquire);
        return static_cast<std::size_t>(capacity - (b - t));
    }

    /// Any thread: whether the deque looks empty.
    bool looks_empty() const noexcept {
        // seq_cst: the sleeper re-check must not miss a push whose poster did
        // not see this worker asleep (see the handshake at the top of the file).
        const std::int64_t t = m_top.load(std::memory_order_seq_cst);
        return t >= m_bottom.load(std::memory_order_seq_cst);
    }

private:
    std::atomic<void*>& slot(std::int64_t i) noexcept {
        return m_slots[static_cast<std::size_t>(i & (capacity - 1))];
    }

    alignas(cache_line) std::atomic<std::int64_t> m_top{0};
    alignas(cache_line) std::atomic<std::int64_t> m_bottom{0};
    alignas(cache_line) std::atomic<void*> m_slots[capacity] = {};
};

/// The lock-free part of the injection queue: Dmitry Vyukov's bounded MPMC
/// ring, whose enqueue index also carries the pool's "closed" bit. Each cell
/// has a sequence number: `pos` when free for the producer of lap position
/// `pos`, `pos + 1` once that producer has published its handle, and
/// `pos + capacity` once a consumer has taken it.
class injection_ring {
public:
    static constexpr std::uint64_t closed_bit = std::uint64_t{1} << 63;

    explicit injection_ring(std::size_t capacity)
        : m_mask(capacity - 1), m_cells(std::make_unique<cell[]>(capacity)) {
        assert((capacity & (capacity - 1)) == 0);
        for (std::size_t i = 0; i < capacity; ++i) {
            // relaxed: the pool's threads start later (std::thread publishes).
            m_cells[i].m_seq.store(i, std::memory_order_relaxed);
        }
    }

    enum class push_result { pushed, full, closed };

    push_result push(std::coroutine_handle<> h) noexcept {
        // relaxed: a first guess, checked by the CAS.
        std::uint64_t pos = m_enqueue.load(std::memory_order_relaxed);
        for (;;) {
            if ((pos & closed_bit) != 0) {
                return push_result::closed;
            }
            cell& c = m_cells[pos & m_mask];
            // acquire: pairs with the consumer's release store that freed the
            // cell, so that its read of the old handle precedes our write.
            const std::uint64_t seq = c.m_seq.load(std::memory_order_acquire);
            const auto diff = static_cast<std::int64_t>(seq - pos);
            if (diff == 0) {
                // seq_cst: claims the cell, and is the publication half of the
                // sleeper handshake (the caller then loads the pool state).
                // relaxed on failure: pos is reloaded and checked again.
                if (m_enqueue.compare_exchange_weak(pos, pos + 1, std::memory_order_seq_cst,
                                                    std::memory_order_relaxed)) {
                    c.m_handle = h;
                    // release: publishes the handle (and the coroutine frame)
                    // to the consumer's acquire load.
                    c.m_seq.store(pos + 1, std::memory_order_release);
                    return push_result::pushed;
                }
            } else if (diff < 0) {
                return push_result::full; // last lap's handle is still there
            } else {
                // relaxed: as above.
                pos = m_enqueue.load(std::memory_order_relaxed); // another producer won
            }
        }
    }

    /// Takes up to `max` of the oldest published handles (about a `share`-th
    /// of those that are there, at least one); returns how many.
    std::size_t pop_batch(std::coroutine_handle<>* out, std::size_t max,
                          std::size_t share) noexcept {
        // relaxed: a first guess, checked by the CAS.
        std::uint64_t pos = m_dequeue.load(std::memory_order_relaxed);
        for (;;) {
            // acquire (every m_seq load here): pairs with the producers'
            // release stores, making the handles visible.
            const std::uint64_t seq = m_cells[pos & m_mask].m_seq.load(std::memory_order_acquire);
            const auto diff = static_cast<std::int64_t>(seq - (pos + 1));
            if (diff < 0) {
                return 0; // empty, or its producer has not published yet
            }
            if (diff > 0) {
                // relaxed: as above.
                pos = m_dequeue.load(std::memory_order_relaxed); // pos is stale
                continue;
            }
            std::size_t n = 1;
            while (n < max && m_cells[(pos + n) & m_mask].m_seq.load(std::memory_order_acquire) ==
                                  pos + n + 1) {
                ++n;
            }
            n = std::min(n, n / share + 1);
            // relaxed (both): the acquire loads above made the handles visible;
            // the CAS only decides who owns cells [pos, pos + n), which nobody
            // else can change meanwhile (they are published and unclaimed).
            if (m_dequeue.compare_exchange_weak(pos, pos + n, std::memory_order_relaxed,
                                                std::memory_order_relaxed)) {
                for (std::size_t i = 0; i < n; ++i) {
                    cell& c = m_cells[(pos + i) & m_mask];
                    out[i] = c.m_handle;
                    // release: our read of the handle happens before the next
                    // lap's producer writes the cell (its acquire load).
                    c.m_seq.store(pos + i + m_mask + 1, std::memory_order_release);
                }
                return n;
            }
        }
    }

    /// Whether nothing is queued or claimed. seq_cst: the re-check half of the
    /// sleeper handshake (the producers' CAS on m_enqueue is the other half).
    /// Reading the enqueue index first can only make the answer "not empty"
    /// wrongly when consumers overtook it meanwhile, hence the `>=`.
    bool looks_empty() const noexcept {
        const std::uint64_t e = m_enqueue.load(std::memory_order_seq_cst) & ~closed_bit;
        return m_dequeue.load(std::memory_order_seq_cst) >= e;
    }

    /// Sets the closed bit if nothing is queued or claimed; false otherwise
    /// (then a producer got in first). Only called while no consumer runs.
    bool close_if_empty() noexcept {
        // seq_cst: orders the close with the producers' CAS on m_enqueue (one
        // of the two fails) and with the workers' re-checks.
        const std::uint64_t d = m_dequeue.load(std::memory_order_seq_cst);
        std::uint64_t expected = d;
        return m_enqueue.compare_exchange_strong(expected, d | closed_bit,
                                                 std::memory_order_seq_cst,
                                                 std::memory_order_relaxed);
    }

private:
    struct cell {
        std::atomic<std::uint64_t> m_seq{0};
        std::coroutine_handle<> m_handle;
    };

    const std::uint64_t m_mask;
    std::unique_ptr<cell[]> m_cells;
    alignas(cache_line) std::atomic<std::uint64_t> m_enqueue{0}; // written by producers
    alignas(cache_line) std::atomic<std::uint64_t> m_dequeue{0}; // written by consumers
};

/// The overflow queue's storage: a FIFO ring of handles that grows on
/// reserve() (the only call that can throw) and frees a large buffer once it
/// is empty again. Not thread-safe.
class handle_fifo {
public:
    [[nodiscard]] std::size_t size() const noexcept { return m_size; }
    [[nodiscard]] bool empty() const noexcept { return m_size == 0; }

    void reserve(std::size_t n) {
        if (n <= m_capacity) {
            return;
        }
        std::size_t capacity = m_capacity == 0 ? 64 : m_capacity;
        while (capacity < n) {
            capacity *= 2;
        }
        auto data = std::make_unique<std::coroutine_handle<>[]>(capacity);
        for (std::size_t i = 0; i < m_size; ++i) {
            data[i] = m_data[(m_head + i) & (m_capacity - 1)];
        }
        m_data = std::move(data);
        m_capacity = capacity;
        m_head = 0;
    }

    void push(std::coroutine_handle<> h) noexcept {
        assert(m_size < m_capacity && "handle_fifo::push without reserve");
        m_data[(m_head + m_size) & (m_capacity - 1)] = h;
        ++m_size;
    }

    std::coroutine_handle<> pop() noexcept {
        const std::coroutine_handle<> h = m_data[m_head];
        m_head = (m_head + 1) & (m_capacity - 1);
        if (--m_size == 0 && m_capacity > 4096) {
            m_data.reset(); // do not keep a burst's memory forever
            m_capacity = 0;
            m_head = 0;
        }
        return h;
    }

private:
    std::unique_ptr<std::coroutine_handle<>[]> m_data;
    std::size_t m_capacity = 0;
    std::size_t m_head = 0;
    std::size_t m_size = 0;
};


} // namespace weft::pool_detail
