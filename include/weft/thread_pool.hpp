/// \file
/// `thread_pool`: a fixed set of worker threads that resume coroutines, with
/// work stealing.
///
/// `co_await pool.schedule()` moves the calling coroutine onto one of the
/// pool's threads; `post(h)` / `post_bulk(hs)` hand it coroutine handles
/// directly. Work items are bare coroutine handles (no allocation per item).
/// Each worker owns a lock-free work-stealing deque plus a one-handle LIFO slot
/// for the coroutine it made ready last (runs next, for cache locality; not
/// stealable, and at most 3 LIFO runs in a row before older work gets a turn);
/// handles posted from other threads go through a shared injection queue (a
/// lock-free ring, with a mutex-protected overflow behind it) that workers take
/// batches from. Idle workers spin briefly (at most ~50 us), then sleep: a
/// pool with no work uses no CPU. A worker resumes each handle through
/// `detail::resume`, so it is the outermost trampoline on its thread; an
/// exception escaping a resumption terminates the program.
///
/// Ordering: none is promised between handles, except that a pool thread
/// resumes each handle exactly once. A handle posted from a pool thread while
/// that thread keeps running (not suspending) waits in its LIFO slot until the
/// thread is free, exactly like tokio's: do not block pool threads. For the
/// same reason `co_await pool.schedule()` on a pool thread is a cheap hop, not
/// a fair yield: the coroutine may run again up to 3 times before older work.
///
/// Lifetime: the pool must outlive every coroutine scheduled on it. Shutdown
/// (`shutdown()` or the destructor) first *drains*: it runs everything already
/// queued, including work that the queued work posts while shutdown is in
/// progress (from pool threads or from other threads), until every queue is
/// empty and every worker is idle; then it closes the pool and joins the
/// threads (so other threads that keep posting keep it alive: stop them
/// first). After that, `post`/`post_bulk` throw `std::logic_error`, so a
/// coroutine doing `co_await pool.schedule()` on a shut-down pool gets that
/// exception from the `co_await`. `shutdown()` is idempotent. Calling it (or
/// destroying the pool) from one of the pool's own threads would wait for
/// itself: `shutdown()` throws `std::logic_error` instead, and the destructor,
/// being `noexcept`, terminates.
///
/// Threading: every member function is thread-safe. The pool is neither
/// copyable nor movable (its threads refer to it).
#pragma once

#include <coroutine>
#include <cstddef>
#include <memory>
#include <span>
#include <string_view>
#include <thread>

namespace weft {

class thread_pool {
public:
    /// Starts `thread_count` workers (at least one; zero, as
    /// `hardware_concurrency()` may report, means one), named `name-0`,
    /// `name-1`, ... (see set_current_thread_name: cut to 15 bytes). Throws
    /// `std::system_error` if a thread cannot be started, after stopping the
    /// ones that were.
    explicit thread_pool(std::size_t thread_count = std::thread::hardware_concurrency(),
                         std::string_view name = "weft-pool");
    /// `shutdown()`: runs the queued work, then joins the threads.
    ~thread_pool();

    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;
    thread_pool(thread_pool&&) = delete;
    thread_pool& operator=(thread_pool&&) = delete;

    /// What `schedule()` returns: always suspends, then posts the coroutine.
    class schedule_awaiter {
    public:
        explicit schedule_awaiter(thread_pool& pool) noexcept : m_pool(&pool) {}
        bool await_ready() const noexcept { return false; }
        /// Throws `std::logic_error` when the pool has shut down; the coroutine
        /// then resumes at once with that exception.
        void await_suspend(std::coroutine_handle<> h) const { m_pool->post(h); }
        void await_resume() const noexcept {}

    private:
        thread_pool* m_pool;
    };

    /// `co_await pool.schedule()` continues the coroutine on a pool thread.
    /// Makes `thread_pool` a `weft::scheduler`.
    [[nodiscard]] schedule_awaiter schedule() noexcept { return schedule_awaiter{*this}; }

    /// Resumes `h` (not null, suspended, not resumed by anyone else) on a pool
    /// thread. From a pool thread it goes to that thread's LIFO slot (the
    /// previous occupant moves to its stealable deque); from any other thread
    /// to the injection queue. Throws `std::logic_error` after shutdown.
    void post(std::coroutine_handle<> h);

    /// `post` for many handles, with one lock and one wake-up pass. All or
    /// nothing: on throw, none of them was posted.
    void post_bulk(std::span<const std::coroutine_handle<>> hs);

    [[nodiscard]] std::size_t thread_count() const noexcept;

    /// True on the pool's own worker threads.
    [[nodiscard]] bool running_in_this_thread() const noexcept;

    /// Drains, closes and joins; see the file comment. Idempotent, may be
    /// called from several threads at once; throws `std::logic_error` when
    /// called from a pool thread.
    void shutdown();

private:
    struct impl; // src/pool_impl.hpp
    std::unique_ptr<impl> m_impl;
};

} // namespace weft
