#include "kernels/parallel.hpp"

#include <algorithm>
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

} // namespace

struct helper_access {
    /// Suspends the helper and, once it is suspended (so it may be posted
    /// again), reports its part of the job as done.
    struct park {
        compute_team* team;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<>) const noexcept {
            // release: the job's writes happen before the caller, which
            // acquires this count, reads them.
            team->m_pending.fetch_sub(1, std::memory_order_release);
        }
        void await_resume() const noexcept {}
    };

    static parked_coroutine loop(compute_team* team, std::size_t part) {
        for (;;) {
            if (team->m_quit) {
                team->m_pending.fetch_sub(1, std::memory_order_release);
                co_return;
            }
            team->m_fn(team->m_ctx, part, team->size());
            co_await park{team};
        }
    }
};

compute_team::compute_team(std::size_t threads) {
    threads = std::max<std::size_t>(threads, 1);
    if (threads > 1) {
        m_pool = std::make_unique<thread_pool>(threads - 1);
        for (std::size_t i = 1; i < threads; ++i) {
            m_helpers.push_back(helper_access::loop(this, i).handle);
        }
    }
}

compute_team::~compute_team() {
    if (!m_helpers.empty()) {
        m_quit = true;
        m_pending.store(m_helpers.size(), std::memory_order_relaxed);
        m_pool->post_bulk(m_helpers);
        while (m_pending.load(std::memory_order_acquire) != 0) {
            std::this_thread::yield();
        }
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
    // relaxed: post_bulk publishes m_fn/m_ctx and this count to the helpers
    // (the pool's queue hand-off synchronises).
    m_pending.store(m_helpers.size(), std::memory_order_relaxed);
    m_pool->post_bulk(m_helpers);
    fn(ctx, 0, size());
    unsigned spins = 0;
    while (m_pending.load(std::memory_order_acquire) != 0) {
        if (++spins < 4096) {
            cpu_relax();
        } else {
            std::this_thread::yield();
        }
    }
}

} // namespace weft::serve::kernels
