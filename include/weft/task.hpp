/// \file
/// `task<T>`: a lazy, move-only coroutine that produces one `T` when awaited.
///
/// A task does not start until it is awaited (`co_await t`) or handed to a
/// starter (`sync_wait`, `spawn`, `async_scope::spawn`, the combinators). It
/// then runs on the awaiting thread until it first suspends, and when it
/// finishes it resumes its awaiter on the thread it finished on. Its result, or
/// the exception that escaped it, is handed to the awaiter; `task<void>` and
/// `task<T&>` work the same way.
///
/// Lifetime: the task object owns the coroutine frame; destroying it destroys
/// the frame (only allowed while the task is not running). A task may be awaited
/// once. Arguments a task coroutine takes by reference must outlive it: see
/// docs/pitfalls.md.
///
/// Threading: a task is not thread-safe; one awaiter at a time. It inherits
/// the stop token of its awaiter (`co_await get_stop_token()`).
///
/// Stack: awaiting never grows the stack, in any build (see
/// detail/trampoline.hpp): a loop of a million synchronously completing awaits
/// runs at constant depth even at -O0.
#pragma once

#include <weft/detail/trampoline.hpp>
#include <weft/frame_allocator.hpp>
#include <weft/stop.hpp>

#include <cassert>
#include <coroutine>
#include <exception>
#include <memory>
#include <type_traits>
#include <utility>

namespace weft {

template <class T = void>
class task;

template <class T>
inline constexpr bool is_task_v = false;
template <class T>
inline constexpr bool is_task_v<task<T>> = true;

namespace detail {

class task_promise_base : public frame_allocation {
public:
    std::suspend_always initial_suspend() noexcept { return {}; }

    struct final_awaiter {
        bool await_ready() const noexcept { return false; }
        template <class Promise>
        void await_suspend(std::coroutine_handle<Promise> h) noexcept {
            // The last thing done in this frame: the awaiter may destroy it.
            task_promise_base& p = h.promise();
            if (p.m_on_done != nullptr) {
                p.m_on_done(p.m_on_done_context, h);
            } else {
                detail::resume(p.m_continuation);
            }
        }
        void await_resume() const noexcept {}
    };
    final_awaiter final_suspend() noexcept { return {}; }

    const std::stop_token* stop_token_ptr() const noexcept { return m_stop; }
    void set_stop_token_ptr(const std::stop_token* t) noexcept { m_stop = t; }

    void set_continuation(std::coroutine_handle<> h) noexcept { m_continuation = h; }

    /// Called, instead of resuming a continuation, when a task that nobody
    /// awaits finishes (used by starters such as `async_scope::spawn`, which
    /// thus need no coroutine frame of their own per task). It receives the
    /// finished task's handle and owns the frame from then on.
    using on_done_fn = void (*)(void* context, std::coroutine_handle<> self) noexcept;
    void set_on_done(on_done_fn fn, void* context) noexcept {
        m_on_done = fn;
        m_on_done_context = context;
    }

private:
    std::coroutine_handle<> m_continuation;
    on_done_fn m_on_done = nullptr;
    void* m_on_done_context = nullptr;
    const std::stop_token* m_stop = &never_stop_token;
};

/// Holds a coroutine's outcome: nothing yet, a value, or an exception.
template <class T>
class result_storage {
public:
    result_storage() noexcept {}
    ~result_storage() {
        if (m_state == state::value) {
            m_value.~T();
        } else if (m_state == state::exception) {
            m_exception.~exception_ptr();
        }
    }
    template <class U>
    void set_value(U&& v) {
        ::new (static_cast<void*>(std::addressof(m_value))) T(std::forward<U>(v));
        m_state = state::value;
    }
    void set_exception(std::exception_ptr e) noexcept {
        ::new (static_cast<void*>(std::addressof(m_exception))) std::exception_ptr(std::move(e));
        m_state = state::exception;
    }
    T take() {
        if (m_state == state::exception) {
            std::rethrow_exception(m_exception);
        }
        assert(m_state == state::value && "task awaited before it finished, or twice");
        return std::move(m_value);
    }

private:
    enum class state : unsigned char { empty, value, exception };
    union {
        T m_value;
        std::exception_ptr m_exception;
    };
    state m_state = state::empty;
};

template <>
class result_storage<void> {
public:
    void set_exception(std::exception_ptr e) noexcept { m_exception = std::move(e); }
    void take() {
        if (m_exception) {
            std::rethrow_exception(m_exception);
        }
    }

private:
    std::exception_ptr m_exception;
};

template <class T>
class task_promise final : public task_promise_base {
public:
    task<T> get_return_object() noexcept;
    template <class U = T>
        requires std::is_convertible_v<U&&, T>
    void return_value(U&& v) {
        m_result.set_value(std::forward<U>(v));
    }
    void unhandled_exception() noexcept { m_result.set_exception(std::current_exception()); }
    T take_result() { return m_result.take(); }

private:
    result_storage<T> m_result;
};

template <class T>
class task_promise<T&> final : public task_promise_base {
public:
    task<T&> get_return_object() noexcept;
    void return_value(T& v) noexcept { m_result.set_value(std::addressof(v)); }
    void unhandled_exception() noexcept { m_result.set_exception(std::current_exception()); }
    T& take_result() { return *m_result.take(); }

private:
    result_storage<T*> m_result;
};

template <>
class task_promise<void> final : public task_promise_base {
public:
    task<void> get_return_object() noexcept;
    void return_void() noexcept {}
    void unhandled_exception() noexcept { m_result.set_exception(std::current_exception()); }
    void take_result() { m_result.take(); }

private:
    result_storage<void> m_result;
};

/// Starts `child` as the continuation-bearing callee of `parent`: it inherits
/// the parent's stop token unless it already has one, and resumes the parent
/// when it finishes.
template <class ChildPromise, class ParentPromise>
void start_child(std::coroutine_handle<ChildPromise> child,
                 std::coroutine_handle<ParentPromise> parent) {
    ChildPromise& p = child.promise();
    p.set_continuation(parent);
    if constexpr (stoppable_promise<ParentPromise>) {
        if (p.stop_token_ptr() == &never_stop_token) {
            p.set_stop_token_ptr(parent.promise().stop_token_ptr());
        }
    }
    detail::resume(child);
}

} // namespace detail

template <class T>
class [[nodiscard]] task {
public:
    using promise_type = detail::task_promise<T>;
    using value_type = T;

    task() noexcept = default;
    explicit task(std::coroutine_handle<promise_type> h) noexcept : m_coro(h) {}
    task(task&& other) noexcept : m_coro(std::exchange(other.m_coro, {})) {}
    task& operator=(task&& other) noexcept {
        if (this != &other) {
            destroy();
            m_coro = std::exchange(other.m_coro, {});
        }
        return *this;
    }
    task(const task&) = delete;
    task& operator=(const task&) = delete;
    ~task() { destroy(); }

    /// True when the task holds a coroutine (it was not moved from).
    [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(m_coro); }
    /// True once the coroutine has run to completion.
    [[nodiscard]] bool is_ready() const noexcept { return !m_coro || m_coro.done(); }

    struct awaiter {
        std::coroutine_handle<promise_type> m_coro;

        bool await_ready() const noexcept { return false; }
        template <class Promise>
        void await_suspend(std::coroutine_handle<Promise> parent) {
            detail::start_child(m_coro, parent);
        }
        decltype(auto) await_resume() { return m_coro.promise().take_result(); }
    };

    awaiter operator co_await() && noexcept {
        assert(m_coro && "awaiting an empty task");
        return awaiter{m_coro};
    }
    awaiter operator co_await() & noexcept {
        assert(m_coro && "awaiting an empty task");
        return awaiter{m_coro};
    }

    /// The coroutine handle, for starters and combinators. The task keeps
    /// ownership.
    [[nodiscard]] std::coroutine_handle<promise_type> handle() const noexcept { return m_coro; }
    /// Gives up ownership of the frame to the caller.
    [[nodiscard]] std::coroutine_handle<promise_type> release() noexcept {
        return std::exchange(m_coro, {});
    }

private:
    void destroy() noexcept {
        if (m_coro) {
            m_coro.destroy();
            m_coro = {};
        }
    }

    std::coroutine_handle<promise_type> m_coro;
};

namespace detail {
template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
    return task<T>{std::coroutine_handle<task_promise>::from_promise(*this)};
}
template <class T>
task<T&> task_promise<T&>::get_return_object() noexcept {
    return task<T&>{std::coroutine_handle<task_promise>::from_promise(*this)};
}
inline task<void> task_promise<void>::get_return_object() noexcept {
    return task<void>{std::coroutine_handle<task_promise>::from_promise(*this)};
}
} // namespace detail

} // namespace weft
