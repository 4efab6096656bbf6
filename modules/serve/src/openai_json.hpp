/// \file
/// Small JSON output helpers for the OpenAI responses, which are built by
/// appending to a string: streaming chunks are on the hot path of every
/// token, and building a DOM per chunk would cost more than the chunk.
///
/// Threading: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace weft::serve::json_out {

/// Appends `s` as a JSON string literal (quotes included). Bytes that are
/// not valid UTF-8 become U+FFFD, so the output is always valid JSON even
/// when a token ends inside a multi-byte character.
void append_string(std::string& out, std::string_view s);

/// Appends a number in the shortest form that reads back exactly; JSON has
/// no infinities, so -inf (a banned token's log-probability) is written as
/// -9999.0, the value OpenAI-compatible servers use, and NaN/+inf as 0.
void append_number(std::string& out, double v);
/// The same for a float, in the shortest form that reads back as that float.
void append_number(std::string& out, float v);

/// Appends an unsigned or signed integer.
void append_uint(std::string& out, std::size_t v);
void append_int(std::string& out, long long v);

/// Appends "null" or the string.
inline void append_string_or_null(std::string& out, std::string_view s) {
    if (s.empty()) {
        out += "null";
    } else {
        append_string(out, s);
    }
}

/// Whether `s` is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool valid_utf8(std::string_view s) noexcept;

} // namespace weft::serve::json_out
