/// \file
/// `sync_wait(awaitable)`: blocks the calling thread until the awaitable
/// completes, and returns its result (or rethrows its exception).
///
/// The bridge from ordinary code into coroutines (`main`, tests). The awaitable
/// starts on the calling thread; if it moves to another executor, the calling
/// thread sleeps (no spinning) until it completes there. An optional
/// `std::stop_token` becomes the stop token of the awaited coroutine.
///
/// Do not call it from inside a coroutine running on an executor whose threads
/// the awaited work needs: that thread would block and could deadlock.
#pragma once

#include <weft/concepts.hpp>
#include <weft/task.hpp>

#include <condition_variable>
#include <mutex>
#include <stop_token>
#include <type_traits>
#include <variant>

namespace weft {

namespace detail {

/// Wakes the thread blocked in sync_wait. It lives on that thread's stack.
/// The flag is set and the condition notified under the mutex, so the waiter
/// (which must take the mutex to see the flag) cannot return and destroy the
/// signal while `set()` still touches it.
class sync_wait_signal {
public:
    void set() noexcept {
        std::lock_guard lock(m_mutex);
        m_done = true;
        m_cv.notify_one();
    }
    void wait() noexcept {
        std::unique_lock lock(m_mutex);
        m_cv.wait(lock, [this] { return m_done; });
    }

private:
    std::mutex m_mutex;
    std::condition_variable m_cv;
    bool m_done = false;
};

template <class T>
class sync_wait_task;

template <class T>
class sync_wait_promise : public frame_allocation {
public:
    sync_wait_task<T> get_return_object() noexcept;
    std::suspend_always initial_suspend() noexcept { return {}; }
    struct final_awaiter {
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<sync_wait_promise> h) noexcept {
            h.promise().m_signal->set();
        }
        void await_resume() const noexcept {}
    };
    final_awaiter final_suspend() noexcept { return {}; }

    template <class U>
    void return_value(U&& v) {
        m_result.set_value(std::forward<U>(v));
    }
    void unhandled_exception() noexcept { m_result.set_exception(std::current_exception()); }

    const std::stop_token* stop_token_ptr() const noexcept { return &m_token; }
    void set_stop_token_ptr(const std::stop_token*) noexcept {}

    T take() { return m_result.take(); }

    std::stop_token m_token;
    sync_wait_signal* m_signal = nullptr;

private:
    result_storage<T> m_result;
};

template <class T>
class sync_wait_task {
public:
    using promise_type = sync_wait_promise<T>;
    explicit sync_wait_task(std::coroutine_handle<promise_type> h) noexcept : m_coro(h) {}
    sync_wait_task(sync_wait_task&& o) noexcept : m_coro(std::exchange(o.m_coro, {})) {}
    ~sync_wait_task() {
        if (m_coro) {
            m_coro.destroy();
        }
    }
    std::coroutine_handle<promise_type> m_coro;
};

template <class T>
sync_wait_task<T> sync_wait_promise<T>::get_return_object() noexcept {
    return sync_wait_task<T>{std::coroutine_handle<sync_wait_promise>::from_promise(*this)};
}

/// Stores a reference as a pointer so that result_storage can hold it.
template <class T>
struct sync_wait_value {
    using type = std::remove_cvref_t<T>;
};
template <class T>
    requires std::is_lvalue_reference_v<T>
struct sync_wait_value<T> {
    using type = std::remove_reference_t<T>*;
};

template <class T, class A>
sync_wait_task<T> make_sync_wait_task(A&& a) {
    if constexpr (std::is_void_v<await_result_t<A>>) {
        co_await static_cast<A&&>(a);
        co_return std::monostate{};
    } else if constexpr (std::is_lvalue_reference_v<await_result_t<A>>) {
        co_return std::addressof(co_await static_cast<A&&>(a));
    } else {
        co_return co_await static_cast<A&&>(a);
    }
}

} // namespace detail

/// Runs `a` to completion on this thread (and wherever it moves itself), with
/// `token` as its stop token; returns its result.
template <awaitable A>
decltype(auto) sync_wait(A&& a, std::stop_token token = {}) {
    using result_t = await_result_t<A>;
    using stored_t = std::conditional_t<std::is_void_v<result_t>, std::monostate,
                                        typename detail::sync_wait_value<result_t>::type>;
    auto t = detail::make_sync_wait_task<stored_t>(static_cast<A&&>(a));
    detail::sync_wait_signal signal;
    t.m_coro.promise().m_token = std::move(token);
    t.m_coro.promise().m_signal = &signal;
    detail::resume_now(t.m_coro);
    signal.wait();
    if constexpr (std::is_void_v<result_t>) {
        t.m_coro.promise().take();
    } else if constexpr (std::is_lvalue_reference_v<result_t>) {
        return static_cast<result_t>(*t.m_coro.promise().take());
    } else {
        return t.m_coro.promise().take();
    }
}

} // namespace weft
