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
#include <unordered_map>
#include <vector>

namespace weft::io {

namespace detail {

class backend {
public:
    virtual ~backend() = default;
    /// On the loop thread, before its first turn.
    virtual void attach() = 0;
    /// Loop thread: begins `op`; false when it completed at once (result set).
    virtual bool start(operation& op) = 0;
    /// Loop thread: cancels the pending `op` (completes now or later).
    virtual void cancel(operation& op) = 0;
    /// Loop thread: submits what is queued and delivers completions; waits
    /// for at least one event when `block`.
    virtual void poll(bool block) = 0;
    /// Any thread, called under the post mutex: wakes a blocked `poll`.
    virtual void wake() noexcept = 0;
};

std::unique_ptr<backend> make_uring_backend(io_context::impl& core, std::string& why_not);
std::unique_ptr<backend> make_epoll_backend(io_context::impl& core);

/// Whether sockets of `ctx` must be non-blocking: epoll needs EAGAIN, while
/// io_uring waits for readiness itself and wants blocking descriptors.
bool nonblocking_fds(io_context& ctx) noexcept;

} // namespace detail

struct io_context::impl {
    /// Loop thread: records the result of `op` and schedules its coroutine.
    void complete(detail::operation& op, int result) {
        op.result = result;
        m_in_flight.erase(op.id);
        m_ready.push_back(op.handle);
    }

    std::unique_ptr<detail::backend> m_backend;
    io_backend m_kind = io_backend::epoll;
    bool m_attached = false;
    std::thread::id m_loop_thread; ///< set by the first run(); read on the loop thread only
    std::uint64_t m_next_id = 1;
    std::unordered_map<std::uint64_t, detail::operation*> m_in_flight;
    std::vector<std::coroutine_handle<>> m_ready;

    // Shared with other threads, guarded by m_mutex.
    std::mutex m_mutex;
    std::vector<std::coroutine_handle<>> m_posted;
    std::vector<std::uint64_t> m_cancels;
    // Set by stop() on any thread, read and cleared by the loop thread. The
    // wake-up that follows goes through m_mutex, which orders it; the flag
    // itself only needs atomicity, so relaxed suffices.
    std::atomic<bool> m_stop{false};
};

} // namespace weft::io
