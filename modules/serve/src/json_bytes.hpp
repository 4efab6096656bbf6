// Byte classes shared by the structured-output automata (json_constraint,
// json_format): each takes one byte of UTF-8 text.
#pragma once

#include <cstdint>

namespace weft::serve::detail {

constexpr bool is_digit(std::uint8_t c) noexcept { return c >= '0' && c <= '9'; }

/// The value of a hexadecimal digit, or -1.
constexpr int hex_value(std::uint8_t c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

constexpr bool is_hex(std::uint8_t c) noexcept { return hex_value(c) >= 0; }

/// A byte a JSON string holds as itself: printable ASCII other than the
/// quote and the backslash, which need escapes.
constexpr bool is_plain_string_byte(std::uint8_t c) noexcept {
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

} // namespace weft::serve::detail
