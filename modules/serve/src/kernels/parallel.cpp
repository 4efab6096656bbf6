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
            // acq_rel: on failure we read `given` and must see the job that
            // run_job published before handing it over.
            return slot->compare_exchange_strong(expected, state::parked, std::memory_order_acq_rel);
        }
        void await_resume() const noexcept {}
    };

    static parked_coroutine loop(compute_team* team, std::size_t part) {
        std::atomic<state>& slot = team->m_helper_slots[part - 1].state;
        for (;;) {
            // Here we were posted (parked -> busy by run_job) or handed a job
            // while spinning (given): either way a job is published.
            slot.store(state::busy, std::memory_order_relaxed);
            if (team->m_quit) {
                team->m_pending.fetch_sub(1, std::memory_order_release);
                co_return;
            }
            team->m_fn(team->m_ctx, part, team->size());
            slot.store(state::spinning, std::memory_order_relaxed);
            // release: the part's writes happen before the caller, which
            // acquires this count, reads them.
            team->m_pending.fetch_sub(1, std::memory_order_release);

            const auto until = std::chrono::steady_clock::now() + spin_budget;
            bool given = false;
            for (unsigned i = 0;; ++i) {
                if (slot.load(std::memory_order_acquire) == state::given) {
                    given = true;
                    break;
                }
                if ((i & 15) == 0 && std::chrono::steady_clock::now() >= until) break;
                // Yield rather than pause: on a machine with more runnable
                // threads than cores, a spinning helper would otherwise hold
                // the core the caller (or anyone) needs.
                std::this_thread::yield();
            }
            if (!given) co_await park{&slot};
        }
    }
};

compute_team::compute_team(std::size_t threads) {
    threads = std::max<std::size_t>(threads, 1);
    if (threads > 1) {
        m_pool = std::make_unique<thread_pool>(threads - 1);
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
    m_pending.store(m_helpers.size(), std::memory_order_relaxed);
    m_to_post.clear();
    for (std::size_t i = 0; i < m_helpers.size(); ++i) {
        std::atomic<state>& slot = m_helper_slots[i].state;
        state expected = state::spinning;
        // release: a spinning helper that sees `given` (acquire) sees the job.
        if (!slot.compare_exchange_strong(expected, state::given, std::memory_order_acq_rel)) {
            // Parked (suspended): the pool's hand-off publishes the job.
            m_to_post.push_back(m_helpers[i]);
        }
    }
    if (!m_to_post.empty()) m_pool->post_bulk(m_to_post);
    fn(ctx, 0, size());
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
