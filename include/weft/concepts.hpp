/// \file
/// The named concepts of weft: `awaiter`, `awaitable`, `scheduler`.
///
/// - An *awaiter* has `await_ready`, `await_suspend` and `await_resume`.
/// - An *awaitable* is an awaiter, or has `operator co_await` (member or free)
///   that returns one. `await_result_t<A>` is what `co_await a` yields.
/// - A *scheduler* (an executor) is anything whose `schedule()` returns an
///   awaitable that resumes the awaiting coroutine on that scheduler's
///   execution context. Nothing else is required: a user-defined executor that
///   provides `schedule()` works with `spawn`, `on`, `resume_on`, `strand`,
///   `async_scope` and every combinator.
#pragma once

#include <concepts>
#include <coroutine>
#include <type_traits>
#include <utility>

namespace weft {

template <class A>
concept awaiter = requires(A& a, std::coroutine_handle<> h) {
    { a.await_ready() } -> std::convertible_to<bool>;
    a.await_resume();
};

namespace detail {
template <class A>
concept has_member_co_await = requires(A&& a) {
    { static_cast<A&&>(a).operator co_await() } -> awaiter;
};
template <class A>
concept has_free_co_await = requires(A&& a) {
    { operator co_await(static_cast<A&&>(a)) } -> awaiter;
};
} // namespace detail

template <class A>
concept awaitable = awaiter<std::remove_reference_t<A>> || detail::has_member_co_await<A> ||
                    detail::has_free_co_await<A>;

/// The awaiter that `co_await a` would use.
template <awaitable A>
decltype(auto) get_awaiter(A&& a) {
    if constexpr (detail::has_member_co_await<A>) {
        return static_cast<A&&>(a).operator co_await();
    } else if constexpr (detail::has_free_co_await<A>) {
        return operator co_await(static_cast<A&&>(a));
    } else {
        return static_cast<A&&>(a);
    }
}

/// What `co_await std::declval<A>()` yields.
template <awaitable A>
using await_result_t = decltype(std::declval<decltype(get_awaiter(std::declval<A>()))&>().await_resume());

template <class S>
concept scheduler = requires(S& s) {
    { s.schedule() } -> awaitable;
};

namespace detail {
/// A scheduler that also takes a coroutine handle to resume (thread_pool):
/// starters hand it a task's own handle instead of wrapping the task.
template <class S>
concept posts_handles = requires(S& s, std::coroutine_handle<> h) { s.post(h); };
} // namespace detail

} // namespace weft
