/// \file
/// `async_scope`: structured concurrency for a dynamic number of tasks.
///
///     async_scope scope;
///     for (auto& c : clients) scope.spawn(pool, serve(c));
///     co_await scope.join();   // every spawned task has finished here
///
/// `spawn(ex, awaitable)` starts the work on scheduler `ex` (or, without `ex`,
/// on the calling thread) and returns at once. `co_await join()` completes when
/// every spawned task has finished and then rethrows the first exception that
/// escaped any of them (the others are dropped). All spawned work gets the
/// scope's stop token: `request_stop()` asks every task to stop.
///
/// Lifetime: nothing outlives the scope. Every spawned task must have finished
/// before the scope is destroyed: always `co_await join()`. Destroying a scope
/// with work still running is a bug and terminates the program. A scope can be
/// reused after `join()` completes.
///
/// Threading: `spawn`, `request_stop` and `outstanding` are thread-safe; one
/// `join` at a time.
#pragma once

#include <weft/concepts.hpp>
#include <weft/detail/trampoline.hpp>
#include <weft/frame_allocator.hpp>
#include <weft/stop.hpp>
#include <weft/task.hpp>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <mutex>
#include <stop_token>
#include <type_traits>
#include <utility>

namespace weft {

class async_scope {
public:
    async_scope() = default;
    async_scope(const async_scope&) = delete;
    async_scope& operator=(const async_scope&) = delete;
    ~async_scope() {
        if (m_count.load(std::memory_order_acquire) > 1) {
            std::fputs("weft::async_scope destroyed with tasks still running; "
                       "co_await scope.join() first\n",
                       stderr);
            std::terminate();
        }
    }

    /// Starts `a` on `ex`. `a` is moved into the scope's bookkeeping
    /// coroutine; `ex.schedule()` is called here, so `ex` itself may be a
    /// temporary handle (what its schedule awaitable refers to must live on).
    template <class S, awaitable A>
        requires scheduler<std::remove_reference_t<S>>
    void spawn(S&& ex, A&& a) {
        using awaitable_t = std::decay_t<A>;
        if constexpr (is_task_v<awaitable_t> && detail::posts_handles<std::remove_reference_t<S>>) {
            // Fast path: the task itself is posted to the executor and reports
            // to the scope when done; no bookkeeping coroutine is needed.
            auto h = bind(awaitable_t(static_cast<A&&>(a)));
            try {
                ex.post(h);
            } catch (...) {
                h.destroy();
                finish_one();
                throw;
            }
        } else {
            add_one();
            scoped(ex.schedule(), awaitable_t(static_cast<A&&>(a))).start(this);
        }
    }

    /// Starts `a` on the calling thread, until it first suspends.
    template <awaitable A>
    void spawn(A&& a) {
        using awaitable_t = std::decay_t<A>;
        if constexpr (is_task_v<awaitable_t>) {
            detail::resume(bind(awaitable_t(static_cast<A&&>(a))));
        } else {
            add_one();
            scoped_here(awaitable_t(static_cast<A&&>(a))).start(this);
        }
    }

    /// `co_await join()`: waits for every spawned task, then rethrows the
    /// first exception one of them threw.
    auto join() noexcept {
        struct awaiter {
            async_scope* m_scope;
            bool await_ready() const noexcept { return false; }
            bool await_suspend(std::coroutine_handle<> h) noexcept {
                m_scope->m_joiner = h;
                // acq_rel: publishes m_joiner to the last task to finish, and
                // (when nothing is left) acquires every task's effects.
                return m_scope->m_count.fetch_sub(1, std::memory_order_acq_rel) != 1;
            }
            void await_resume() {
                // Ready for reuse: the join's own reference is back.
                m_scope->m_count.store(1, std::memory_order_relaxed);
                std::exception_ptr e;
                {
                    std::lock_guard lock(m_scope->m_error_mutex);
                    e = std::exchange(m_scope->m_error, {});
                }
                if (e) {
                    std::rethrow_exception(e);
                }
            }
        };
        return awaiter{this};
    }

    void request_stop() noexcept { m_source.request_stop(); }
    [[nodiscard]] std::stop_token get_token() const noexcept { return m_token; }
    /// Tasks spawned and not yet finished.
    [[nodiscard]] std::size_t outstanding() const noexcept {
        return m_count.load(std::memory_order_relaxed) - 1;
    }

private:
    class scoped_task {
    public:
        class promise_type : public detail::frame_allocation {
        public:
            scoped_task get_return_object() noexcept {
                return scoped_task{std::coroutine_handle<promise_type>::from_promise(*this)};
            }
            std::suspend_always initial_suspend() noexcept { return {}; }
            struct final_awaiter {
                bool await_ready() const noexcept { return false; }
                void await_suspend(std::coroutine_handle<promise_type> h) noexcept {
                    async_scope* scope = h.promise().m_scope;
                    h.destroy(); // before the scope may be released
                    scope->finish_one();
                }
                void await_resume() const noexcept {}
            };
            final_awaiter final_suspend() noexcept { return {}; }
            void return_void() noexcept {}
            void unhandled_exception() noexcept { m_scope->record(std::current_exception()); }

            const std::stop_token* stop_token_ptr() const noexcept { return &m_scope->m_token; }
            void set_stop_token_ptr(const std::stop_token*) noexcept {}

            async_scope* m_scope = nullptr;
        };

        explicit scoped_task(std::coroutine_handle<promise_type> h) noexcept : m_coro(h) {}
        scoped_task(scoped_task&& o) noexcept : m_coro(std::exchange(o.m_coro, {})) {}
        ~scoped_task() {
            if (m_coro) {
                m_coro.destroy();
            }
        }
        void start(async_scope* scope) && {
            m_coro.promise().m_scope = scope;
            detail::resume(std::exchange(m_coro, {}));
        }

    private:
        std::coroutine_handle<promise_type> m_coro;
    };

    template <class Schedule, class A>
    static scoped_task scoped(Schedule schedule, A a) {
        co_await std::move(schedule);
        co_await std::move(a);
    }
    template <class A>
    static scoped_task scoped_here(A a) {
        co_await std::move(a);
    }

    /// Counts `t` in the scope and makes it report to the scope when done.
    template <class T>
    std::coroutine_handle<typename task<T>::promise_type> bind(task<T> t) noexcept {
        add_one();
        auto h = t.release();
        h.promise().set_stop_token_ptr(&m_token);
        h.promise().set_on_done(&task_done<T>, this);
        return h;
    }
    template <class T>
    static void task_done(void* context, std::coroutine_handle<> self) noexcept {
        auto* scope = static_cast<async_scope*>(context);
        auto h = std::coroutine_handle<typename task<T>::promise_type>::from_address(self.address());
        try {
            (void)h.promise().take_result();
        } catch (...) {
            scope->record(std::current_exception());
        }
        h.destroy(); // before the scope may be released
        scope->finish_one();
    }

    void add_one() noexcept {
        // relaxed: the spawner already holds a reference (the join's), so the
        // count cannot reach zero concurrently.
        m_count.fetch_add(1, std::memory_order_relaxed);
    }
    void finish_one() noexcept {
        // acq_rel: releases this task's effects; the last one acquires all
        // of them, and m_joiner, before resuming the joiner.
        if (m_count.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            detail::resume(m_joiner);
        }
    }
    void record(std::exception_ptr e) noexcept {
        std::lock_guard lock(m_error_mutex);
        if (!m_error) {
            m_error = std::move(e);
        }
    }

    std::atomic<std::size_t> m_count{1}; // spawned tasks + 1 held by join
    std::coroutine_handle<> m_joiner;
    std::stop_source m_source;
    std::stop_token m_token = m_source.get_token();
    std::mutex m_error_mutex;
    std::exception_ptr m_error;
};

} // namespace weft
