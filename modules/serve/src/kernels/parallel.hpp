// Internal: `compute_team`, the fork-join helper of the CPU backend. The
// calling thread and `threads - 1` workers of a weft::thread_pool run one job
// in `threads` parts and the call returns when every part is done.
//
// Each pool worker's share is a long-lived coroutine parked between jobs:
// starting a job posts the parked handles to the pool (one post_bulk, no
// allocation), the caller runs part 0, then spins until the helpers have
// parked again. Jobs are short (one matrix multiply), so the caller spins
// rather than sleeps; pool workers spin briefly before sleeping on their own.
#pragma once

#include <weft/thread_pool.hpp>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

namespace weft::serve::kernels {

class compute_team {
public:
    explicit compute_team(std::size_t threads);
    ~compute_team();
    compute_team(const compute_team&) = delete;
    compute_team& operator=(const compute_team&) = delete;

    [[nodiscard]] std::size_t size() const noexcept { return m_helpers.size() + 1; }

    /// Calls fn(part, parts) for every part in [0, size()), concurrently; the
    /// calling thread runs part 0. fn must not throw. Not reentrant.
    template <class F>
    void run(F&& fn) {
        auto call = [](void* ctx, std::size_t part, std::size_t parts) noexcept {
            (*static_cast<std::remove_reference_t<F>*>(ctx))(part, parts);
        };
        run_job(call, &fn);
    }

    /// [begin, end) of part `part` of `parts` when `n` items are split in
    /// runs of multiples of `grain` (the last part takes the remainder).
    static std::pair<std::size_t, std::size_t> split(std::size_t n, std::size_t part, std::size_t parts,
                                                     std::size_t grain = 1) noexcept;


private:
    using job_fn = void (*)(void*, std::size_t, std::size_t) noexcept;
    void run_job(job_fn fn, void* ctx);
    friend struct helper_access;

    std::unique_ptr<thread_pool> m_pool;
    std::vector<std::coroutine_handle<>> m_helpers;
    job_fn m_fn = nullptr;
    void* m_ctx = nullptr;
    bool m_quit = false;
    // Helpers still running the current job. A helper decrements it once it
    // is parked again (suspended), so a zero count means every handle may be
    // posted anew.
    std::atomic<std::size_t> m_pending{0};
};

} // namespace weft::serve::kernels
