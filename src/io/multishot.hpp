// Internal: the states behind multishot accept and buffer-ring receives
// (io_uring only), and the awaiter of a coroutine waiting on them. Not
// installed.
//
// A state is owned by its I/O object (tcp_listener, tcp_stream) while that
// lives. The kernel request it arms delivers completions whether or not a
// coroutine waits: they are queued (accepted descriptors, received buffers)
// and a waiting coroutine is woken with result 0 to look again. When the
// object closes while the request is armed, the state is cancelled and handed
// to the backend, which deletes it after its last completion.
#pragma once

#include "backend.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <system_error>
#include <vector>

namespace weft::io::detail {

/// The coroutines waiting on a state, oldest first (intrusive through
/// operation::next).
class waiter_queue {
public:
    [[nodiscard]] bool empty() const noexcept { return m_head == nullptr; }
    void push(operation& op) noexcept;
    void remove(operation& op) noexcept;
    /// Wakes the oldest waiter (result 0: look again).
    void wake_one(io_context::impl& core);
    void wake_all(io_context::impl& core);

private:
    operation* m_head = nullptr;
    operation* m_tail = nullptr;
};

/// Common part: the armed/cancelling bookkeeping and the waiters.
class multishot_state : public multishot {
public:
    multishot_state(io_context::impl& core, int fd) noexcept : m_core(core), m_fd(fd) {}

    [[nodiscard]] io_context::impl& core() const noexcept { return m_core; }
    [[nodiscard]] backend& kernel() const noexcept { return *m_core.m_backend; }
    waiter_queue& waiters() noexcept { return m_waiters; }

    /// Called by the owner when it closes: the state is deleted now, or by
    /// the backend after the kernel request's last completion.
    static void close(multishot_state* s) noexcept;

protected:
    /// Stops the kernel request (its last completion follows later).
    void stop_request() noexcept;

    io_context::impl& m_core;
    int m_fd;
    bool m_armed = false;      ///< the kernel request may still complete
    bool m_cancelling = false; ///< a cancel is on its way
    bool m_orphan = false;     ///< the owner is gone
    waiter_queue m_waiters;
};

/// Multishot accept on a listening socket.
class multishot_acceptor final : public multishot_state {
public:
    using multishot_state::multishot_state;
    ~multishot_acceptor() override;

    /// Whether the kernel refused multishot accept (use single accepts).
    [[nodiscard]] bool unsupported() const noexcept { return m_unsupported; }
    /// An accepted descriptor, or -1 when none is queued.
    int pop() noexcept;
    /// A failure to report (e.g. -EMFILE), once; 0 when none.
    int take_error() noexcept { return std::exchange(m_error, 0); }
    void ensure_armed();

    void on_completion(int result, unsigned buffer_id, bool has_buffer, bool more) override;

private:
    std::vector<int> m_ready;
    std::size_t m_head = 0;
    int m_error = 0;
    bool m_unsupported = false;
    bool m_ever_accepted = false;
};

/// Multishot recv into the context's buffer ring, for one stream.
class stream_receiver final : public multishot_state {
public:
    using multishot_state::multishot_state;
    ~stream_receiver() override;

    /// Copies queued bytes into `out`; returns how many (0: none queued).
    /// Gives back a lent chunk first.
    std::size_t take(std::span<std::byte> out) noexcept;
    /// The oldest queued chunk's unread bytes, in place in the ring, lent to
    /// the reader until release_lent (or take, or destruction); empty when
    /// none is queued.
    std::span<const std::byte> lend() noexcept;
    /// Returns the lent chunk, if any, to the ring.
    void release_lent() noexcept;
    /// Whether the kernel refused multishot recv (use plain recv).
    [[nodiscard]] bool unsupported() const noexcept { return m_unsupported; }
    /// What a reader that found nothing queued does next: report the end of
    /// the stream or its failure (`failure()`), make a plain recv, or wait
    /// for the request's next completion (armed by this call).
    enum class when_empty { end_of_stream, failed, plain_recv, wait };
    when_empty next_when_empty();
    /// The error that ended the stream's receiving (when_empty::failed).
    [[nodiscard]] std::error_code failure() const noexcept { return {-m_error, std::system_category()}; }

    void on_completion(int result, unsigned buffer_id, bool has_buffer, bool more) override;

private:
    /// Arms the multishot recv unless it is; false when the next read must
    /// be a plain recv instead (the buffer ring ran dry, or the request is
    /// still winding down).
    bool ensure_armed();

    struct chunk {
        std::uint16_t id;
        std::uint32_t size;
        std::uint32_t offset;
    };
    /// Stop receiving into the ring above this many unread bytes.
    static constexpr std::size_t max_queued_bytes = 64 * 1024;

    std::vector<chunk> m_chunks;
    std::size_t m_head = 0;
    std::size_t m_queued_bytes = 0;
    int m_error = 0;
    bool m_eof = false;
    bool m_lent = false;    ///< the chunk at m_head is lent out (lend)
    bool m_starved = false; ///< the ring ran dry (ENOBUFS): one plain recv next
    bool m_unsupported = false;
};

/// `co_await` on a state: wakes (result 0) when the state changed, throws
/// `operation_cancelled` on stop and `errc::timed_out` past the deadline.
class state_wait : public op_awaiter {
public:
    state_wait(io_context& ctx, multishot_state& state, clock::time_point deadline, const char* what) noexcept
        : op_awaiter(ctx, what), m_state(state) {
        op().kind = op_kind::wait;
        op().deadline = deadline;
        op().owner = &state;
        op().detach = [](operation& o) noexcept { static_cast<multishot_state*>(o.owner)->waiters().remove(o); };
    }
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h) {
        m_state.waiters().push(op());
        if (!op_awaiter::await_suspend(h)) {
            m_state.waiters().remove(op());
            return false;
        }
        return true;
    }
    void await_resume() { op_awaiter::await_resume(); }

private:
    multishot_state& m_state;
};

} // namespace weft::io::detail
