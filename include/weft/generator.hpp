/// \file
/// `generator<T>`: a synchronous, lazy sequence produced by `co_yield`.
///
/// Iterate with a range-for; each step resumes the coroutine until its next
/// `co_yield` (or its end). `*it` is a reference to the yielded object, which
/// lives in the coroutine until it is resumed again. An exception escaping the
/// coroutine is rethrown from `begin()` or `++it`. A generator cannot
/// `co_await` (use `async_generator` for that).
///
/// Lifetime: move-only; destroying the generator destroys the coroutine
/// wherever it is suspended, running its destructors. Not thread-safe.
#pragma once

#include <weft/frame_allocator.hpp>

#include <coroutine>
#include <cstddef>
#include <exception>
#include <iterator>
#include <memory>
#include <type_traits>
#include <utility>

namespace weft {

template <class T>
class [[nodiscard]] generator {
public:
    using value_type = std::remove_cvref_t<T>;
    using reference = std::conditional_t<std::is_reference_v<T>, T, T&>;
    using pointer = std::add_pointer_t<reference>;

    class promise_type : public detail::frame_allocation {
    public:
        generator get_return_object() noexcept {
            return generator{std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() const noexcept { return {}; }
        std::suspend_always final_suspend() const noexcept { return {}; }

        std::suspend_always yield_value(std::remove_reference_t<reference>& v) noexcept {
            m_value = std::addressof(v);
            return {};
        }
        std::suspend_always yield_value(std::remove_reference_t<reference>&& v) noexcept {
            m_value = std::addressof(v);
            return {};
        }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { m_exception = std::current_exception(); }

        /// Generators cannot await.
        template <class U>
        std::suspend_never await_transform(U&&) = delete;

        reference value() const noexcept { return static_cast<reference>(*m_value); }
        void rethrow_if_failed() {
            if (m_exception) {
                std::rethrow_exception(std::exchange(m_exception, {}));
            }
        }

    private:
        pointer m_value = nullptr;
        std::exception_ptr m_exception;
    };

    class iterator {
    public:
        using iterator_category = std::input_iterator_tag;
        using difference_type = std::ptrdiff_t;
        using value_type = generator::value_type;
        using reference = generator::reference;
        using pointer = generator::pointer;

        iterator() noexcept = default;
        explicit iterator(std::coroutine_handle<promise_type> h) noexcept : m_coro(h) {}

        friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
            return !it.m_coro || it.m_coro.done();
        }
        iterator& operator++() {
            m_coro.resume();
            if (m_coro.done()) {
                m_coro.promise().rethrow_if_failed();
            }
            return *this;
        }
        void operator++(int) { ++*this; }
        reference operator*() const noexcept { return m_coro.promise().value(); }
        pointer operator->() const noexcept { return std::addressof(**this); }

    private:
        std::coroutine_handle<promise_type> m_coro;
    };

    generator() noexcept = default;
    generator(generator&& o) noexcept : m_coro(std::exchange(o.m_coro, {})) {}
    generator& operator=(generator&& o) noexcept {
        if (this != &o) {
            if (m_coro) {
                m_coro.destroy();
            }
            m_coro = std::exchange(o.m_coro, {});
        }
        return *this;
    }
    ~generator() {
        if (m_coro) {
            m_coro.destroy();
        }
    }

    /// Starts the coroutine and runs it to its first `co_yield`.
    iterator begin() {
        if (m_coro) {
            m_coro.resume();
            if (m_coro.done()) {
                m_coro.promise().rethrow_if_failed();
            }
        }
        return iterator{m_coro};
    }
    std::default_sentinel_t end() const noexcept { return {}; }

private:
    explicit generator(std::coroutine_handle<promise_type> h) noexcept : m_coro(h) {}
    std::coroutine_handle<promise_type> m_coro;
};

} // namespace weft
