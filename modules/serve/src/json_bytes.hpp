// Byte classes shared by the structured-output automata (json_constraint,
// json_format): each takes one byte of UTF-8 text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

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

/// What a UTF-8 lead byte asks of the bytes after it: how many
/// continuation bytes (0: not a lead byte), and the range of the first,
/// which shuts out overlong forms, surrogates and code points past
/// U+10FFFF (RFC 3629's table; the others are 0x80..0xbf).
struct utf8_lead {
    std::uint8_t continuations = 0;
    std::uint8_t lo = 0x80;
    std::uint8_t hi = 0xbf;
};

constexpr utf8_lead lead_of(std::uint8_t c) noexcept {
    utf8_lead l;
    if (c >= 0xc2 && c <= 0xdf) {
        l.continuations = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
        l.continuations = 2;
        if (c == 0xe0) l.lo = 0xa0;
        if (c == 0xed) l.hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        l.continuations = 3;
        if (c == 0xf0) l.lo = 0x90;
        if (c == 0xf4) l.hi = 0x8f;
    }
    return l;
}

/// The characters in `bytes` when it is whole characters that a JSON string
/// holds as themselves: plain string bytes and well-formed multi-byte UTF-8
/// (no overlong form, surrogate or code point past U+10FFFF; RFC 3629's
/// table). -1 when it is not, a character cut short at either end included.
constexpr long long plain_text_chars(std::string_view bytes) noexcept {
    long long chars = 0;
    for (std::size_t i = 0; i < bytes.size(); ++chars) {
        const auto c = static_cast<std::uint8_t>(bytes[i]);
        if (c < 0x80) {
            if (!is_plain_string_byte(c)) return -1;
            ++i;
            continue;
        }
        const utf8_lead l = lead_of(c);
        const std::size_t len = std::size_t{l.continuations} + 1;
        if (l.continuations == 0 || bytes.size() - i < len) return -1;
        for (std::size_t k = 1; k < len; ++k) {
            const auto t = static_cast<std::uint8_t>(bytes[i + k]);
            if (t < (k == 1 ? l.lo : 0x80) || t > (k == 1 ? l.hi : 0xbf)) return -1;
        }
        i += len;
    }
    return chars;
}

} // namespace weft::serve::detail
