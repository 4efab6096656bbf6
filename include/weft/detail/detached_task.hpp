/// \file
/// A fire-and-forget coroutine: starts when asked, frees itself when done.
///
/// Used by `spawn` and by executors' internals. An exception escaping a
/// detached coroutine has nobody to go to and terminates the program, so the
/// library only detaches bodies that catch what they can throw.
#pragma once

#include <weft/detail/trampoline.hpp>
#include <weft/frame_allocator.hpp>

#include <coroutine>
#include <exception>
#include <utility>

namespace weft::detail {

class detached_task {
public:
    struct promise_type : frame_allocation {
        detached_task get_return_object() noexcept {
            return detached_task{std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() noexcept { return {}; }
        std::suspend_never final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        [[noreturn]] void unhandled_exception() noexcept { std::terminate(); }
    };

    explicit detached_task(std::coroutine_handle<promise_type> h) noexcept : m_coro(h) {}
    detached_task(detached_task&& o) noexcept : m_coro(std::exchange(o.m_coro, {})) {}
    detached_task& operator=(detached_task&&) = delete;
    ~detached_task() {
        if (m_coro) {
            m_coro.destroy(); // never started
        }
    }

    /// Starts the coroutine on this thread (through the trampoline); from here
    /// on it owns itself.
    void start() && { detail::resume(std::exchange(m_coro, {})); }
    /// Gives the never-started coroutine to the caller, who must resume it once.
    std::coroutine_handle<> release() && { return std::exchange(m_coro, {}); }

private:
    std::coroutine_handle<promise_type> m_coro;
};

} // namespace weft::detail
