/// \file
/// `async_generator<T>`: a lazy sequence whose producer may `co_await`.
///
/// The natural type for a stream of tokens: the producer `co_yield`s values
/// and may await anything in between (a channel, a timer, the GPU); the
/// consumer awaits each element:
///
///     for (auto it = co_await gen.begin(); it != gen.end(); co_await ++it) use(*it);
///     while (auto v = co_await gen.next()) use(*v);   // moves each value out
///
/// The producer runs only while the consumer awaits it (no read-ahead), on
/// whatever thread resumes it, and hands each value back on that thread. It
/// inherits the consumer's stop token at each step. An exception escaping the
/// producer is rethrown by the awaited step.
///
/// Lifetime: move-only. Destroying the generator destroys the producer where
/// it is suspended (never while a step is being awaited). One consumer at a time.
#pragma once

#include <weft/detail/trampoline.hpp>
#include <weft/frame_allocator.hpp>
#include <weft/stop.hpp>

#include <cassert>
#include <coroutine>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

namespace weft {

template <class T>
class [[nodiscard]] async_generator {
public:
    using value_type = std::remove_cvref_t<T>;
    using reference = std::conditional_t<std::is_reference_v<T>, T, T&>;
    using pointer = std::add_pointer_t<reference>;

    class promise_type : public detail::frame_allocation {
    public:
        async_generator get_return_object() noexcept {
            return async_generator{std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() const noexcept { return {}; }

        /// Suspends the producer and resumes the consumer (through the
        /// trampoline: the producer may be on another thread by now).
        struct to_consumer {
            bool await_ready() const noexcept { return false; }
            void await_suspend(std::coroutine_handle<promise_type> h) noexcept {
                detail::resume(h.promise().m_consumer);
            }
            void await_resume() const noexcept {}
        };
        to_consumer final_suspend() noexcept { return {}; }

        to_consumer yield_value(std::remove_reference_t<reference>& v) noexcept {
            m_value = std::addressof(v);
            return {};
        }
        to_consumer yield_value(std::remove_reference_t<reference>&& v) noexcept {
            m_value = std::addressof(v);
            return {};
        }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { m_exception = std::current_exception(); }

        const std::stop_token* stop_token_ptr() const noexcept { return m_stop; }
        void set_stop_token_ptr(const std::stop_token* t) noexcept { m_stop = t; }

    private:
        friend class async_generator;
        pointer m_value = nullptr;
        std::exception_ptr m_exception;
        std::coroutine_handle<> m_consumer;
        const std::stop_token* m_stop = &detail::never_stop_token;
    };

    using handle_type = std::coroutine_handle<promise_type>;

    /// Awaiter that resumes the producer until its next `co_yield` or its end.
    class step_awaiter {
    public:
        explicit step_awaiter(handle_type h) noexcept : m_coro(h) {}
        bool await_ready() const noexcept { return !m_coro || m_coro.done(); }
        template <class Promise>
        void await_suspend(std::coroutine_handle<Promise> consumer) {
            promise_type& p = m_coro.promise();
            p.m_consumer = consumer;
            p.m_stop = &detail::stop_token_of(consumer.promise());
            detail::resume(m_coro);
        }

    protected:
        /// True when the producer yielded a value; rethrows what escaped it.
        bool finish_step() {
            if (!m_coro) {
                return false;
            }
            if (m_coro.done()) {
                if (auto e = std::exchange(m_coro.promise().m_exception, {})) {
                    std::rethrow_exception(e);
                }
                return false;
            }
            return true;
        }
        handle_type m_coro;
    };

    class iterator {
    public:
        using iterator_category = std::input_iterator_tag;
        using difference_type = std::ptrdiff_t;
        using value_type = async_generator::value_type;
        using reference = async_generator::reference;
        using pointer = async_generator::pointer;

        iterator() noexcept = default;
        explicit iterator(handle_type h) noexcept : m_coro(h) {}

        friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
            return !it.m_coro || it.m_coro.done();
        }
        reference operator*() const noexcept {
            return static_cast<reference>(*m_coro.promise().m_value);
        }
        pointer operator->() const noexcept { return std::addressof(**this); }

        /// `co_await ++it`: advances to the next element.
        auto operator++() {
            struct awaiter : step_awaiter {
                iterator* m_it;
                awaiter(iterator* it) noexcept : step_awaiter(it->m_coro), m_it(it) {}
                iterator& await_resume() {
                    this->finish_step();
                    return *m_it;
                }
            };
            return awaiter{this};
        }

    private:
        handle_type m_coro;
    };

    async_generator() noexcept = default;
    async_generator(async_generator&& o) noexcept : m_coro(std::exchange(o.m_coro, {})) {}
    async_generator& operator=(async_generator&& o) noexcept {
        if (this != &o) {
            destroy();
            m_coro = std::exchange(o.m_coro, {});
        }
        return *this;
    }
    ~async_generator() { destroy(); }

    /// `co_await gen.begin()`: runs the producer to its first element.
    auto begin() {
        struct awaiter : step_awaiter {
            using step_awaiter::step_awaiter;
            iterator await_resume() {
                this->finish_step();
                return iterator{this->m_coro};
            }
        };
        return awaiter{m_coro};
    }
    std::default_sentinel_t end() const noexcept { return {}; }

    /// `co_await gen.next()`: the next value moved out of the producer, or
    /// `std::nullopt` at the end.
    auto next() {
        struct awaiter : step_awaiter {
            using step_awaiter::step_awaiter;
            std::optional<value_type> await_resume() {
                if (!this->finish_step()) {
                    return std::nullopt;
                }
                return std::optional<value_type>(std::move(*this->m_coro.promise().m_value));
            }
        };
        return awaiter{m_coro};
    }

private:
    explicit async_generator(handle_type h) noexcept : m_coro(h) {}
    void destroy() noexcept {
        if (m_coro) {
            m_coro.destroy();
            m_coro = {};
        }
    }
    handle_type m_coro;
};

} // namespace weft
