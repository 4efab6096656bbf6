/// \file
/// `with_timeout(ctx, awaitable, duration)`: awaits `awaitable` for at most
/// `duration`.
///
///     std::size_t n = co_await io::with_timeout(ctx, stream.read_some(buf), 50ms);
///
/// If the awaitable has not finished when the time is up, it is asked to stop
/// through its stop token (the I/O operations and primitives it awaits end
/// with `operation_cancelled`), and once it has finished, `with_timeout`
/// throws `std::system_error` with `errc::timed_out`. If it finished first,
/// its result (or exception) is passed through unchanged, even when the time
/// ran out meanwhile. A stop requested on the awaiting coroutine is forwarded
/// and ends it with `operation_cancelled`, as usual.
///
/// Works with any movable awaitable (tasks, which every I/O operation
/// returns, and a whole task of several operations included; `sleep_for`'s
/// awaiter is not movable: wrap it in a task); one
/// that ignores stop requests runs to its end and its outcome is passed
/// through. For a single I/O operation, the `deadline` argument of the
/// operation itself is the cheaper equivalent (no extra coroutine frame).
///
/// Lifetime: the timer lives in the returned task's frame and is removed when
/// it finishes. Threading: await it on `ctx`'s loop thread.
#pragma once

#include <weft/concepts.hpp>
#include <weft/io/io_context.hpp>
#include <weft/stop.hpp>
#include <weft/task.hpp>
#include <weft/with_stop_token.hpp>

#include <cerrno>
#include <chrono>
#include <exception>
#include <stop_token>
#include <system_error>
#include <utility>

namespace weft::io {

namespace detail {

/// A loop timer that requests stop on a source when it fires, and is removed
/// again on destruction if it has not.
class stop_timer {
public:
    stop_timer(io_context& ctx, clock::time_point at, std::stop_source& source) : m_ctx(ctx), m_source(source) {
        m_op.kind = op_kind::callback;
        m_op.deadline = at;
        m_op.owner = this;
        m_op.on_fire = [](operation& op) noexcept {
            auto* self = static_cast<stop_timer*>(op.owner);
            self->m_fired = true;
            self->m_source.request_stop();
        };
        m_ctx.start(m_op);
    }
    stop_timer(const stop_timer&) = delete;
    stop_timer& operator=(const stop_timer&) = delete;
    ~stop_timer() { m_ctx.cancel_timer(m_op); }

    [[nodiscard]] bool fired() const noexcept { return m_fired; }

private:
    io_context& m_ctx;
    std::stop_source& m_source;
    operation m_op;
    bool m_fired = false;
};

/// Forwards a stop request from the awaiting coroutine to the timed work.
struct forward_stop_to {
    std::stop_source* m_source;
    void operator()() const noexcept { m_source->request_stop(); }
};

} // namespace detail

template <awaitable A, class Rep, class Period>
auto with_timeout(io_context& ctx, A work, std::chrono::duration<Rep, Period> timeout)
    -> task<await_result_t<A>> {
    std::stop_source source;
    const std::stop_token token = source.get_token();
    std::stop_callback<detail::forward_stop_to> forward(co_await get_stop_token(),
                                                        detail::forward_stop_to{&source});
    detail::stop_timer timer(ctx, clock::now() + std::chrono::ceil<clock::duration>(timeout), source);
    try {
        co_await weft::detail::set_stop_token_ptr{&token};
        co_return co_await std::move(work);
    } catch (const operation_cancelled&) {
        if (!timer.fired()) {
            throw; // stopped from outside
        }
    }
    throw std::system_error(ETIMEDOUT, std::system_category(), "with_timeout");
}

} // namespace weft::io
