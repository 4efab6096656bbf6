#include "backend.hpp"

#include <weft/io/file.hpp>

#include <unistd.h>

namespace weft::io {

file::file(file&& o) noexcept : m_ctx(o.m_ctx), m_fd(std::exchange(o.m_fd, -1)) {}

file& file::operator=(file&& o) noexcept {
    if (this != &o) {
        close();
        m_ctx = o.m_ctx;
        m_fd = std::exchange(o.m_fd, -1);
    }
    return *this;
}

file::~file() { close(); }

void file::close() noexcept {
    if (m_fd >= 0) {
        ::close(m_fd);
        m_fd = -1;
    }
}

file file::open(io_context& ctx, const std::string& path, int flags, unsigned mode) {
    file f;
    f.m_ctx = &ctx;
    f.m_fd = ::open(path.c_str(), flags | O_CLOEXEC, static_cast<mode_t>(mode));
    if (f.m_fd < 0) {
        throw std::system_error(errno, std::system_category(), "open " + path);
    }
    return f;
}

task<std::size_t> file::read_at(std::uint64_t offset, std::span<std::byte> buffer) {
    detail::op_awaiter aw(*m_ctx, "read");
    detail::operation& op = aw.op();
    op.kind = detail::op_kind::read;
    op.fd = m_fd;
    op.buffer = buffer.data();
    op.length = buffer.size();
    op.offset = offset;
    co_return static_cast<std::size_t>(co_await aw);
}

task<void> file::write_at(std::uint64_t offset, std::span<const std::byte> data) {
    while (!data.empty()) {
        detail::op_awaiter aw(*m_ctx, "write");
        detail::operation& op = aw.op();
        op.kind = detail::op_kind::write;
        op.fd = m_fd;
        op.buffer = const_cast<std::byte*>(data.data());
        op.length = data.size();
        op.offset = offset;
        const auto n = static_cast<std::size_t>(co_await aw);
        data = data.subspan(n);
        offset += n;
    }
}

} // namespace weft::io
