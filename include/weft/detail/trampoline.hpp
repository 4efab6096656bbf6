/// \file
/// The per-thread trampoline through which weft resumes every coroutine.
///
/// Symmetric transfer (returning a handle from `await_suspend`) only keeps the
/// stack flat when the compiler turns the resume into a tail call, and GCC at
/// -O0 (and some sanitizer builds) does not. weft therefore never resumes one
/// coroutine from inside another: `detail::resume(h)` either hands `h` to the
/// trampoline already running on this thread (which resumes it as soon as the
/// current coroutine suspends) or, when none is running, becomes that
/// trampoline itself. A loop of a million synchronously completing
/// `co_await`s thus runs at constant stack depth in every build.
///
/// Threading: the trampoline is thread-local; nothing here is shared between
/// threads. `resume_now` runs a nested trampoline, for callers that must see
/// the coroutine's synchronous part finish before they go on (sync_wait, a
/// strand draining its queue).
#pragma once

#include <coroutine>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <utility>

namespace weft::detail {

/// A FIFO of coroutine handles with a little inline storage; grows on the
/// heap only when more than `inline_capacity` resumptions are pending.
class handle_queue {
public:
    static constexpr std::size_t inline_capacity = 8;

    handle_queue() noexcept = default;
    handle_queue(const handle_queue&) = delete;
    handle_queue& operator=(const handle_queue&) = delete;
    ~handle_queue() {
        if (m_data != m_inline) {
            std::free(m_data);
        }
    }

    [[nodiscard]] bool empty() const noexcept { return m_size == 0; }

    void push(std::coroutine_handle<> h) {
        if (m_size == m_capacity) {
            grow();
        }
        m_data[(m_head + m_size) & (m_capacity - 1)] = h;
        ++m_size;
    }

    std::coroutine_handle<> pop() noexcept {
        auto h = m_data[m_head];
        m_head = (m_head + 1) & (m_capacity - 1);
        --m_size;
        return h;
    }

private:
    [[gnu::noinline]] void grow() {
        const std::size_t capacity = m_capacity * 2;
        auto* data = static_cast<std::coroutine_handle<>*>(
            std::malloc(capacity * sizeof(std::coroutine_handle<>)));
        if (data == nullptr) {
            throw std::bad_alloc();
        }
        for (std::size_t i = 0; i < m_size; ++i) {
            data[i] = m_data[(m_head + i) & (m_capacity - 1)];
        }
        if (m_data != m_inline) {
            std::free(m_data);
        }
        m_data = data;
        m_capacity = capacity;
        m_head = 0;
    }

    std::coroutine_handle<> m_inline[inline_capacity];
    std::coroutine_handle<>* m_data = m_inline;
    std::size_t m_capacity = inline_capacity;
    std::size_t m_head = 0;
    std::size_t m_size = 0;
};

/// Pending resumptions, oldest first. Nearly always at most one is pending
/// (a task hands over to its child, the child back to its parent), so the
/// oldest sits in `next` and the queue is touched only beyond that.
struct trampoline {
    std::coroutine_handle<> next;
    handle_queue overflow;

    void push(std::coroutine_handle<> h) {
        if (!next) [[likely]] {
            next = h;
        } else {
            overflow.push(h);
        }
    }
    /// Runs until nothing is pending.
    void drain() {
        while (std::coroutine_handle<> h = next) {
            next = overflow.empty() ? std::coroutine_handle<>() : overflow.pop();
            h.resume();
        }
    }
};

/// The trampoline running on this thread, or null when none is.
constinit inline thread_local trampoline* current_trampoline = nullptr;

/// Resumes `h`, then every coroutine that `h` (transitively) hands to the
/// trampoline, before returning. Nests: an outer trampoline's queue is left
/// untouched until this one is done.
[[gnu::noinline]] inline void resume_now(std::coroutine_handle<> h) {
    struct scope {
        trampoline local;
        trampoline* outer = std::exchange(current_trampoline, &local);
        ~scope() { current_trampoline = outer; }
    } s;
    h.resume();
    s.local.drain();
}

/// Resumes `h` on this thread without growing the stack: queued on the
/// running trampoline, or run by a new one.
inline void resume(std::coroutine_handle<> h) {
    if (trampoline* t = current_trampoline) {
        t->push(h);
    } else {
        resume_now(h);
    }
}

/// True while a trampoline runs on this thread.
inline bool in_trampoline() noexcept { return current_trampoline != nullptr; }

} // namespace weft::detail
