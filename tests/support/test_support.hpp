/// \file
/// Helpers shared by weft's tests: lifetime counting, a hand-driven executor
/// (which doubles as proof that a user-defined executor plugs in), and an
/// awaitable that waits until its coroutine is asked to stop.
#pragma once

#include <weft/stop.hpp>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>
#include <stop_token>

namespace weft::test {

/// True in sanitizer builds, where stress tests run fewer rounds.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr bool sanitized = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
inline constexpr bool sanitized = true;
#else
inline constexpr bool sanitized = false;
#endif
#else
inline constexpr bool sanitized = false;
#endif

/// Counts live instances, to catch leaks and double destruction.
struct lifetime_counter {
    static inline std::atomic<int> live{0};
    static inline std::atomic<int> constructed{0};
    int value = 0;
    bool moved_from = false;

    lifetime_counter(int v = 0) noexcept : value(v) { ++live, ++constructed; }
    lifetime_counter(const lifetime_counter& o) noexcept : value(o.value) { ++live, ++constructed; }
    lifetime_counter(lifetime_counter&& o) noexcept : value(o.value) {
        o.moved_from = true;
        ++live, ++constructed;
    }
    lifetime_counter& operator=(const lifetime_counter&) = default;
    lifetime_counter& operator=(lifetime_counter&&) = default;
    ~lifetime_counter() { --live; }

    static void reset() noexcept {
        live = 0;
        constructed = 0;
    }
};

/// A user-defined executor: `schedule()` queues the coroutine, and the test
/// decides when it runs (`run_one`, `run_all`), resuming with a plain
/// `h.resume()` as any hand-written executor would. Thread-safe.
class manual_executor {
public:
    struct schedule_awaiter {
        manual_executor* m_ex;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<> h) {
            std::lock_guard lock(m_ex->m_mutex);
            m_ex->m_queue.push_back(h);
        }
        void await_resume() const noexcept {}
    };
    schedule_awaiter schedule() noexcept { return {this}; }

    bool run_one() {
        std::coroutine_handle<> h;
        {
            std::lock_guard lock(m_mutex);
            if (m_queue.empty()) {
                return false;
            }
            h = m_queue.front();
            m_queue.pop_front();
        }
        h.resume();
        return true;
    }
    std::size_t run_all() {
        std::size_t n = 0;
        while (run_one()) {
            ++n;
        }
        return n;
    }
    std::size_t pending() {
        std::lock_guard lock(m_mutex);
        return m_queue.size();
    }

private:
    std::mutex m_mutex;
    std::deque<std::coroutine_handle<>> m_queue;
};

/// `co_await wait_for_stop{}` suspends until the awaiting coroutine's stop
/// token is triggered, then throws operation_cancelled. The resumption happens
/// on the thread that requested stop.
struct wait_for_stop {
    struct resume_cb {
        wait_for_stop* m_self;
        void operator()() const noexcept {
            // The registering thread may still be in await_suspend: whoever
            // comes second resumes.
            if (m_self->m_state.exchange(true, std::memory_order_acq_rel)) {
                m_self->m_handle.resume();
            }
        }
    };
    std::coroutine_handle<> m_handle;
    std::atomic<bool> m_state{false};
    std::optional<std::stop_callback<resume_cb>> m_cb;

    bool await_ready() const noexcept { return false; }
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h) {
        m_handle = h;
        m_cb.emplace(weft::detail::stop_token_of(h.promise()), resume_cb{this});
        return !m_state.exchange(true, std::memory_order_acq_rel);
    }
    [[noreturn]] void await_resume() { throw weft::operation_cancelled(); }
};

} // namespace weft::test
