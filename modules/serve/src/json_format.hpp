// The string formats of structured outputs (JSON Schema `format`), as byte
// automata for json_matcher: `format_step` takes one byte of the string's
// content, `format_complete` says whether the content so far is a whole
// value. Every state a byte leads to can still be completed (a day that its
// month lacks, an octet above 255 are refused at the digit that makes them),
// so a generator that only takes accepted bytes always finishes.
//
// The grammars, each a subset of what a validator accepts (the generator
// needs one way to write each value, not all of them):
// - date: RFC 3339 full-date, YYYY-MM-DD, the day within its month (29
//   February in leap years only);
// - time: RFC 3339 full-time, HH:MM:SS, then at most 9 fraction digits, then
//   `Z` or an offset +HH:MM / -HH:MM (no leap second 60: not every validator
//   takes it);
// - date-time: date, `T`, time;
// - duration: RFC 3339 appendix A (ISO 8601): P, then years / months / days
//   (each unit followed only by the next one), then T and hours / minutes /
//   seconds likewise, or weeks alone; at most 9 digits a number;
// - uuid: 8-4-4-4-12 hexadecimal digits; uuid1, uuid3, uuid4, uuid5 (as
//   pydantic's UUID1 ... UUID5 ask): the same, of RFC 4122's variant (the
//   fourth group starts with 8, 9, a or b) and that version (the third
//   group starts with its digit);
// - ipv4: a dotted quad, each part 0-255 without leading zeros;
// - ipv6: eight colon-joined groups of 1-4 hexadecimal digits, or fewer
//   around one `::` (no IPv4 tail);
// - ipvanyaddress (pydantic's IPvAnyAddress): ipv4 or ipv6;
// - hostname: labels of letters, digits and inner hyphens (1-63 characters)
//   joined by dots, 253 in all, the last label of 2 or more letters;
// - email: a local part of dot-separated runs of letters, digits and
//   `_ + -` (64 characters at most), '@', a hostname of two labels or more;
//   254 characters in all;
// - uri: an http or https URL: `http://` or `https://`, a hostname, an
//   optional port (1-65535), then a path, `?query` and `#fragment` of RFC
//   3986 pchars, '/', '?' and %XX escapes.
// The state is 32 bits, kept by the matcher; 0 is the start of every format.
#pragma once

#include <weft/serve/json_schema.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace weft::serve::detail {

using string_format = json_schema::string_format;

/// Takes byte `c` of a string's content; false (state unchanged) when no
/// value of the format continues so.
bool format_step(string_format f, std::uint32_t& state, std::uint8_t c) noexcept;

/// The content so far is a whole value of the format.
bool format_complete(string_format f, std::uint32_t state) noexcept;

/// The fewest bytes that make the content so far a whole value (0 where it
/// is one); from state 0, the length of the shortest value. Some byte the
/// format takes lowers it by one, so a string held to a maximum length can
/// always end within it while each byte keeps this much room.
std::uint32_t format_need(string_format f, std::uint32_t state) noexcept;

/// `text` is a whole value of the format as the automaton writes it.
bool format_matches(string_format f, std::string_view text) noexcept;

/// The format of a schema's `format` name ("date-time"), or none for a name
/// not supported.
std::optional<string_format> format_named(std::string_view name) noexcept;

/// The supported names, for error messages: "date, time, ... and email".
std::string format_names();

} // namespace weft::serve::detail
