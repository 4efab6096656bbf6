/// \file
/// `when_any`: awaits several awaitables concurrently; the first to finish wins.
///
/// - `co_await when_any(a, b, c)` yields a `std::variant<Ra, Rb, Rc>` whose
///   `index()` names the winner (a `void` result becomes `std::monostate`).
/// - `co_await when_any(std::vector<A>)` yields `when_any_result<R>`: the
///   winner's index and value (just the index when R is `void`).
///
/// The first child to finish wins, whether it returned or threw; if it threw,
/// that exception is rethrown. As soon as there is a winner, every other child
/// is asked to stop through its stop token (their cancellable operations end
/// with `operation_cancelled`), and `when_any` completes only after every child
/// has finished: no detached work is left behind. What the losers return or
/// throw is discarded. A stop requested on the awaiting coroutine's token is
/// forwarded to all children.
///
/// An empty vector is a logic error (`std::invalid_argument`).
#pragma once

#include <weft/concepts.hpp>
#include <weft/detail/combinator_child.hpp>
#include <weft/task.hpp>

#include <array>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace weft {

template <class T>
struct when_any_result {
    std::size_t index;
    T value;
};
template <>
struct when_any_result<void> {
    std::size_t index;
};

namespace detail {
/// Forwards a stop request from the awaiting coroutine to the children.
struct forward_stop {
    std::stop_source* m_source;
    void operator()() const noexcept { m_source->request_stop(); }
};
} // namespace detail

template <awaitable... A>
    requires(sizeof...(A) > 0)
auto when_any(A... aws) -> task<std::variant<detail::child_result_t<await_result_t<A>>...>> {
    using variant_t = std::variant<detail::child_result_t<await_result_t<A>>...>;
    std::stop_source source;
    const std::stop_token stop = source.get_token();
    std::stop_callback<detail::forward_stop> forward(co_await get_stop_token(),
                                                     detail::forward_stop{&source});
    detail::combinator_state state(sizeof...(A), detail::combinator_mode::any, &source);
    std::tuple<detail::combinator_child<await_result_t<A>>...> children{
        detail::make_combinator_child<await_result_t<A>>(std::move(aws))...};
    auto handles = std::apply(
        [&](auto&... c) {
            std::size_t index = 0;
            (c.promise().bind(&state, index++, &stop), ...);
            return std::array<std::coroutine_handle<>, sizeof...(A)>{c.handle()...};
        },
        children);
    co_await detail::start_children{state, handles};

    const std::size_t winner = state.first();
    std::optional<variant_t> result;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        ((winner == I ? (void)result.emplace(std::in_place_index<I>,
                                             std::get<I>(children).promise().take())
                      : void()),
         ...);
    }(std::index_sequence_for<A...>{});
    co_return std::move(*result);
}

template <awaitable A>
auto when_any(std::vector<A> aws) -> task<when_any_result<await_result_t<A>>> {
    using result_t = await_result_t<A>;
    if (aws.empty()) {
        throw std::invalid_argument("weft::when_any: no awaitables");
    }
    std::stop_source source;
    const std::stop_token stop = source.get_token();
    std::stop_callback<detail::forward_stop> forward(co_await get_stop_token(),
                                                     detail::forward_stop{&source});
    detail::combinator_state state(aws.size(), detail::combinator_mode::any, &source);
    std::vector<detail::combinator_child<result_t>> children;
    std::vector<std::coroutine_handle<>> handles;
    children.reserve(aws.size());
    handles.reserve(aws.size());
    for (std::size_t i = 0; i < aws.size(); ++i) {
        children.push_back(detail::make_combinator_child<result_t>(std::move(aws[i])));
        children.back().promise().bind(&state, i, &stop);
        handles.push_back(children.back().handle());
    }
    co_await detail::start_children{state, handles};

    const std::size_t winner = state.first();
    if constexpr (std::is_void_v<result_t>) {
        children[winner].promise().take();
        co_return when_any_result<void>{winner};
    } else {
        co_return when_any_result<result_t>{winner, children[winner].promise().take()};
    }
}

} // namespace weft
