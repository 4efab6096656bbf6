/// \file
/// `inline_executor`: the scheduler that runs work at once, on the calling thread.
///
/// `co_await inline_executor{}.schedule()` never suspends. Useful as the
/// default executor of components that take one, and in tests. Stateless,
/// trivially copyable, thread-safe.
#pragma once

#include <coroutine>

namespace weft {

class inline_executor {
public:
    struct schedule_awaiter {
        bool await_ready() const noexcept { return true; }
        void await_suspend(std::coroutine_handle<>) const noexcept {}
        void await_resume() const noexcept {}
    };
    schedule_awaiter schedule() const noexcept { return {}; }
    friend bool operator==(inline_executor, inline_executor) noexcept { return true; }
};

} // namespace weft
