/// \file
/// `file`: positional reads and writes on a regular file through an
/// `io_context` (io_uring read/write; synchronous pread/pwrite on epoll).
///
/// Lifetime: move-only RAII owner of the descriptor (closed on destruction);
/// the buffers passed to an operation must live until it completes, and the
/// file must not be closed while one is pending. Threading: belongs to the
/// context's loop thread, where operations must be awaited. Errors are
/// std::system_error with the errno.
#pragma once

#include <weft/io/io_context.hpp>
#include <weft/task.hpp>

#include <fcntl.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace weft::io {

class file {
public:
    file() noexcept = default;
    file(file&& o) noexcept;
    file& operator=(file&& o) noexcept;
    ~file();

    /// open(2) with `flags` (O_CLOEXEC is added) and `mode` for O_CREAT.
    static file open(io_context& ctx, const std::string& path, int flags, unsigned mode = 0644);

    /// Reads at most `buffer.size()` bytes at `offset`; 0 at end of file.
    task<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buffer);
    /// Writes all of `data` at `offset`.
    task<void> write_at(std::uint64_t offset, std::span<const std::byte> data);

    void close() noexcept;
    [[nodiscard]] bool is_open() const noexcept { return m_fd >= 0; }
    [[nodiscard]] int native_handle() const noexcept { return m_fd; }

private:
    io_context* m_ctx = nullptr;
    int m_fd = -1;
};

} // namespace weft::io
