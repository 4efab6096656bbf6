#include "multishot.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <system_error>
#include <utility>

namespace weft::io::detail {

// --- waiter_queue ----------------------------------------------------------------------

void waiter_queue::push(operation& op) noexcept {
    op.next = nullptr;
    if (m_tail != nullptr) {
        m_tail->next = &op;
    } else {
        m_head = &op;
    }
    m_tail = &op;
}

void waiter_queue::remove(operation& op) noexcept {
    operation* prev = nullptr;
    for (operation* cur = m_head; cur != nullptr; prev = cur, cur = cur->next) {
        if (cur == &op) {
            (prev != nullptr ? prev->next : m_head) = cur->next;
            if (m_tail == cur) {
                m_tail = prev;
            }
            op.next = nullptr;
            return;
        }
    }
}

void waiter_queue::wake_one(io_context::impl& core) {
    if (operation* op = m_head) {
        m_head = op->next;
        if (m_head == nullptr) {
            m_tail = nullptr;
        }
        op->next = nullptr;
        core.complete(*op, 0);
    }
}

void waiter_queue::wake_all(io_context::impl& core) {
    while (!empty()) {
        wake_one(core);
    }
}

// --- multishot_state ---------------------------------------------------------------------

void multishot_state::close(multishot_state* s) noexcept {
    if (s == nullptr) {
        return;
    }
    if (!s->m_armed) {
        delete s;
        return;
    }
    s->m_orphan = true;
    s->stop_request();
    try {
        s->kernel().adopt_orphan(std::unique_ptr<multishot>(s));
    } catch (...) {
        // Out of memory: leak the state rather than free what the kernel
        // may still complete into.
    }
}

void multishot_state::stop_request() noexcept {
    if (m_armed && !m_cancelling) {
        m_cancelling = true;
        try {
            kernel().cancel_multishot(*this);
        } catch (...) {
            // The submission queue could not be flushed: the request ends
            // with the ring instead.
        }
    }
}

// --- multishot_acceptor --------------------------------------------------------------------

multishot_acceptor::~multishot_acceptor() {
    for (std::size_t i = m_head; i < m_ready.size(); ++i) {
        ::close(m_ready[i]);
    }
}

int multishot_acceptor::pop() noexcept {
    if (m_head == m_ready.size()) {
        return -1;
    }
    const int fd = m_ready[m_head++];
    if (m_head == m_ready.size()) {
        m_ready.clear();
        m_head = 0;
    }
    return fd;
}

void multishot_acceptor::ensure_armed() {
    if (!m_armed) {
        kernel().start_multishot_accept(*this, m_fd);
        m_armed = true;
        m_cancelling = false;
    }
}

void multishot_acceptor::on_completion(int result, unsigned, bool, bool more) {
    if (!more) {
        m_armed = false;
        m_cancelling = false;
    }
    if (result >= 0) {
        m_ever_accepted = true;
        if (m_orphan) {
            ::close(result);
            return;
        }
        m_ready.push_back(result);
        // Nobody accepts: stop taking connections from the backlog, so the
        // kernel's backlog limit applies again.
        if (m_ready.size() - m_head >= 64 && m_waiters.empty()) {
            stop_request();
        }
    } else if (result == -EINVAL && !m_ever_accepted && !more) {
        m_unsupported = true; // no IORING_ACCEPT_MULTISHOT: single accepts from now on
        kernel().disable_multishot_accept();
        m_waiters.wake_all(m_core); // every waiting accept falls back
        return;
    } else if (result != -ECANCELED && !m_orphan) {
        m_error = result;
    }
    if (!m_orphan) {
        m_waiters.wake_one(m_core);
    }
}

// --- stream_receiver -----------------------------------------------------------------------

stream_receiver::~stream_receiver() {
    for (std::size_t i = m_head; i < m_chunks.size(); ++i) {
        kernel().recycle_buffer(m_chunks[i].id);
    }
}

std::span<const std::byte> stream_receiver::lend() noexcept {
    if (m_head == m_chunks.size()) {
        return {};
    }
    const chunk& c = m_chunks[m_head];
    const ring_buffer b = kernel().buffer(c.id, c.size);
    m_lent = true;
    return {b.data + c.offset, c.size - c.offset};
}

void stream_receiver::release_lent() noexcept {
    if (!std::exchange(m_lent, false)) {
        return;
    }
    const chunk& c = m_chunks[m_head];
    m_queued_bytes -= c.size - c.offset;
    kernel().recycle_buffer(c.id);
    if (++m_head == m_chunks.size()) {
        m_chunks.clear();
        m_head = 0;
    }
}

std::size_t stream_receiver::take(std::span<std::byte> out) noexcept {
    release_lent();
    std::size_t copied = 0;
    while (copied < out.size() && m_head < m_chunks.size()) {
        chunk& c = m_chunks[m_head];
        const ring_buffer b = kernel().buffer(c.id, c.size);
        const std::size_t n = std::min<std::size_t>(c.size - c.offset, out.size() - copied);
        std::memcpy(out.data() + copied, b.data + c.offset, n);
        copied += n;
        c.offset += static_cast<std::uint32_t>(n);
        if (c.offset == c.size) {
            kernel().recycle_buffer(c.id);
            ++m_head;
        }
    }
    if (m_head == m_chunks.size()) {
        m_chunks.clear();
        m_head = 0;
    }
    m_queued_bytes -= copied;
    return copied;
}

stream_receiver::when_empty stream_receiver::next_when_empty() {
    if (m_eof) {
        return when_empty::end_of_stream;
    }
    if (m_error != 0) {
        return when_empty::failed;
    }
    if (m_unsupported || !ensure_armed()) {
        return when_empty::plain_recv;
    }
    return when_empty::wait;
}

bool stream_receiver::ensure_armed() {
    if (m_armed) {
        // Winding down after a cancel (back-pressure): its last completion
        // comes first; until then the waiter waits for it.
        return true;
    }
    if (m_starved) {
        m_starved = false;
        return false;
    }
    kernel().start_multishot_recv(*this, m_fd);
    m_armed = true;
    m_cancelling = false;
    return true;
}

void stream_receiver::on_completion(int result, unsigned buffer_id, bool has_buffer, bool more) {
    if (!more) {
        m_armed = false;
        m_cancelling = false;
    }
    if (has_buffer) {
        if (result > 0 && !m_orphan) {
            m_chunks.push_back({static_cast<std::uint16_t>(buffer_id), static_cast<std::uint32_t>(result), 0});
            m_queued_bytes += static_cast<std::size_t>(result);
            if (m_queued_bytes > max_queued_bytes) {
                stop_request(); // the reader lags: stop filling the shared ring for it
            }
        } else {
            kernel().recycle_buffer(buffer_id);
        }
    }
    if (m_orphan) {
        return;
    }
    if (result == 0 && !more) {
        m_eof = true;
    } else if (result == -ENOBUFS) {
        m_starved = true;
        kernel().buffer_ring_ran_dry();
    } else if (result == -EINVAL && !more) {
        m_unsupported = true; // no multishot recv: plain recv from now on
        kernel().disable_buffer_ring();
    } else if (result < 0 && result != -ECANCELED) {
        m_error = result;
    }
    m_waiters.wake_one(m_core);
}

} // namespace weft::io::detail
