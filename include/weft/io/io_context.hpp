/// \file
/// `io_context`: a single-threaded event loop for sockets, files, timers and
/// signals, on io_uring (or epoll where io_uring is unavailable).
///
/// One context per thread (shard model): `run()` turns the loop on the calling
/// thread until `stop()`; `run(task)` turns it until that task completes and
/// returns its result. Every coroutine that awaits an I/O operation of the
/// context must be running on the loop thread when it awaits (start it with
/// `run(task)`, `co_await ctx.schedule()` or `post`); completions resume it
/// there, through `weft::detail::resume`. Each loop turn resumes what is
/// ready, then submits every operation queued during the turn and waits for
/// completions with a single system call (`io_uring_submit_and_wait_timeout`).
/// Timers (`sleep_for`, `sleep_until`) and per-operation deadlines are kept
/// by the loop in a heap whose earliest entry bounds that wait: they cost no
/// kernel operation.
///
/// Backends: `io_backend::automatic` uses io_uring (probing SINGLE_ISSUER +
/// DEFER_TASKRUN, then COOP_TASKRUN, then no flags) and falls back to epoll
/// when the ring cannot be created (EPERM, ENOSYS, ...) or when the
/// environment variable `WEFT_IO_BACKEND=epoll` asks for it, printing once to
/// stderr "weft: io_uring unavailable (<reason>), using epoll" (the reason
/// being the error, or WEFT_IO_BACKEND=epoll). The epoll backend is
/// readiness-based (try the system call, wait for EPOLLIN/EPOLLOUT on EAGAIN),
/// bounds epoll_wait with the same timer heap, has no multishot requests nor
/// buffer ring, and does file reads/writes synchronously.
///
/// Cancellation: an operation watches its coroutine's stop token; on stop it
/// is cancelled (IORING_OP_ASYNC_CANCEL on io_uring) at the start of the next
/// loop turn and the `co_await` throws `weft::operation_cancelled`, unless the
/// operation completed first. A stop requested on the loop thread itself
/// costs no wake-up. Errors are `std::system_error` with the errno in
/// `std::system_category()`; a passed deadline gives `errc::timed_out`
/// (ETIMEDOUT).
///
/// Lifetime: the context must outlive every operation and every coroutine
/// posted to it; destroy it only while no operation is pending (and after
/// the sockets that keep a multishot request armed: see tcp.hpp). The first
/// thread to call `run` becomes the loop thread for good (io_uring's
/// SINGLE_ISSUER): later `run` calls must come from the same thread.
///
/// Threading: `post`, `schedule`, `stop` are thread-safe; everything else,
/// the I/O objects (sockets, files, signal sets) included, belongs to the
/// loop thread.
#pragma once

#include <weft/stop.hpp>
#include <weft/task.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <system_error>
#include <type_traits>
#include <utility>

namespace weft::io {

class io_context;
using clock = std::chrono::steady_clock;

/// Which kernel interface an io_context drives.
enum class io_backend : unsigned char {
    automatic, ///< io_uring, or epoll where io_uring is unavailable or WEFT_IO_BACKEND=epoll
    uring,     ///< io_uring; the constructor throws std::system_error if it cannot be set up
    epoll,     ///< epoll
};

/// A point in time (steady_clock) after which an operation fails with
/// `errc::timed_out`. The default one never passes.
class deadline {
public:
    constexpr deadline() noexcept = default;
    explicit constexpr deadline(clock::time_point at) noexcept : m_at(at) {}
    /// The deadline `d` from now.
    static deadline after(clock::duration d) noexcept { return deadline(clock::now() + d); }
    [[nodiscard]] constexpr bool is_set() const noexcept { return m_at != clock::time_point::max(); }
    [[nodiscard]] constexpr clock::time_point at() const noexcept { return m_at; }

private:
    clock::time_point m_at = clock::time_point::max();
};

namespace detail {

enum class op_kind : unsigned char {
    recv, send, read, write, accept, connect, poll_in, ///< kernel operations
    timeout,                                           ///< a timer (no kernel operation)
    wait,                                              ///< waits on an I/O object's state (no kernel operation)
    callback,                                          ///< a timer that calls `on_fire` on the loop thread
};

struct operation;
/// `wait` operations: removes the operation from whatever it waits on, before
/// it is completed by a timeout or a cancellation.
using detach_fn = void (*)(operation& op) noexcept;

/// One I/O request, living in the awaiting coroutine's frame until it
/// completes. Written by the awaiter before `start`, by the loop thread
/// afterwards.
struct operation {
    op_kind kind = op_kind::timeout;
    bool pending = false;            ///< started and not completed yet
    bool cancel_requested = false;   ///< a stop request reached the loop
    bool timed_out = false;          ///< the deadline passed while pending
    bool connecting = false;         ///< epoll: connect() returned EINPROGRESS
    /// Set by a stop callback (any thread) when it queued this operation for
    /// cancellation; the awaiter then withdraws the request before the
    /// operation is destroyed.
    std::atomic<bool> cancel_queued{false};
    int fd = -1;
    int result = 0;                  ///< >= 0, or -errno
    void* buffer = nullptr;
    std::size_t length = 0;
    std::uint64_t offset = 0;        ///< read/write: file offset (~0: current position)
    clock::time_point deadline = clock::time_point::max(); ///< timeout: when; others: limit
    std::size_t timer_index = ~std::size_t{0}; ///< position in the loop's timer heap
    std::coroutine_handle<> handle;  ///< resumed on completion
    operation* next = nullptr;       ///< wait: the owner's queue of waiters
    void* owner = nullptr;           ///< wait: the I/O object's state; callback: its context
    detach_fn detach = nullptr;      ///< wait: see detach_fn
    void (*on_fire)(operation&) noexcept = nullptr; ///< callback: instead of resuming `handle`
    alignas(8) unsigned char address[128] = {}; ///< connect: the sockaddr
    unsigned address_length = 0;
};

/// Turns a completed operation's result into a value or an exception.
int finish(const operation& op, const char* what);
/// The same without throwing: a failure goes to `ec` (a stop request as
/// std::errc::operation_canceled, a deadline as errc::timed_out) and the
/// result is -1; on success `ec` is cleared.
int finish(const operation& op, std::error_code& ec) noexcept;

} // namespace detail

class io_context {
public:
    explicit io_context(io_backend backend = io_backend::automatic);
    ~io_context();
    io_context(const io_context&) = delete;
    io_context& operator=(const io_context&) = delete;

    /// The backend in use (never `automatic`).
    [[nodiscard]] io_backend backend() const noexcept;

    /// Turns the loop on this thread until `stop()` is called (from anywhere,
    /// before or during the call); then clears the stop request and returns.
    void run();

    /// Turns the loop until `t` completes; returns its result or rethrows its
    /// exception. `token` becomes `t`'s stop token. `stop()` does not end it.
    template <class T>
    T run(task<T> t, std::stop_token token = {});

    /// Asks `run()` to return after the current turn. Thread-safe.
    void stop() noexcept;

    /// Resumes `h` on the loop thread during a later turn. Thread-safe.
    void post(std::coroutine_handle<> h);

    /// `post` for many handles, in order, with one lock and at most one
    /// wake-up of the loop (a producer with a batch of completions, such as
    /// an engine step's tokens, pays once instead of per handle). All or
    /// nothing: on throw (memory), none of them was posted. Thread-safe.
    void post_bulk(std::span<const std::coroutine_handle<>> hs);

    struct schedule_awaiter {
        io_context* m_ctx;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<> h) { m_ctx->post(h); }
        void await_resume() const noexcept {}
    };
    /// `co_await ctx.schedule()` continues on the loop thread (a `weft::scheduler`).
    schedule_awaiter schedule() noexcept { return {this}; }

    // --- Used by the operation awaiters ---------------------------------------
    /// Loop thread: starts `op`. Returns false when it completed at once
    /// (`op.result` is set and the coroutine must not suspend).
    bool start(detail::operation& op);
    /// Any thread: asks the loop to cancel `op` if it is still pending.
    void request_cancel(detail::operation& op) noexcept;
    /// Loop thread: withdraws a cancellation request of `op` that the loop
    /// has not handled yet (before `op` is destroyed).
    void withdraw_cancel(detail::operation& op) noexcept;
    /// Loop thread: removes a pending `callback` timer without firing it.
    void cancel_timer(detail::operation& op) noexcept;

    struct impl;
    /// The loop's internals, for weft's own I/O objects.
    impl& internals() noexcept { return *m_impl; }

private:
    void run_until(std::coroutine_handle<> done);
    std::unique_ptr<impl> m_impl;
};

namespace detail {

/// The awaiter of every I/O operation: starts it, arms a stop callback that
/// asks the loop to cancel it, and turns the result into a value or an error.
class op_awaiter {
public:
    op_awaiter(io_context& ctx, const char* what) noexcept : m_ctx(&ctx), m_what(what) {}
    op_awaiter(const op_awaiter&) = delete;
    op_awaiter& operator=(const op_awaiter&) = delete;

    operation& op() noexcept { return m_op; }
    /// Reports a failure in `ec` (see `finish`) instead of throwing.
    void report_errors_to(std::error_code& ec) noexcept { m_errors = &ec; }

    bool await_ready() const noexcept { return false; }
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h) {
        const std::stop_token& token = weft::detail::stop_token_of(h.promise());
        if (token.stop_requested()) {
            m_op.result = -ECANCELED;
            m_op.cancel_requested = true;
            return false;
        }
        m_op.handle = h;
        if (!m_ctx->start(m_op)) {
            return false;
        }
        // Safe to arm after starting: completions are delivered by the loop
        // thread, which is this one, busy here until we return.
        if (token.stop_possible()) {
            m_stop_callback.emplace(token, canceller{m_ctx, &m_op});
        }
        return true;
    }
    int await_resume() {
        // Waits for a stop callback running on another thread to return; a
        // request it queued is then withdrawn, as the operation is over.
        m_stop_callback.reset();
        if (m_op.cancel_queued.load(std::memory_order_acquire)) {
            m_ctx->withdraw_cancel(m_op);
        }
        return m_errors != nullptr ? finish(m_op, *m_errors) : finish(m_op, m_what);
    }

private:
    struct canceller {
        io_context* m_ctx;
        operation* m_op;
        void operator()() const noexcept { m_ctx->request_cancel(*m_op); }
    };
    io_context* m_ctx;
    const char* m_what;
    std::error_code* m_errors = nullptr;
    operation m_op;
    std::optional<std::stop_callback<canceller>> m_stop_callback;
};

/// Drives `run(task)`: a minimal coroutine with its own stop token.
class run_driver {
public:
    struct promise_type {
        run_driver get_return_object() noexcept {
            return run_driver{std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() noexcept { return {}; }
        std::suspend_always final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); } // the body catches everything
        const std::stop_token* stop_token_ptr() const noexcept { return &m_token; }
        void set_stop_token_ptr(const std::stop_token*) noexcept {}
        std::stop_token m_token;
    };
    explicit run_driver(std::coroutine_handle<promise_type> h) noexcept : m_coro(h) {}
    run_driver(run_driver&& o) noexcept : m_coro(std::exchange(o.m_coro, {})) {}
    run_driver& operator=(run_driver&&) = delete;
    ~run_driver() {
        if (m_coro) {
            m_coro.destroy();
        }
    }
    std::coroutine_handle<promise_type> m_coro;
};

template <class T>
run_driver drive(task<T> t, weft::detail::result_storage<T>& out) {
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(t);
        } else {
            out.set_value(co_await std::move(t));
        }
    } catch (...) {
        out.set_exception(std::current_exception());
    }
}

} // namespace detail

template <class T>
T io_context::run(task<T> t, std::stop_token token) {
    static_assert(!std::is_reference_v<T>, "run(task<T&>) is not supported");
    weft::detail::result_storage<T> result;
    detail::run_driver driver = detail::drive<T>(std::move(t), result);
    driver.m_coro.promise().m_token = std::move(token);
    post(driver.m_coro);
    run_until(driver.m_coro);
    return result.take();
}

/// `co_await sleep_until(ctx, tp)`: resumes on the loop thread at or after
/// `tp`. Cancellable (throws `operation_cancelled`).
class sleep_awaiter : public detail::op_awaiter {
public:
    sleep_awaiter(io_context& ctx, clock::time_point tp) noexcept : op_awaiter(ctx, "sleep") {
        op().kind = detail::op_kind::timeout;
        op().deadline = tp;
    }
    void await_resume() { op_awaiter::await_resume(); }
};

inline sleep_awaiter sleep_until(io_context& ctx, clock::time_point tp) noexcept {
    return sleep_awaiter(ctx, tp);
}
template <class Rep, class Period>
sleep_awaiter sleep_for(io_context& ctx, std::chrono::duration<Rep, Period> d) noexcept {
    return sleep_awaiter(ctx, clock::now() + std::chrono::ceil<clock::duration>(d));
}

} // namespace weft::io
