// json_matcher's strings: their bytes (UTF-8 checked, control characters
// escaped, `\u` surrogates paired), a key or value under propertyNames' or
// the schema's lengths, a formatted value run through its format's automaton
// (json_format.hpp), and a patterned one kept as text and tested against its
// pattern (json_pattern.hpp).
#include <weft/serve/json_constraint.hpp>

#include "json_bytes.hpp"
#include "json_format.hpp"
#include "json_pattern.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace weft::serve {

namespace {

using detail::hex_value;

} // namespace

bool json_matcher::in_pattern_beyond_ascii() const noexcept {
    return in_pattern() && !text_pattern().ascii_only();
}

const json_pattern& json_matcher::text_pattern() const noexcept {
    return m_key ? *node_at(m_frames[m_depth - 1].node).key_pattern : *node_at(m_node).pattern;
}

std::uint32_t json_matcher::text_min_length() const noexcept {
    return m_key ? node_at(m_frames[m_depth - 1].node).key_min_length : node_at(m_node).min_length;
}

std::uint32_t json_matcher::text_max_length() const noexcept {
    return m_key ? node_at(m_frames[m_depth - 1].node).key_max_length : node_at(m_node).max_length;
}

bool json_matcher::pattern_text_only(std::string_view bytes) const noexcept {
    return in_pattern() && detail::plain_text_chars(bytes) >= 0;
}

bool json_matcher::string_byte(std::uint8_t c) noexcept {
    if (m_match_key) {
        // Every byte of the key, continuation bytes included, must follow a
        // property name (names have no quote or backslash); the quote ends it.
        if (c == '\\' || !key_byte(c)) return false;
        if (c == '"') return true;
    }
    if (m_format != json_schema::string_format::none && !m_key) {
        // A formatted value: its grammar's bytes (never an escape: every
        // value of these formats is plain ASCII, so bytes are characters),
        // the quote once complete.
        if (c != '"') return format_byte(m_format_state, m_chars, c);
        if (!detail::format_complete(m_format, m_format_state)) return false;
        value_done();
        return true;
    }
    if (m_patterned) return pattern_byte(c);
    if (m_utf8_left > 0) return utf8_byte(c);
    if (c == '"') {
        if (m_key) {
            if (m_schema != nullptr) {
                if (m_chars < text_min_length()) return false;
                m_node = static_cast<std::uint16_t>(node_at(m_frames[m_depth - 1].node).additional);
            }
            m_phase = phase::colon;
        } else {
            if (m_schema != nullptr && m_chars < node_at(m_node).min_length) return false;
            if (!take_unique_value()) return false;
            value_done();
        }
        return true;
    }
    if (c < 0x20) return false; // control characters must be escaped
    if (m_schema != nullptr) {
        // A character begins (a byte, a lead byte or an escape) of a value
        // or a key under propertyNames' lengths (a key of declared
        // properties is key_byte's).
        if (m_chars >= text_max_length()) return false;
        ++m_chars;
    }
    if (c == '\\') {
        m_phase = phase::escape;
        return true;
    }
    return utf8_byte(c);
}

bool json_matcher::utf8_byte(std::uint8_t c) noexcept {
    if (m_utf8_left > 0) {
        if (c < m_utf8_lo || c > m_utf8_hi) return false;
        --m_utf8_left;
        m_utf8_lo = 0x80;
        m_utf8_hi = 0xbf;
        return true;
    }
    if (c < 0x80) return true;
    const detail::utf8_lead l = detail::lead_of(c);
    if (l.continuations == 0) return false;
    m_utf8_left = l.continuations;
    m_utf8_lo = l.lo;
    m_utf8_hi = l.hi;
    return true;
}

/// Takes byte `c` (not the quote) of the formatted value whose format state
/// and length are `state` and `chars`: a byte of the format that leaves
/// room to end the value within maxLength (the schema keeps minLength at
/// most the format's shortest value, so that one needs no check).
bool json_matcher::format_byte(std::uint32_t& state, std::uint32_t& chars, std::uint8_t c) const noexcept {
    std::uint32_t next = state;
    if (!detail::format_step(m_format, next, c)) return false;
    const std::uint64_t least = std::uint64_t{chars} + 1 + detail::format_need(m_format, next);
    if (least > node_at(m_node).max_length) return false;
    state = next;
    ++chars;
    return true;
}

bool json_matcher::pattern_byte(std::uint8_t c) noexcept {
    if (c == '"') {
        if (m_chars < text_min_length() ||
            (!m_pattern_met && !text_pattern().matches_from_start(std::string_view(m_text.data(), m_text_size)))) {
            return false;
        }
        if (m_key) {
            // A patternProperties key: its value follows the pattern's schema.
            m_node = static_cast<std::uint16_t>(node_at(m_frames[m_depth - 1].node).additional);
            m_phase = phase::colon;
        } else {
            value_done();
        }
        return true;
    }
    const char byte = static_cast<char>(c);
    return pattern_text(std::string_view(&byte, 1));
}

/// Whether `bytes` may follow a patterned string's text: whole characters
/// written as themselves (the pattern sees the bytes as they are, no
/// escape; whole, because PCRE2 matches no subject that ends inside a
/// character, so a multi-byte one comes in a token that holds all of it),
/// within the length bounds, with some match still able to begin with the
/// text. Then, whether a match is complete whatever follows; none when
/// refused.
std::optional<bool> json_matcher::pattern_extends(std::string_view bytes) const noexcept {
    const std::uint32_t max_length = text_max_length();
    const long long chars = detail::plain_text_chars(bytes);
    if (bytes.empty() || chars < 0 || bytes.size() > m_text.size() - m_text_size ||
        static_cast<unsigned long long>(chars) > max_length - m_chars) {
        return std::nullopt;
    }
    if (m_pattern_met) return true;
    // A longer text is a match's prefix only where each shorter one is, so
    // one check covers every byte.
    std::array<char, json_schema::max_pattern_bytes> text;
    std::copy_n(m_text.begin(), m_text_size, text.begin());
    std::copy(bytes.begin(), bytes.end(), text.begin() + m_text_size);
    const auto state = text_pattern().prefix(std::string_view(text.data(), m_text_size + bytes.size()));
    if (state == json_pattern::prefix_state::none) return std::nullopt;
    return state == json_pattern::prefix_state::matched;
}

/// Appends `bytes` to a patterned string where pattern_extends takes them.
bool json_matcher::pattern_text(std::string_view bytes) noexcept {
    const std::optional<bool> met = pattern_extends(bytes);
    if (!met) return false;
    std::copy(bytes.begin(), bytes.end(), m_text.begin() + m_text_size);
    m_pattern_met = *met;
    m_text_size = static_cast<std::uint16_t>(m_text_size + bytes.size());
    m_chars += static_cast<std::uint32_t>(detail::plain_text_chars(bytes));
    return true;
}

bool json_matcher::hex_digit(std::uint8_t c) noexcept {
    const int v = hex_value(c);
    if (v < 0) return false;
    if (m_want_low) {
        // The pair of a high surrogate: DC00..DFFF.
        if ((m_count == 0 && v != 0xd) || (m_count == 1 && v < 0xc)) return false;
    } else if (m_count == 1 && m_code == 0xd && v >= 0xc) {
        return false; // a low surrogate with no high one before it
    }
    m_code = static_cast<std::uint16_t>(m_code << 4 | v);
    if (++m_count < 4) return true;
    if (m_want_low) {
        m_want_low = false;
        m_phase = phase::string;
    } else if (m_code >= 0xd800 && m_code <= 0xdbff) {
        m_want_low = true;
        m_phase = phase::low_backslash;
    } else {
        m_phase = phase::string;
    }
    return true;
}

} // namespace weft::serve
