// Helpers for the GGUF tests: a byte builder for hand-made (and deliberately
// broken) files, and a temporary directory.
#pragma once

#include <weft/serve/gguf.hpp>

#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace weft::serve::test {

/// Appends little-endian GGUF primitives.
class gguf_bytes {
public:
    gguf_bytes& raw(const void* p, std::size_t n) {
        const auto* b = static_cast<const std::byte*>(p);
        m_bytes.insert(m_bytes.end(), b, b + n);
        return *this;
    }
    gguf_bytes& u8(std::uint8_t v) { return raw(&v, sizeof v); }
    gguf_bytes& u32(std::uint32_t v) { return raw(&v, sizeof v); }
    gguf_bytes& u64(std::uint64_t v) { return raw(&v, sizeof v); }
    gguf_bytes& str(std::string_view s) { return u64(s.size()).raw(s.data(), s.size()); }
    /// "GGUF", version, tensor count, key count.
    gguf_bytes& header(std::uint64_t tensors, std::uint64_t keys, std::uint32_t version = 3) {
        return raw("GGUF", 4).u32(version).u64(tensors).u64(keys);
    }
    /// A key holding a uint32.
    gguf_bytes& kv_u32(std::string_view key, std::uint32_t v) {
        return str(key).u32(static_cast<std::uint32_t>(gguf_value_type::uint32)).u32(v);
    }
    /// A tensor info: name, dims, type, offset.
    gguf_bytes& tensor(std::string_view name, std::vector<std::uint64_t> dims, std::uint32_t type,
                       std::uint64_t offset) {
        str(name).u32(static_cast<std::uint32_t>(dims.size()));
        for (std::uint64_t d : dims) u64(d);
        return u32(type).u64(offset);
    }
    gguf_bytes& pad_to(std::size_t alignment) {
        while (m_bytes.size() % alignment != 0) u8(0);
        return *this;
    }
    gguf_bytes& zeros(std::size_t n) {
        m_bytes.resize(m_bytes.size() + n, std::byte{0});
        return *this;
    }

    std::size_t size() const { return m_bytes.size(); }
    const std::vector<std::byte>& bytes() const { return m_bytes; }
    std::span<const std::byte> span() const { return m_bytes; }

private:
    std::vector<std::byte> m_bytes;
};

inline std::vector<std::byte> filled(std::size_t n, std::uint8_t seed) {
    std::vector<std::byte> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((seed + i * 7) & 0xff);
    return v;
}

/// A fresh directory under the system temp dir, removed with its contents.
class temp_dir {
public:
    temp_dir() {
        static std::atomic<int> counter{0};
        m_path = std::filesystem::temp_directory_path() /
                 ("weft_gguf_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        std::filesystem::remove_all(m_path);
        std::filesystem::create_directories(m_path);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(m_path, ec);
    }
    const std::filesystem::path& path() const { return m_path; }

private:
    std::filesystem::path m_path;
};

} // namespace weft::serve::test
