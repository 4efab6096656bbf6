/// \file
/// Helpers for the tests of weft's synchronisation primitives (mutex,
/// semaphore, event, latch, channel).
///
/// `start(make, token)` runs `co_await make()` in a detached root coroutine
/// whose stop token is `token`, through the trampoline, on the calling
/// thread: it runs until it first suspends, and the test can inspect its
/// `outcome` (done? value? exception?) at any time afterwards. Because a
/// coroutine woken from plain (non-coroutine) code runs inline, the
/// single-threaded tests are fully deterministic.
#pragma once

#include <weft/concepts.hpp>
#include <weft/detail/trampoline.hpp>
#include <weft/stop.hpp>

#include <atomic>
#include <coroutine>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace weft::test {

/// What became of a coroutine started with `start()`.
template <class T>
struct outcome {
    std::atomic<bool> done{false};
    std::optional<T> value;
    std::exception_ptr error;

    /// True once it finished; its value/error may then be read.
    [[nodiscard]] bool finished() const noexcept { return done.load(std::memory_order_acquire); }
    [[nodiscard]] bool succeeded() const noexcept { return finished() && value.has_value(); }
    /// True when it finished by throwing an `E`.
    template <class E>
    [[nodiscard]] bool threw() const {
        if (!finished() || !error) {
            return false;
        }
        try {
            std::rethrow_exception(error);
        } catch (const E&) {
            return true;
        } catch (...) {
            return false;
        }
    }
    [[nodiscard]] bool cancelled() const { return threw<weft::operation_cancelled>(); }
};

namespace detail {

/// A detached root coroutine that carries its own stop token.
struct root_coroutine {
    struct promise_type {
        template <class F, class Out>
        promise_type(F&, std::stop_token& token, Out&) noexcept : m_token(token) {}

        root_coroutine get_return_object() noexcept {
            return {std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() noexcept { return {}; }
        std::suspend_never final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); }

        const std::stop_token* stop_token_ptr() const noexcept { return &m_token; }
        void set_stop_token_ptr(const std::stop_token*) noexcept {}

        std::stop_token m_token;
    };
    std::coroutine_handle<promise_type> m_handle;
};

template <class F>
using started_result_t = weft::await_result_t<std::invoke_result_t<F&>>;
template <class F>
using stored_t = std::conditional_t<std::is_void_v<started_result_t<F>>, std::monostate,
                                    std::remove_cvref_t<started_result_t<F>>>;

template <class F, class Out>
root_coroutine run_root(F make, std::stop_token, Out out) {
    try {
        if constexpr (std::is_void_v<started_result_t<F>>) {
            co_await make();
            out->value.emplace();
        } else {
            out->value.emplace(co_await make());
        }
    } catch (...) {
        out->error = std::current_exception();
    }
    // release: the value/error written above must be visible to a thread
    // that sees `done` (finished() acquires).
    out->done.store(true, std::memory_order_release);
}

} // namespace detail

/// Starts `co_await make()` on this thread with `token` as its stop token.
template <class F>
auto start(F make, std::stop_token token = {}) {
    using out_t = outcome<detail::stored_t<F>>;
    auto out = std::make_shared<out_t>();
    auto root = detail::run_root(std::move(make), std::move(token), out);
    weft::detail::resume(root.m_handle);
    return out;
}

/// Runs `fn(i)` on `n` threads and joins them.
template <class Fn>
void run_on_threads(int n, Fn fn) {
    std::vector<std::thread> threads;
    threads.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        threads.emplace_back([&fn, i] { fn(i); });
    }
    for (auto& t : threads) {
        t.join();
    }
}

} // namespace weft::test
