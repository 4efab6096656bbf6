/// \file
/// `when_all`: awaits several awaitables concurrently and yields all results.
///
/// - `co_await when_all(a, b, c)` yields `std::tuple<Ra, Rb, Rc>` in argument
///   order (a `void` result becomes `std::monostate`).
/// - `co_await when_all(std::vector<A>)` yields `std::vector<R>` in input
///   order, or nothing when R is `void`.
///
/// All children are started on the awaiting thread (each runs until it first
/// suspends), share the awaiting coroutine's stop token, and are all awaited
/// before `when_all` completes, even when some fail: no work is left behind.
/// If any child throws, the exception of the first to throw (in time) is
/// rethrown after every child has finished; the others are discarded.
///
/// The awaitables are moved into `when_all` and live until it completes.
#pragma once

#include <weft/concepts.hpp>
#include <weft/detail/combinator_child.hpp>
#include <weft/task.hpp>

#include <array>
#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace weft {

template <awaitable... A>
auto when_all(A... aws) -> task<std::tuple<detail::child_result_t<await_result_t<A>>...>> {
    const std::stop_token* stop = co_await detail::stop_token_ptr_awaiter{};
    detail::combinator_state state(sizeof...(A), detail::combinator_mode::all);
    std::tuple<detail::combinator_child<await_result_t<A>>...> children{
        detail::make_combinator_child<await_result_t<A>>(std::move(aws))...};
    auto handles = std::apply(
        [&](auto&... c) {
            std::size_t index = 0;
            (c.promise().bind(&state, index++, stop), ...);
            return std::array<std::coroutine_handle<>, sizeof...(A)>{c.handle()...};
        },
        children);
    co_await detail::start_children{state, handles};

    if (const std::size_t failed = state.first(); failed != detail::combinator_state::none) {
        std::apply(
            [&](auto&... c) {
                std::size_t index = 0;
                ((index++ == failed ? (void)c.promise().take() : void()), ...);
            },
            children);
    }
    co_return std::apply(
        [](auto&... c) {
            return std::tuple<detail::child_result_t<await_result_t<A>>...>{c.promise().take()...};
        },
        children);
}

template <awaitable A>
auto when_all(std::vector<A> aws)
    -> task<std::conditional_t<std::is_void_v<await_result_t<A>>, void,
                               std::vector<await_result_t<A>>>> {
    using result_t = await_result_t<A>;
    const std::stop_token* stop = co_await detail::stop_token_ptr_awaiter{};
    detail::combinator_state state(aws.size(), detail::combinator_mode::all);
    std::vector<detail::combinator_child<result_t>> children;
    std::vector<std::coroutine_handle<>> handles;
    children.reserve(aws.size());
    handles.reserve(aws.size());
    for (std::size_t i = 0; i < aws.size(); ++i) {
        children.push_back(detail::make_combinator_child<result_t>(std::move(aws[i])));
        children.back().promise().bind(&state, i, stop);
        handles.push_back(children.back().handle());
    }
    co_await detail::start_children{state, handles};

    if (const std::size_t failed = state.first(); failed != detail::combinator_state::none) {
        children[failed].promise().take(); // rethrows
    }
    if constexpr (!std::is_void_v<result_t>) {
        std::vector<result_t> results;
        results.reserve(children.size());
        for (auto& c : children) {
            results.push_back(c.promise().take());
        }
        co_return results;
    }
}

} // namespace weft
