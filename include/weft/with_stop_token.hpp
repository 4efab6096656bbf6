/// \file
/// `with_stop_token(awaitable, token)`: awaits `awaitable` under another stop token.
///
/// The awaited work (and everything it awaits in turn) sees `token` instead of
/// the awaiting coroutine's own. This is how a root of cancellation is made:
///
///     std::stop_source stop;
///     co_await with_stop_token(serve(conn), stop.get_token());
///
/// The token is owned by the returned task, so it lives as long as the work.
#pragma once

#include <weft/concepts.hpp>
#include <weft/stop.hpp>
#include <weft/task.hpp>

#include <stop_token>
#include <utility>

namespace weft {

namespace detail {
/// Replaces the calling coroutine's stop token pointer. Never suspends.
struct set_stop_token_ptr {
    const std::stop_token* m_token;
    bool await_ready() const noexcept { return false; }
    template <class Promise>
        requires stoppable_promise<Promise>
    bool await_suspend(std::coroutine_handle<Promise> h) const noexcept {
        h.promise().set_stop_token_ptr(m_token);
        return false;
    }
    void await_resume() const noexcept {}
};
} // namespace detail

template <awaitable A>
auto with_stop_token(A a, std::stop_token token) -> task<await_result_t<A>> {
    co_await detail::set_stop_token_ptr{&token};
    co_return co_await std::move(a);
}

} // namespace weft
