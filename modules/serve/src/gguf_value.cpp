// gguf_value: typed access to one metadata value viewing the file's bytes.
// The reader has already checked that the bytes exist and the types are
// valid; these functions only convert (or refuse to).
#include "gguf_format.hpp"

#include <weft/serve/gguf.hpp>

#include <algorithm>
#include <cstring>
#include <limits>

namespace weft::serve {

namespace gguf_format {

std::string printable(std::string_view s) {
    constexpr std::size_t max_chars = 80;
    std::string out;
    out.reserve(std::min(s.size(), max_chars) + 3);
    std::size_t shown = 0;
    for (char c : s) {
        if (shown == max_chars) {
            out += "...";
            break;
        }
        const auto u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u < 0x7f && c != '\\') {
            out += c;
        } else {
            static constexpr char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[u >> 4];
            out += hex[u & 15];
        }
        ++shown;
    }
    return out;
}

number::kind kind_of(gguf_value_type t) noexcept {
    switch (t) {
    case gguf_value_type::uint8:
    case gguf_value_type::uint16:
    case gguf_value_type::uint32:
    case gguf_value_type::uint64: return number::unsigned_int;
    case gguf_value_type::int8:
    case gguf_value_type::int16:
    case gguf_value_type::int32:
    case gguf_value_type::int64: return number::signed_int;
    case gguf_value_type::float32:
    case gguf_value_type::float64: return number::floating;
    default: return number::none;
    }
}

std::size_t scalar_size(gguf_value_type t) noexcept {
    switch (t) {
    case gguf_value_type::uint8:
    case gguf_value_type::int8:
    case gguf_value_type::boolean: return 1;
    case gguf_value_type::uint16:
    case gguf_value_type::int16: return 2;
    case gguf_value_type::uint32:
    case gguf_value_type::int32:
    case gguf_value_type::float32: return 4;
    case gguf_value_type::uint64:
    case gguf_value_type::int64:
    case gguf_value_type::float64: return 8;
    default: return 0;
    }
}

number load_number(gguf_value_type t, const std::byte* p) noexcept {
    number n;
    auto load = [p](auto v) {
        std::memcpy(&v, p, sizeof v);
        return v;
    };
    switch (t) {
    case gguf_value_type::uint8: n.u = load(std::uint8_t{}); break;
    case gguf_value_type::uint16: n.u = load(std::uint16_t{}); break;
    case gguf_value_type::uint32: n.u = load(std::uint32_t{}); break;
    case gguf_value_type::uint64: n.u = load(std::uint64_t{}); break;
    case gguf_value_type::int8: n.i = load(std::int8_t{}); n.k = number::signed_int; break;
    case gguf_value_type::int16: n.i = load(std::int16_t{}); n.k = number::signed_int; break;
    case gguf_value_type::int32: n.i = load(std::int32_t{}); n.k = number::signed_int; break;
    case gguf_value_type::int64: n.i = load(std::int64_t{}); n.k = number::signed_int; break;
    case gguf_value_type::float32: n.f = load(float{}); n.k = number::floating; break;
    case gguf_value_type::float64: n.f = load(double{}); n.k = number::floating; break;
    default: n.k = number::none; break;
    }
    return n;
}

} // namespace gguf_format

using namespace gguf_format;

std::string_view to_string(gguf_value_type t) noexcept {
    switch (t) {
    case gguf_value_type::uint8: return "uint8";
    case gguf_value_type::int8: return "int8";
    case gguf_value_type::uint16: return "uint16";
    case gguf_value_type::int16: return "int16";
    case gguf_value_type::uint32: return "uint32";
    case gguf_value_type::int32: return "int32";
    case gguf_value_type::float32: return "float32";
    case gguf_value_type::boolean: return "bool";
    case gguf_value_type::string: return "string";
    case gguf_value_type::array: return "array";
    case gguf_value_type::uint64: return "uint64";
    case gguf_value_type::int64: return "int64";
    case gguf_value_type::float64: return "float64";
    }
    return "unknown";
}

void gguf_value::mismatch(std::string_view expected) const {
    std::string msg(m_file);
    msg += ": key '";
    msg += printable(m_key);
    msg += "' is ";
    if (m_type == gguf_value_type::array) {
        msg += "an array of ";
        msg += to_string(m_array_type);
    } else {
        msg += to_string(m_type);
    }
    msg += ", expected ";
    msg += expected;
    throw gguf_error(msg);
}

gguf_value_type gguf_value::array_type() const {
    if (m_type != gguf_value_type::array) mismatch("an array");
    return m_array_type;
}

std::uint64_t gguf_value::array_size() const {
    if (m_type != gguf_value_type::array) mismatch("an array");
    return m_array_size;
}

std::uint64_t gguf_value::as_uint() const {
    const number n = load_number(m_type, m_data);
    if (n.k == number::unsigned_int) return n.u;
    if (n.k == number::signed_int) {
        if (n.i >= 0) return static_cast<std::uint64_t>(n.i);
        throw gguf_error(std::string(m_file) + ": key '" + printable(m_key) + "' holds " +
                         std::to_string(n.i) + ", expected a non-negative integer");
    }
    mismatch("an unsigned integer");
}

std::int64_t gguf_value::as_int() const {
    const number n = load_number(m_type, m_data);
    if (n.k == number::signed_int) return n.i;
    if (n.k == number::unsigned_int) {
        if (n.u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
            return static_cast<std::int64_t>(n.u);
        }
        throw gguf_error(std::string(m_file) + ": key '" + printable(m_key) + "' holds " +
                         std::to_string(n.u) + ", which does not fit in int64");
    }
    mismatch("an integer");
}

double gguf_value::as_float() const {
    const number n = load_number(m_type, m_data);
    switch (n.k) {
    case number::unsigned_int: return static_cast<double>(n.u);
    case number::signed_int: return static_cast<double>(n.i);
    case number::floating: return n.f;
    case number::none: break;
    }
    mismatch("a number");
}

bool gguf_value::as_bool() const {
    if (m_type != gguf_value_type::boolean) mismatch("bool");
    return m_data[0] != std::byte{0};
}

std::string_view gguf_value::as_string() const {
    if (m_type != gguf_value_type::string) mismatch("string");
    return {reinterpret_cast<const char*>(m_data), m_bytes};
}

std::vector<std::string_view> gguf_value::as_string_array() const {
    if (m_type != gguf_value_type::array || m_array_type != gguf_value_type::string) {
        mismatch("an array of string");
    }
    std::vector<std::string_view> out;
    out.reserve(m_array_size);
    const std::byte* p = m_data;
    for (std::uint64_t i = 0; i < m_array_size; ++i) {
        std::uint64_t len = 0;
        std::memcpy(&len, p, sizeof len);
        p += sizeof len;
        out.emplace_back(reinterpret_cast<const char*>(p), len);
        p += len;
    }
    return out;
}

std::vector<float> gguf_value::as_float_array() const {
    if (m_type != gguf_value_type::array || kind_of(m_array_type) == number::none) {
        mismatch("an array of numbers");
    }
    const std::size_t stride = scalar_size(m_array_type);
    std::vector<float> out;
    out.reserve(m_array_size);
    for (std::uint64_t i = 0; i < m_array_size; ++i) {
        const number n = load_number(m_array_type, m_data + i * stride);
        switch (n.k) {
        case number::unsigned_int: out.push_back(static_cast<float>(n.u)); break;
        case number::signed_int: out.push_back(static_cast<float>(n.i)); break;
        default:
            // Out-of-range double to float conversion is undefined; saturate to infinity.
            if (n.f > std::numeric_limits<float>::max()) {
                out.push_back(std::numeric_limits<float>::infinity());
            } else if (n.f < -std::numeric_limits<float>::max()) {
                out.push_back(-std::numeric_limits<float>::infinity());
            } else {
                out.push_back(static_cast<float>(n.f));
            }
            break;
        }
    }
    return out;
}

std::vector<std::int64_t> gguf_value::as_int_array() const {
    const number::kind k =
        m_type == gguf_value_type::array ? kind_of(m_array_type) : number::none;
    if (k != number::unsigned_int && k != number::signed_int) mismatch("an array of integers");
    const std::size_t stride = scalar_size(m_array_type);
    std::vector<std::int64_t> out;
    out.reserve(m_array_size);
    for (std::uint64_t i = 0; i < m_array_size; ++i) {
        const number n = load_number(m_array_type, m_data + i * stride);
        if (n.k == number::signed_int) {
            out.push_back(n.i);
        } else if (n.u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
            out.push_back(static_cast<std::int64_t>(n.u));
        } else {
            throw gguf_error(std::string(m_file) + ": key '" + printable(m_key) + "' element " +
                             std::to_string(i) + " holds " + std::to_string(n.u) +
                             ", which does not fit in int64");
        }
    }
    return out;
}

} // namespace weft::serve
