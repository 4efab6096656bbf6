// Internal: `compute_team`, the fork-join helper of the CPU backend. The
// calling thread and `threads - 1` workers of a weft::thread_pool run one job
// in `threads` parts and the call returns when every part is done.
//
// Each pool worker's share is a long-lived coroutine. After a part it spins
// for a short while (a forward pass starts its next job within microseconds)
// and takes the next job directly; only when none comes does it park, and
// the next job posts its handle to the pool again (one post_bulk, no
// allocation). Waking a parked worker costs tens of microseconds, which is
// why the spin exists: a decode step runs ~10 jobs per layer.
//
// A part that no helper has started by the time the caller is done with its
// own is taken back and run by the caller: on cores shared with other busy
// threads (the server's HTTP loop, clients on the same machine) a helper
// that is not on a core would otherwise hold up every job until the
// scheduler runs it, and the team degrades to one thread instead of
// stalling.
#pragma once

#include <weft/thread_pool.hpp>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>
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
    /// Jobs handed to the helpers so far (run or run_chunks calls that did
    /// not run inline).
    [[nodiscard]] std::uint64_t jobs_split() const noexcept { return m_jobs_split.load(std::memory_order_relaxed); }

    /// Calls fn(part, parts) once for every part in [0, size()), the calling
    /// thread running part 0 and any part no helper has started by the end
    /// of it: parts may run one after another, so they must not wait for
    /// each other. fn must not throw. Not reentrant.
    template <class F>
    void run(F&& fn) {
        auto call = [](void* ctx, std::size_t part, std::size_t parts) noexcept {
            (*static_cast<std::remove_reference_t<F>*>(ctx))(part, parts);
        };
        run_job(call, &fn);
    }

    /// Calls fn(chunk, chunks) once for every chunk in [0, chunks), the
    /// team's threads taking chunks in turn until none is left; fn may also
    /// take a third argument, the part (0 .. size()) of the thread running
    /// the chunk, for per-thread scratch. Unlike run()'s fixed parts, a
    /// thread the OS deschedules mid-job (a load generator or the server's
    /// I/O thread on the same cores) holds up at most the one chunk it is
    /// in: the others take the rest. fn must not throw; its results must not
    /// depend on which thread runs a chunk.
    template <class F>
    void run_chunks(std::size_t chunks, F&& fn) {
        const auto call = [&](std::size_t c, std::size_t part) {
            if constexpr (std::is_invocable_v<F&, std::size_t, std::size_t, std::size_t>) {
                fn(c, chunks, part);
            } else {
                fn(c, chunks);
            }
        };
        if (chunks == 0) return;
        if (chunks == 1 || size() == 1) {
            for (std::size_t c = 0; c < chunks; ++c) call(c, 0);
            return;
        }
        std::atomic<std::size_t> next{0};
        run([&](std::size_t part, std::size_t) {
            // relaxed: the counter only hands out indices; a chunk's writes
            // reach the caller through run()'s completion count.
            for (std::size_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < chunks;) call(c, part);
        });
    }

    /// [begin, end) of part `part` of `parts` when `n` items are split in
    /// runs of multiples of `grain` (the last part takes the remainder).
    static std::pair<std::size_t, std::size_t> split(std::size_t n, std::size_t part, std::size_t parts,
                                                     std::size_t grain = 1) noexcept;

    /// A helper's state: parked (suspended, must be posted), spinning
    /// (waiting for a job), given (a job's part is handed to it, whether it
    /// spins or was posted), busy (running the part), revoked (the caller
    /// took the part back before the helper started it).
    enum class helper_state : int { parked, spinning, given, busy, revoked };

private:
    using job_fn = void (*)(void*, std::size_t, std::size_t) noexcept;
    void run_job(job_fn fn, void* ctx);
    friend struct helper_access;

    struct alignas(64) helper {
        std::coroutine_handle<> handle;
        std::atomic<helper_state> state{helper_state::parked};
    };

    std::unique_ptr<thread_pool> m_pool;
    std::unique_ptr<helper[]> m_helper_slots;
    std::vector<std::coroutine_handle<>> m_helpers; // handles, for post_bulk
    std::vector<std::coroutine_handle<>> m_to_post; // scratch
    job_fn m_fn = nullptr;
    void* m_ctx = nullptr;
    bool m_quit = false;
    // Helpers still running the current job; the caller waits for zero.
    std::atomic<std::size_t> m_pending{0};
    // Written by the calling thread only; atomic so that a test may read it
    // from another thread (relaxed: a count, ordered by the step's hand-off).
    std::atomic<std::uint64_t> m_jobs_split{0};
};

} // namespace weft::serve::kernels
