#include "kernels/parallel.hpp"

#include <algorithm>
#include <chrono>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace weft::serve::kernels {

namespace {

void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#else
    std::this_thread::yield();
#endif
}

/// How long a helper waits for the next job before parking.
constexpr auto spin_budget = std::chrono::microseconds(100);

/// A coroutine type with no result that never starts by itself and stays
/// suspended at its end, so the team owns and destroys its frame.
struct parked_coroutine {
    struct promise_type {
        parked_coroutine get_return_object() noexcept {
            return {std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() noexcept { return {}; }
        std::suspend_always final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); }
    };
    std::coroutine_handle<promise_type> handle;
};

using state = compute_team::helper_state;

} // namespace

struct helper_access {
    /// Parks the helper unless a job was handed to it meanwhile. The state
    /// becomes `parked` only once the coroutine is suspended, so run_job
    /// never posts a handle that is still running.
    struct park {
        std::atomic<state>* slot;
        bool await_ready() const noexcept { return false; }
        bool await_suspend(std::coroutine_handle<>) const noexcept {
            state expected = state::spinning;
            // relaxed: on failure the loop's compare-exchange on `given`
            // acquires the job.
            return slot->compare_exchange_strong(expected, state::parked, std::memory_order_release,
                                                 std::memory_order_relaxed);
        }
        void await_resume() const noexcept {}
    };

    static parked_coroutine loop(compute_team* team, std::size_t part) {
        std::atomic<state>& slot = team->m_helper_slots[part - 1].state;
        for (;;) {
            // Here we were posted or saw the slot change while spinning: the
            // slot is `given` (a part to run), or `revoked` (the caller took
            // it back: nothing to do), or given again after a revoke.
            state expected = state::given;
            // acquire: the job run_job published before handing it over.
            if (slot.compare_exchange_strong(expected, state::busy, std::memory_order_acquire)) {
                if (team->m_quit) {
                    team->m_pending.fetch_sub(1, std::memory_order_release);
                    co_return;
                }
                team->m_fn(team->m_ctx, part, team->size());
                slot.store(state::spinning, std::memory_order_relaxed);
                // release: the part's writes happen before the caller, which
                // acquires this count, reads them.
                team->m_pending.fetch_sub(1, std::memory_order_release);
            } else if (expected == state::revoked) {
                // Back to spinning, unless a new part was handed over
                // meanwhile (revoked -> given): then take that.
                if (!slot.compare_exchange_strong(expected, state::spinning, std::memory_order_relaxed)) continue;
            }

            const auto until = std::chrono::steady_clock::now() + spin_budget;
            bool handed = false;
            for (unsigned i = 0;; ++i) {
                if (slot.load(std::memory_order_relaxed) != state::spinning) {
                    handed = true; // given, or given and already revoked
                    break;
                }
                if ((i & 15) == 0 && std::chrono::steady_clock::now() >= until) break;
                // Yield rather than pause: on a machine with more runnable
                // threads than cores, a spinning helper would otherwise hold
                // the core the caller (or anyone) needs.
                std::this_thread::yield();
            }
            if (!handed) co_await park{&slot};
        }
    }
};

compute_team::compute_team(std::size_t threads) {
    threads = std::max<std::size_t>(threads, 1);
    if (threads > 1) {
        m_pool = std::make_unique<thread_pool>(threads - 1, "weft-compute");
        m_helper_slots = std::make_unique<helper[]>(threads - 1);
        for (std::size_t i = 1; i < threads; ++i) {
            m_helper_slots[i - 1].handle = helper_access::loop(this, i).handle;
            m_helpers.push_back(m_helper_slots[i - 1].handle);
        }
    }
}

compute_team::~compute_team() {
    if (!m_helpers.empty()) {
        m_quit = true;
        run_job([](void*, std::size_t, std::size_t) noexcept {}, nullptr);
        m_pool->shutdown();
        for (std::coroutine_handle<> h : m_helpers) {
            h.destroy();
        }
    }
}

std::pair<std::size_t, std::size_t> compute_team::split(std::size_t n, std::size_t part, std::size_t parts,
                                                        std::size_t grain) noexcept {
    const std::size_t units = (n + grain - 1) / grain;
    const std::size_t per = units / parts;
    const std::size_t extra = units % parts;
    const std::size_t first = part * per + std::min(part, extra);
    const std::size_t count = per + (part < extra ? 1 : 0);
    const std::size_t begin = std::min(n, first * grain);
    const std::size_t end = std::min(n, (first + count) * grain);
    return {begin, end};
}

void compute_team::run_job(job_fn fn, void* ctx) {
    if (m_helpers.empty()) {
        fn(ctx, 0, 1);
        return;
    }
    m_fn = fn;
    m_ctx = ctx;
    m_jobs_split.fetch_add(1, std::memory_order_relaxed);
    m_pending.store(m_helpers.size(), std::memory_order_relaxed);
    m_to_post.clear();
    for (std::size_t i = 0; i < m_helpers.size(); ++i) {
        std::atomic<state>& slot = m_helper_slots[i].state;
        state s = slot.load(std::memory_order_relaxed);
        // release: the helper's compare-exchange on `given` (acquire) sees
        // the job. acquire: from parked, the helper's coroutine is suspended
        // and is posted here, to be resumed by whichever pool thread takes
        // it; its frame's last writes (park's release) must happen before
        // that resumption, which reads the frame before any acquire of its
        // own. From spinning or revoked the helper is running or queued to
        // run and will see the slot. (The previous job left no part given or
        // busy.)
        while (!slot.compare_exchange_weak(s, state::given, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        }
        if (s == state::parked) m_to_post.push_back(m_helpers[i]);
    }
    if (!m_to_post.empty()) m_pool->post_bulk(m_to_post);
    fn(ctx, 0, size());
    if (!m_quit) {
        // The parts no helper has started: run them here rather than wait
        // for a helper the OS has not put on a core yet.
        for (std::size_t i = 0; i < m_helpers.size(); ++i) {
            state expected = state::given;
            if (m_helper_slots[i].state.compare_exchange_strong(expected, state::revoked, std::memory_order_relaxed)) {
                fn(ctx, i + 1, size());
                m_pending.fetch_sub(1, std::memory_order_relaxed);
            }
        }
    }
    unsigned spins = 0;
    while (m_pending.load(std::memory_order_acquire) != 0) {
        if (++spins < 64) {
            cpu_relax();
        } else {
            std::this_thread::yield();
        }
    }
}

} // namespace weft::serve::kernels
