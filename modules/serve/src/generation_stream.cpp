// generation_stream: the reading side of a request's mailbox, which the
// engine thread fills (engine::impl::publish).
#include <weft/serve/engine.hpp>

#include <functional>
#include <mutex>
#include <utility>

namespace weft::serve {

generation_stream::generation_stream(std::shared_ptr<detail::request_mailbox> box, engine& e) noexcept
    : m_box(std::move(box)), m_engine(&e) {}

generation_stream::generation_stream(generation_stream&& o) noexcept
    : m_box(std::move(o.m_box)), m_engine(o.m_engine) {}

generation_stream::~generation_stream() {
    if (m_box) cancel();
}

seq_id generation_stream::id() const noexcept { return m_box ? m_box->id : 0; }

void generation_stream::cancel() {
    {
        std::lock_guard lock(m_box->mutex);
        if (m_box->finished) return;
    }
    m_engine->abort(m_box->id);
}

generation_stream::next_awaiter generation_stream::next() noexcept { return next_awaiter{this, std::nullopt}; }

bool generation_stream::next_awaiter::await_ready() {
    detail::request_mailbox& b = *m_stream->m_box;
    std::lock_guard lock(b.mutex);
    return b.has_pending || b.final_taken;
}

bool generation_stream::next_awaiter::suspend(std::coroutine_handle<> h, const std::stop_token& token) {
    detail::request_mailbox* b = m_stream->m_box.get();
    if (token.stop_possible()) {
        // Armed before the waiter is published, so no wake-up can race with
        // arming it; if stop is already requested it runs here and marks the
        // box, and we do not suspend.
        m_on_stop.emplace(token, std::function<void()>([b] {
            std::coroutine_handle<> wake;
            {
                std::lock_guard lock(b->mutex);
                b->cancelled = true;
                wake = std::exchange(b->waiter, {});
            }
            if (wake) b->resume_on.post(wake);
        }));
    }
    std::lock_guard lock(b->mutex);
    if (b->cancelled || b->has_pending || b->final_taken) return false;
    b->waiter = h;
    return true;
}

std::optional<generation_update> generation_stream::next_awaiter::await_resume() {
    m_on_stop.reset(); // waits for a stop callback running elsewhere
    detail::request_mailbox& b = *m_stream->m_box;
    // Room for the engine's next tokens, allocated here: the engine thread
    // then appends without allocating (it would once per token otherwise,
    // as each update takes the vector away).
    std::vector<generated_token> spare;
    spare.reserve(2);
    std::unique_lock lock(b.mutex);
    if (b.cancelled) {
        lock.unlock();
        m_stream->cancel();
        throw operation_cancelled();
    }
    if (b.has_pending) {
        generation_update u = std::move(b.pending);
        b.pending = generation_update{};
        if (!b.finished) b.pending.tokens = std::move(spare);
        b.has_pending = false;
        if (b.finished) b.final_taken = true;
        return u;
    }
    return std::nullopt;
}

} // namespace weft::serve
