/// \file
/// Moving work between schedulers: `spawn`, `on`, `resume_on`.
///
/// - `spawn(ex, awaitable)` starts the awaitable on `ex` and returns at once;
///   the work is detached (fire-and-forget) and an exception escaping it
///   terminates the program. Prefer `async_scope::spawn` for structured work
///   whose completion and errors you want back.
/// - `co_await on(ex)` moves the calling coroutine onto `ex` (it is
///   `co_await ex.schedule()`).
/// - `co_await resume_on(ex, awaitable)` awaits the awaitable, then moves onto
///   `ex` before yielding its result, whatever thread it finished on.
///
/// The execution context behind a scheduler must outlive the work it runs.
#pragma once

#include <weft/concepts.hpp>
#include <weft/detail/combinator_child.hpp>
#include <weft/detail/detached_task.hpp>
#include <weft/task.hpp>

#include <memory>
#include <variant>
#include <type_traits>
#include <utility>

namespace weft {

namespace detail {
template <class Schedule, class A>
detached_task spawn_detached(Schedule schedule, A a) {
    co_await std::move(schedule);
    co_await std::move(a);
}
template <class T>
void detached_done(void*, std::coroutine_handle<> self) noexcept {
    auto h = std::coroutine_handle<typename task<T>::promise_type>::from_address(self.address());
    try {
        (void)h.promise().take_result();
    } catch (...) {
        std::terminate(); // detached work has nobody to report to
    }
    h.destroy();
}
} // namespace detail

/// Starts `a` on `ex`, detached. `a` is moved into the spawned coroutine;
/// `ex.schedule()` is called here, so `ex` may be a temporary handle.
template <class S, awaitable A>
    requires scheduler<std::remove_reference_t<S>>
void spawn(S&& ex, A&& a) {
    using awaitable_t = std::decay_t<A>;
    if constexpr (is_task_v<awaitable_t> && detail::posts_handles<std::remove_reference_t<S>>) {
        // The task's own frame is posted; it frees itself when done.
        auto h = awaitable_t(static_cast<A&&>(a)).release();
        h.promise().set_on_done(&detail::detached_done<await_result_t<awaitable_t>>, nullptr);
        try {
            ex.post(h);
        } catch (...) {
            h.destroy();
            throw;
        }
    } else {
        detail::spawn_detached(ex.schedule(), awaitable_t(static_cast<A&&>(a))).start();
    }
}

/// `co_await on(ex)`: continue on `ex`.
template <class S>
    requires scheduler<std::remove_reference_t<S>>
auto on(S&& ex) {
    return ex.schedule();
}

/// Awaits `a`, then continues on `ex` before returning its result.
template <scheduler S, awaitable A>
auto resume_on(S& ex, A a) -> task<await_result_t<A>> {
    using result_t = await_result_t<A>;
    // The outcome waits in the frame while the coroutine moves to `ex`.
    detail::result_storage<detail::stored_t<result_t>> outcome;
    try {
        if constexpr (std::is_void_v<result_t>) {
            co_await std::move(a);
            outcome.set_value(std::monostate{});
        } else if constexpr (std::is_lvalue_reference_v<result_t>) {
            outcome.set_value(std::addressof(co_await std::move(a)));
        } else {
            outcome.set_value(co_await std::move(a));
        }
    } catch (...) {
        outcome.set_exception(std::current_exception());
    }
    co_await ex.schedule();
    if constexpr (std::is_void_v<result_t>) {
        outcome.take();
    } else if constexpr (std::is_lvalue_reference_v<result_t>) {
        co_return *outcome.take();
    } else {
        co_return outcome.take();
    }
}

} // namespace weft
