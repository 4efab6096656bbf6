/// \file
/// The child coroutine that `when_all` and `when_any` wrap each awaitable in.
///
/// Each child stores its own outcome and, as the very last thing it does,
/// reports to the shared `combinator_state`; the child that brings the count
/// of unfinished children to zero resumes the parent.
#pragma once

#include <weft/concepts.hpp>
#include <weft/task.hpp>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <limits>
#include <span>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <variant>

namespace weft::detail {

enum class combinator_mode : unsigned char { all, any };

class combinator_state {
public:
    static constexpr std::size_t none = std::numeric_limits<std::size_t>::max();

    combinator_state(std::size_t children, combinator_mode mode,
                     std::stop_source* source = nullptr) noexcept
        // One extra count is held by the parent until it has started every
        // child, so that no child can resume it while it is still starting.
        : m_remaining(children + 1), m_mode(mode), m_source(source) {}

    /// Called by the parent once every child has been started: true when the
    /// parent must suspend (some child is still running).
    bool parent_started_all(std::coroutine_handle<> parent) noexcept {
        m_parent = parent;
        // acq_rel: acquire the children's results if they all finished
        // already; release the write of m_parent to the child that finishes last.
        return m_remaining.fetch_sub(1, std::memory_order_acq_rel) != 1;
    }

    /// Called by a child as its last action. `failed`: it ended with an exception.
    void child_done(std::size_t index, bool failed) noexcept {
        if (failed || m_mode == combinator_mode::any) {
            std::size_t expected = none;
            // relaxed is enough for the CAS itself: the count below orders it
            // before the parent's read.
            if (m_first.compare_exchange_strong(expected, index, std::memory_order_relaxed) &&
                m_source != nullptr) {
                m_source->request_stop();
            }
        }
        // acq_rel: release this child's result; the last child also acquires
        // everybody else's (and the parent's m_parent) before resuming it.
        if (m_remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            detail::resume(m_parent);
        }
    }

    /// The first child to fail (all) or to finish (any), or `none`.
    std::size_t first() const noexcept { return m_first.load(std::memory_order_relaxed); }

private:
    std::atomic<std::size_t> m_remaining;
    std::atomic<std::size_t> m_first{none};
    std::coroutine_handle<> m_parent;
    combinator_mode m_mode;
    std::stop_source* m_source;
};

/// The type a child's result is kept as: references as pointers, void as nothing.
template <class T>
using stored_t = std::conditional_t<
    std::is_void_v<T>, std::monostate,
    std::conditional_t<std::is_lvalue_reference_v<T>, std::remove_reference_t<T>*,
                       std::remove_cvref_t<T>>>;

/// What a combinator hands back for a child of result type T.
template <class T>
using child_result_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class T>
class combinator_child {
public:
    class promise_type : public frame_allocation {
    public:
        combinator_child get_return_object() noexcept {
            return combinator_child{std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() noexcept { return {}; }
        struct final_awaiter {
            bool await_ready() const noexcept { return false; }
            void await_suspend(std::coroutine_handle<promise_type> h) noexcept {
                promise_type& p = h.promise();
                p.m_state->child_done(p.m_index, p.m_failed);
            }
            void await_resume() const noexcept {}
        };
        final_awaiter final_suspend() noexcept { return {}; }

        template <class U>
        void return_value(U&& v) {
            m_result.set_value(std::forward<U>(v));
        }
        void unhandled_exception() noexcept {
            m_failed = true;
            m_result.set_exception(std::current_exception());
        }

        const std::stop_token* stop_token_ptr() const noexcept { return m_stop; }
        void set_stop_token_ptr(const std::stop_token* t) noexcept { m_stop = t; }

        void bind(combinator_state* state, std::size_t index, const std::stop_token* stop) noexcept {
            m_state = state;
            m_index = index;
            m_stop = stop;
        }
        child_result_t<T> take() {
            if constexpr (std::is_lvalue_reference_v<T>) {
                return static_cast<T>(*m_result.take());
            } else {
                return m_result.take();
            }
        }

    private:
        result_storage<stored_t<T>> m_result;
        combinator_state* m_state = nullptr;
        const std::stop_token* m_stop = &never_stop_token;
        std::size_t m_index = 0;
        bool m_failed = false;
    };

    explicit combinator_child(std::coroutine_handle<promise_type> h) noexcept : m_coro(h) {}
    combinator_child(combinator_child&& o) noexcept : m_coro(std::exchange(o.m_coro, {})) {}
    combinator_child& operator=(combinator_child&& o) noexcept {
        std::swap(m_coro, o.m_coro);
        return *this;
    }
    ~combinator_child() {
        if (m_coro) {
            m_coro.destroy();
        }
    }
    std::coroutine_handle<promise_type> handle() const noexcept { return m_coro; }
    promise_type& promise() const noexcept { return m_coro.promise(); }

private:
    std::coroutine_handle<promise_type> m_coro;
};

template <class T, class A>
combinator_child<T> make_combinator_child(A a) {
    if constexpr (std::is_void_v<T>) {
        co_await std::move(a);
        co_return std::monostate{};
    } else if constexpr (std::is_lvalue_reference_v<T>) {
        co_return std::addressof(co_await std::move(a));
    } else {
        co_return co_await std::move(a);
    }
}

/// Awaited by the parent: starts every (already bound) child, then suspends
/// until they have all finished.
struct start_children {
    combinator_state& m_state;
    std::span<const std::coroutine_handle<>> m_children;

    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> parent) {
        for (auto h : m_children) {
            detail::resume(h);
        }
        return m_state.parent_started_all(parent);
    }
    void await_resume() const noexcept {}
};

/// Yields a pointer to the awaiting coroutine's stop token, which lives at
/// least as long as that coroutine.
struct stop_token_ptr_awaiter {
    const std::stop_token* m_token = &never_stop_token;
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h) noexcept {
        m_token = &stop_token_of(h.promise());
        return false;
    }
    const std::stop_token* await_resume() const noexcept { return m_token; }
};

} // namespace weft::detail
