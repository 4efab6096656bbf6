/// \file
/// `signal_set`: waits for POSIX signals on an `io_context` (a signalfd).
///
/// The constructor blocks the signals in the calling thread's mask (so that
/// they queue for the signalfd instead of running their default action) and
/// the destructor restores the previous mask. Construct it on the loop thread
/// *before* starting other threads, which inherit the mask: a signal that any
/// thread leaves unblocked may be delivered there instead. Move-only; belongs
/// to the loop thread.
#pragma once

#include <weft/io/io_context.hpp>
#include <weft/task.hpp>

#include <signal.h>

#include <initializer_list>

namespace weft::io {

class signal_set {
public:
    signal_set(io_context& ctx, std::initializer_list<int> signals);
    signal_set(const signal_set&) = delete;
    signal_set& operator=(const signal_set&) = delete;
    ~signal_set();

    /// The number of the next signal received.
    task<int> wait();

private:
    io_context* m_ctx;
    int m_fd = -1;
    sigset_t m_set;
    sigset_t m_previous;
};

} // namespace weft::io
