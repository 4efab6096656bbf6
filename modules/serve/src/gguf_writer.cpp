// gguf_writer: serialises metadata and tensors as GGUF version 3. Values are
// encoded when set; tensor bytes come from the stored vector or from the fill
// callback at write time, one tensor at a time.
#include "gguf_format.hpp"

#include <weft/serve/gguf.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <system_error>
#include <utility>

namespace weft::serve {

using namespace gguf_format;

namespace {

void put_raw(std::vector<std::byte>& out, const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    out.insert(out.end(), b, b + n);
}

template <class T>
void put(std::vector<std::byte>& out, T v) {
    put_raw(out, &v, sizeof v);
}

void put_string(std::vector<std::byte>& out, std::string_view s) {
    put<std::uint64_t>(out, s.size());
    put_raw(out, s.data(), s.size());
}

std::uint64_t align_up(std::uint64_t n, std::uint64_t alignment) {
    return (n + alignment - 1) / alignment * alignment;
}

[[noreturn]] void tensor_fail(const std::string& name, const std::string& what) {
    throw gguf_error("gguf writer: tensor '" + printable(name) + "': " + what);
}

} // namespace

// --- metadata -----------------------------------------------------------------------

void gguf_writer::set(std::string_view key, gguf_value_type type, std::vector<std::byte> payload) {
    if (const auto it = m_entry_index.find(std::string(key)); it != m_entry_index.end()) {
        entry& e = m_entries[it->second];
        e.type = type;
        e.payload = std::move(payload);
        return;
    }
    m_entry_index.emplace(std::string(key), m_entries.size());
    m_entries.push_back({std::string(key), type, std::move(payload)});
}

template <class T>
void gguf_writer::set_scalar(std::string_view key, gguf_value_type type, T v) {
    std::vector<std::byte> payload;
    put(payload, v);
    set(key, type, std::move(payload));
}

template <class T>
void gguf_writer::set_array(std::string_view key, gguf_value_type elem, std::span<const T> v) {
    std::vector<std::byte> payload;
    payload.reserve(12 + v.size_bytes());
    put(payload, static_cast<std::uint32_t>(elem));
    put<std::uint64_t>(payload, v.size());
    if constexpr (std::is_same_v<T, bool>) {
        for (bool b : v) put<std::uint8_t>(payload, b ? 1 : 0);
    } else if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::string_view>) {
        for (std::string_view s : v) put_string(payload, s);
    } else {
        put_raw(payload, v.data(), v.size_bytes());
    }
    set(key, gguf_value_type::array, std::move(payload));
}

void gguf_writer::set_u8(std::string_view k, std::uint8_t v) { set_scalar(k, gguf_value_type::uint8, v); }
void gguf_writer::set_i8(std::string_view k, std::int8_t v) { set_scalar(k, gguf_value_type::int8, v); }
void gguf_writer::set_u16(std::string_view k, std::uint16_t v) { set_scalar(k, gguf_value_type::uint16, v); }
void gguf_writer::set_i16(std::string_view k, std::int16_t v) { set_scalar(k, gguf_value_type::int16, v); }
void gguf_writer::set_u32(std::string_view k, std::uint32_t v) { set_scalar(k, gguf_value_type::uint32, v); }
void gguf_writer::set_i32(std::string_view k, std::int32_t v) { set_scalar(k, gguf_value_type::int32, v); }
void gguf_writer::set_u64(std::string_view k, std::uint64_t v) { set_scalar(k, gguf_value_type::uint64, v); }
void gguf_writer::set_i64(std::string_view k, std::int64_t v) { set_scalar(k, gguf_value_type::int64, v); }
void gguf_writer::set_f32(std::string_view k, float v) { set_scalar(k, gguf_value_type::float32, v); }
void gguf_writer::set_f64(std::string_view k, double v) { set_scalar(k, gguf_value_type::float64, v); }
void gguf_writer::set_bool(std::string_view k, bool v) {
    set_scalar<std::uint8_t>(k, gguf_value_type::boolean, v ? 1 : 0);
}

void gguf_writer::set_string(std::string_view k, std::string_view v) {
    std::vector<std::byte> payload;
    put_string(payload, v);
    set(k, gguf_value_type::string, std::move(payload));
}

void gguf_writer::set_alignment(std::uint32_t alignment) {
    if (!std::has_single_bit(alignment)) {
        throw gguf_error("gguf writer: alignment " + std::to_string(alignment) + " is not a power of two");
    }
    set_u32(alignment_key, alignment);
}

void gguf_writer::set_u8_array(std::string_view k, std::span<const std::uint8_t> v) {
    set_array(k, gguf_value_type::uint8, v);
}
void gguf_writer::set_i8_array(std::string_view k, std::span<const std::int8_t> v) {
    set_array(k, gguf_value_type::int8, v);
}
void gguf_writer::set_u16_array(std::string_view k, std::span<const std::uint16_t> v) {
    set_array(k, gguf_value_type::uint16, v);
}
void gguf_writer::set_i16_array(std::string_view k, std::span<const std::int16_t> v) {
    set_array(k, gguf_value_type::int16, v);
}
void gguf_writer::set_u32_array(std::string_view k, std::span<const std::uint32_t> v) {
    set_array(k, gguf_value_type::uint32, v);
}
void gguf_writer::set_i32_array(std::string_view k, std::span<const std::int32_t> v) {
    set_array(k, gguf_value_type::int32, v);
}
void gguf_writer::set_u64_array(std::string_view k, std::span<const std::uint64_t> v) {
    set_array(k, gguf_value_type::uint64, v);
}
void gguf_writer::set_i64_array(std::string_view k, std::span<const std::int64_t> v) {
    set_array(k, gguf_value_type::int64, v);
}
void gguf_writer::set_f32_array(std::string_view k, std::span<const float> v) {
    set_array(k, gguf_value_type::float32, v);
}
void gguf_writer::set_f64_array(std::string_view k, std::span<const double> v) {
    set_array(k, gguf_value_type::float64, v);
}
void gguf_writer::set_bool_array(std::string_view k, std::span<const bool> v) {
    set_array(k, gguf_value_type::boolean, v);
}
void gguf_writer::set_string_array(std::string_view k, std::span<const std::string> v) {
    set_array(k, gguf_value_type::string, v);
}
void gguf_writer::set_string_array(std::string_view k, std::span<const std::string_view> v) {
    set_array(k, gguf_value_type::string, v);
}

// --- tensors --------------------------------------------------------------------------

std::size_t gguf_writer::check_tensor(const std::string& name, ggml_type type,
                                      const std::vector<std::uint64_t>& dims) const {
    if (name.empty()) throw gguf_error("gguf writer: tensor with an empty name");
    if (m_tensor_index.contains(name)) tensor_fail(name, "added twice");
    const ggml_type_info ti = type_info(type);
    if (ti.block_size == 0) {
        tensor_fail(name, "unknown type " + std::to_string(static_cast<std::uint32_t>(type)));
    }
    if (dims.empty() || dims.size() > max_dims) {
        tensor_fail(name, std::to_string(dims.size()) + " dimensions (must be 1 to " + std::to_string(max_dims) + ")");
    }
    std::uint64_t elements = 1;
    for (std::uint64_t d : dims) {
        if (d == 0) tensor_fail(name, "a dimension is 0");
        if (d > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / elements) {
            tensor_fail(name, "element count overflows");
        }
        elements *= d;
    }
    if (dims[0] % ti.block_size != 0) {
        tensor_fail(name, "row length " + std::to_string(dims[0]) + " is not a multiple of the " +
                              std::string(ti.name) + " block size " + std::to_string(ti.block_size));
    }
    const std::uint64_t blocks = elements / ti.block_size;
    if (blocks > std::numeric_limits<std::size_t>::max() / ti.type_size) tensor_fail(name, "byte size overflows");
    return static_cast<std::size_t>(blocks * ti.type_size);
}

void gguf_writer::add_tensor(std::string name, ggml_type type, std::vector<std::uint64_t> dims,
                             std::vector<std::byte> data) {
    const std::size_t bytes = check_tensor(name, type, dims);
    if (data.size() != bytes) {
        tensor_fail(name, std::to_string(data.size()) + " bytes of data, its shape needs " + std::to_string(bytes));
    }
    m_tensor_index.emplace(name, m_tensors.size());
    m_tensors.push_back({std::move(name), type, std::move(dims), bytes, std::move(data), {}});
}

void gguf_writer::add_tensor(std::string name, ggml_type type, std::vector<std::uint64_t> dims,
                             std::function<void(std::span<std::byte>)> fill) {
    const std::size_t bytes = check_tensor(name, type, dims);
    if (!fill) tensor_fail(name, "empty fill function");
    m_tensor_index.emplace(name, m_tensors.size());
    m_tensors.push_back({std::move(name), type, std::move(dims), bytes, {}, std::move(fill)});
}

// --- output -----------------------------------------------------------------------------

std::uint64_t gguf_writer::alignment() const {
    const auto it = m_entry_index.find(std::string(alignment_key));
    if (it == m_entry_index.end()) return default_alignment;
    const entry& e = m_entries[it->second];
    const number n = load_number(e.type, e.payload.data());
    if (n.k != number::unsigned_int && n.k != number::signed_int) {
        throw gguf_error("gguf writer: general.alignment is " + std::string(to_string(e.type)) +
                         ", expected an unsigned integer");
    }
    const std::uint64_t a = n.k == number::unsigned_int ? n.u : static_cast<std::uint64_t>(n.i);
    if ((n.k == number::signed_int && n.i <= 0) || !std::has_single_bit(a)) {
        throw gguf_error("gguf writer: general.alignment is not a power of two");
    }
    return a;
}

std::vector<std::byte> gguf_writer::header(std::uint64_t alignment) const {
    std::vector<std::byte> out;
    put_raw(out, magic, sizeof magic);
    put(out, current_version);
    put<std::uint64_t>(out, m_tensors.size());
    put<std::uint64_t>(out, m_entries.size());
    for (const entry& e : m_entries) {
        put_string(out, e.key);
        put(out, static_cast<std::uint32_t>(e.type));
        put_raw(out, e.payload.data(), e.payload.size());
    }
    std::uint64_t offset = 0;
    for (const tensor_entry& t : m_tensors) {
        put_string(out, t.name);
        put<std::uint32_t>(out, static_cast<std::uint32_t>(t.dims.size()));
        for (std::uint64_t d : t.dims) put(out, d);
        put(out, static_cast<std::uint32_t>(t.type));
        put(out, offset);
        offset = align_up(offset + t.bytes, alignment);
    }
    return out;
}

void gguf_writer::emit(const sink_fn& out) const {
    const std::uint64_t alignment = this->alignment();
    static constexpr std::array<std::byte, 4096> zeros{};
    auto pad = [&](std::uint64_t written) {
        for (std::uint64_t n = align_up(written, alignment) - written; n > 0;) {
            const std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(n, zeros.size()));
            out(std::span(zeros).first(chunk));
            n -= chunk;
        }
    };
    const std::vector<std::byte> head = header(alignment);
    out(head);
    pad(head.size());
    std::vector<std::byte> buffer;
    for (const tensor_entry& t : m_tensors) {
        if (t.fill) {
            buffer.assign(t.bytes, std::byte{0});
            t.fill(buffer);
            out(buffer);
        } else {
            out(t.data);
        }
        pad(t.bytes);
    }
}

std::vector<std::byte> gguf_writer::to_bytes() const {
    std::vector<std::byte> bytes;
    emit([&](std::span<const std::byte> b) { bytes.insert(bytes.end(), b.begin(), b.end()); });
    return bytes;
}

void gguf_writer::write(const std::filesystem::path& path) const {
    std::filesystem::path tmp = path;
    tmp += ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "cannot create " + tmp.string());
    try {
        emit([&](std::span<const std::byte> bytes) {
            while (!bytes.empty()) {
                const ssize_t n = ::write(fd, bytes.data(), bytes.size());
                if (n < 0) {
                    if (errno == EINTR) continue;
                    throw std::system_error(errno, std::generic_category(), "cannot write " + tmp.string());
                }
                bytes = bytes.subspan(static_cast<std::size_t>(n));
            }
        });
        if (::fsync(fd) != 0) throw std::system_error(errno, std::generic_category(), "cannot sync " + tmp.string());
    } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    if (::close(fd) != 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        throw std::system_error(e, std::generic_category(), "cannot write " + tmp.string());
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        throw std::system_error(e, std::generic_category(), "cannot rename " + tmp.string() + " to " + path.string());
    }
}

} // namespace weft::serve
