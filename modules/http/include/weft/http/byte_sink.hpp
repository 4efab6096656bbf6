/// \file
/// `byte_sink`: the abstract asynchronous byte sink the HTTP writers write to,
/// and `string_sink`, an in-memory one for tests and buffering.
///
/// A sink over a socket implements `write` by awaiting until every byte has
/// been handed to the kernel, so a writer that awaits each write gets
/// back-pressure for free. The bytes passed to `write` must stay valid until
/// the returned task completes.
///
/// Lifetime: writers hold a reference to their sink; the sink must outlive them.
/// Threading: one writer at a time (a sink is not thread-safe).
#pragma once

#include <weft/task.hpp>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace weft::http {

class byte_sink {
public:
    virtual ~byte_sink() = default;
    /// Writes all of `bytes` (or throws). `bytes` must outlive the returned task.
    virtual task<void> write(std::span<const std::byte> bytes) = 0;

    /// `write` for text; `text` must outlive the returned task.
    task<void> write_string(std::string_view text) {
        return write(std::as_bytes(std::span<const char>(text.data(), text.size())));
    }
};

/// Appends everything written to a string. Never suspends.
class string_sink final : public byte_sink {
public:
    task<void> write(std::span<const std::byte> bytes) override {
        m_data.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        ++m_writes;
        co_return;
    }
    const std::string& data() const noexcept { return m_data; }
    std::size_t write_count() const noexcept { return m_writes; }
    void clear() noexcept { m_data.clear(); m_writes = 0; }

private:
    std::string m_data;
    std::size_t m_writes = 0;
};

} // namespace weft::http
