/// \file
/// Cancellation: `operation_cancelled`, and how a coroutine reads its stop token.
///
/// weft cancels through `std::stop_token`. Each task carries a pointer to the
/// token of whoever is awaiting it (its parent, or the root that started it:
/// `sync_wait`, `async_scope`, `when_any`, `with_stop_token`), so a child
/// inherits its parent's cancellation at no cost. A coroutine reads its token
/// with `co_await weft::get_stop_token()`; every awaiting primitive of the
/// library (mutex, semaphore, event, latch, channel, timers) watches the token
/// of the coroutine awaiting it and, when stop is requested, resumes it with an
/// `operation_cancelled` exception.
///
/// Lifetime: the token object lives in the root's frame, which outlives every
/// descendant that points to it (structured concurrency).
#pragma once

#include <concepts>
#include <coroutine>
#include <stop_token>
#include <system_error>

namespace weft {

/// Thrown out of an awaiting operation that stopped because stop was requested.
class operation_cancelled : public std::system_error {
public:
    operation_cancelled()
        : std::system_error(std::make_error_code(std::errc::operation_canceled)) {}
};

namespace detail {
/// The token of coroutines that nobody can cancel.
inline const std::stop_token never_stop_token{};

/// A promise that carries a stop token (task, async_generator, helpers).
template <class Promise>
concept stoppable_promise = requires(Promise& p, const std::stop_token* t) {
    { p.stop_token_ptr() } -> std::same_as<const std::stop_token*>;
    p.set_stop_token_ptr(t);
};

/// The stop token of the coroutine whose promise is `p`, or a never-stopping one.
template <class Promise>
const std::stop_token& stop_token_of(Promise& p) noexcept {
    if constexpr (stoppable_promise<Promise>) {
        return *p.stop_token_ptr();
    } else {
        return never_stop_token;
    }
}
} // namespace detail

/// `co_await get_stop_token()` yields the calling coroutine's stop token.
/// Never suspends.
struct get_stop_token_t {
    struct awaiter {
        const std::stop_token* m_token = &detail::never_stop_token;
        bool await_ready() const noexcept { return false; }
        template <class Promise>
        bool await_suspend(std::coroutine_handle<Promise> h) noexcept {
            m_token = &detail::stop_token_of(h.promise());
            return false; // resume at once: this only peeks at the promise
        }
        std::stop_token await_resume() const noexcept { return *m_token; }
    };
    awaiter operator co_await() const noexcept { return {}; }
};
inline get_stop_token_t get_stop_token() noexcept { return {}; }

} // namespace weft
