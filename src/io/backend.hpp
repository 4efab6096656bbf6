// Internal: the interface between io_context and its kernel backends
// (io_uring, epoll), and the loop state they share. Not installed.
#pragma once

#include <weft/io/io_context.hpp>

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace weft::io {

namespace detail {

/// A kernel request that completes many times (io_uring multishot accept or
/// recv), owned by an I/O object's state. The backend hands it every
/// completion; `more` is false on the last one.
class multishot {
public:
    virtual ~multishot() = default;
    virtual void on_completion(int result, unsigned buffer_id, bool has_buffer, bool more) = 0;
};

/// A received chunk in a buffer of the context's buffer ring.
struct ring_buffer {
    std::byte* data;
    std::size_t size;
};

class backend {
public:
    virtual ~backend() = default;
    /// On the loop thread, before its first turn.
    virtual void attach() = 0;
    /// Loop thread: begins the kernel operation `op`; false when it completed
    /// at once (result set).
    virtual bool start(operation& op) = 0;
    /// Loop thread: cancels the pending kernel operation `op` (it completes
    /// now or later).
    virtual void cancel(operation& op) = 0;
    /// Loop thread: submits what is queued and delivers completions; when
    /// `block`, waits for at least one event or until `wake_at`.
    virtual void poll(bool block, clock::time_point wake_at) = 0;
    /// Any thread, called under the post mutex: wakes a blocked `poll`.
    virtual void wake() noexcept = 0;
    /// Loop thread: hands what is queued to the kernel now, without waiting
    /// (mid-turn, so that a long turn's first operations start early).
    virtual void flush() {}

    // --- Multishot requests and the buffer ring (io_uring only) ------------------
    /// Whether multishot accept may be tried (it may still fail with EINVAL
    /// on an old kernel: the owner then falls back to single accepts).
    virtual bool multishot_accept_possible() const noexcept { return false; }
    /// Loop thread: sets up the context's buffer ring if needed; false when
    /// the kernel has none (recv then goes through plain operations).
    virtual bool buffer_ring_available() { return false; }
    virtual void start_multishot_accept(multishot&, int /*fd*/) {}
    virtual void start_multishot_recv(multishot&, int /*fd*/) {}
    virtual void cancel_multishot(multishot&) {}
    /// The bytes of buffer `id` holding `size` received bytes.
    virtual ring_buffer buffer(unsigned /*id*/, std::size_t size) { return {nullptr, size}; }
    /// Gives buffer `id` back to the kernel.
    virtual void recycle_buffer(unsigned /*id*/) {}
    /// A receive found no buffer posted (ENOBUFS): post more from now on.
    virtual void buffer_ring_ran_dry() {}
    /// Takes ownership of a multishot state whose I/O object is gone: the
    /// backend deletes it after its last completion, or at destruction.
    virtual void adopt_orphan(std::unique_ptr<multishot>) {}
    /// The kernel refused a multishot accept (EINVAL): single accepts from now on.
    virtual void disable_multishot_accept() noexcept {}
    /// The kernel refused a multishot recv (EINVAL): plain recv from now on.
    virtual void disable_buffer_ring() noexcept {}
};

std::unique_ptr<backend> make_uring_backend(io_context::impl& core, std::string& why_not);
std::unique_ptr<backend> make_epoll_backend(io_context::impl& core);

/// Whether sockets of `ctx` must be non-blocking: epoll needs EAGAIN, while
/// io_uring waits for readiness itself and wants blocking descriptors.
bool nonblocking_fds(io_context& ctx) noexcept;

/// The loop's timers: a binary min-heap of operations by deadline; each
/// operation knows its index, so removing one is O(log n).
class timer_heap {
public:
    [[nodiscard]] bool empty() const noexcept { return m_heap.empty(); }
    [[nodiscard]] operation& top() const noexcept { return *m_heap.front(); }
    void push(operation& op);
    void remove(operation& op) noexcept;

private:
    void sift_up(std::size_t i) noexcept;
    void sift_down(std::size_t i) noexcept;
    void place(std::size_t i, operation* op) noexcept {
        m_heap[i] = op;
        op->timer_index = i;
    }
    std::vector<operation*> m_heap;
};

} // namespace detail

struct io_context::impl {
    /// Loop thread: records the result of `op` and schedules its coroutine.
    void complete(detail::operation& op, int result) {
        op.result = result;
        op.pending = false;
        if (op.timer_index != ~std::size_t{0}) {
            m_timers.remove(op);
        }
        if (op.kind == detail::op_kind::callback) {
            op.on_fire(op);
        } else {
            m_ready.push_back(op.handle);
        }
    }
    /// Loop thread: ends the pending `op` early (stop request or deadline).
    void abort(detail::operation& op);
    /// Loop thread: fires the timers that are due.
    void expire_timers();
    /// Any thread, m_mutex held: marks foreign work queued and wakes the
    /// loop if it sleeps in the backend's poll.
    void wake_if_sleeping() noexcept;

    std::unique_ptr<detail::backend> m_backend;
    io_backend m_kind = io_backend::epoll;
    bool m_attached = false;
    std::thread::id m_loop_thread; ///< set by the first run(); read on the loop thread only
    detail::timer_heap m_timers;
    std::vector<std::coroutine_handle<>> m_ready;
    /// Cancellation requests made on the loop thread itself (no mutex, no
    /// wake-up); handled at the start of the next turn.
    std::vector<detail::operation*> m_local_cancels;

    // Shared with other threads, guarded by m_mutex.
    std::mutex m_mutex;
    std::vector<std::coroutine_handle<>> m_posted;
    std::vector<detail::operation*> m_cancels;
    // Whether m_posted or m_cancels may hold something: lets a loop turn skip
    // the mutex when no other thread (nor a stop callback) queued anything.
    // Set under the mutex; the loop re-reads both under the mutex when set.
    std::atomic<bool> m_foreign{false};
    // Up while the loop thread is about to block, or blocked, in the
    // backend's poll: a post wakes the backend (a system call, and a
    // context switch for the woken thread) only then, and only the first
    // post does, taking the flag down. A loop that is running reads
    // m_foreign at its next turn without being woken. The loop raises the
    // flag and then reads m_foreign; a post sets m_foreign and then takes
    // the flag: both sides seq_cst, so at least one sees the other's store
    // (the loop does not block, or the post wakes it).
    std::atomic<bool> m_sleeping{false};
    // Set by stop() on any thread, read and cleared by the loop thread. The
    // wake-up that follows goes through m_mutex, which orders it; the flag
    // itself only needs atomicity, so relaxed suffices.
    std::atomic<bool> m_stop{false};
};

} // namespace weft::io
