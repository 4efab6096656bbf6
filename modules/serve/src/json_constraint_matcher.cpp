// json_matcher's structure: feeding bytes (all or nothing), the dispatch on
// the phase between tokens, a value starting (the schema node its first byte
// picks), containers opening and closing under their bounds, and the text
// hashes that keep a uniqueItems array's strings and integers apart. Strings,
// keys and enum values, and numbers are read in json_constraint_strings.cpp,
// json_constraint_keys.cpp and json_constraint_numbers.cpp.
#include <weft/serve/json_constraint.hpp>

#include "json_bytes.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <span>
#include <string_view>

namespace weft::serve {

namespace {

constexpr bool is_whitespace(std::uint8_t c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
using detail::is_digit;

constexpr std::array<std::string_view, 3> literals{"true", "false", "null"};

constexpr std::uint64_t fnv_offset = 0xcbf29ce484222325;
constexpr std::uint64_t fnv_prime = 0x100000001b3;

/// The kind of value a first byte starts, or -1.
constexpr int kind_of(std::uint8_t c) noexcept {
    switch (c) {
    case '{': return json_schema::object_kind;
    case '[': return json_schema::array_kind;
    case '"': return json_schema::string_kind;
    case 't': case 'f': return json_schema::boolean_kind;
    case 'n': return json_schema::null_kind;
    default: return c == '-' || is_digit(c) ? json_schema::number_kind : -1;
    }
}

} // namespace

bool json_matcher::feed(std::uint8_t byte) noexcept {
    json_matcher next = *this;
    if (!next.step(byte)) return false;
    *this = next;
    return true;
}

bool json_matcher::feed(std::string_view bytes) noexcept {
    json_matcher next = *this;
    if (!next.take(bytes)) return false;
    *this = next;
    return true;
}

bool json_matcher::take(std::string_view bytes) noexcept {
    for (std::size_t i = 0; i < bytes.size();) {
        if (in_pattern()) {
            // Text in a patterned string: the run up to a quote or an
            // escape, one check for all of it (and its multi-byte
            // characters whole).
            const std::size_t end = std::min(bytes.find_first_of("\"\\", i), bytes.size());
            if (end > i) {
                if (!pattern_text(bytes.substr(i, end - i))) return false;
                i = end;
                continue;
            }
        }
        if (!step(static_cast<std::uint8_t>(bytes[i]))) return false;
        ++i;
    }
    return true;
}

bool json_matcher::accepts(std::string_view bytes) const noexcept {
    if (pattern_text_only(bytes)) return pattern_extends(bytes).has_value();
    if (m_phase == phase::string && m_format != json_schema::string_format::none && !m_key && !m_match_key &&
        bytes.find('"') == std::string_view::npos) {
        // Within the formatted value throughout: the bytes string_byte
        // would check, on a copy of the format's state alone.
        std::uint32_t state = m_format_state;
        std::uint32_t chars = m_chars;
        return std::all_of(bytes.begin(), bytes.end(),
                           [&](char ch) { return format_byte(state, chars, static_cast<std::uint8_t>(ch)); });
    }
    // One copy, taken in place (feed would copy it again).
    json_matcher copy = *this;
    return copy.take(bytes);
}

bool json_matcher::step(std::uint8_t c) noexcept {
    if (m_unique_value) {
        // An element of a uniqueItems array of strings or integers. One
        // spelling per value, so equal texts are equal values: no `\/` (`/`
        // as itself), no `\u`, no `-0` (0).
        if (m_phase == phase::escape && (c == '/' || c == 'u')) return false;
        if (m_phase == phase::number && m_sub == minus && c == '0') return false;
        if ((m_phase == phase::string && c != '"') || m_phase == phase::escape ||
            (m_phase == phase::number && is_digit(c))) {
            m_text_hash = (m_text_hash ^ c) * fnv_prime;
        }
    }
    if (!dispatch(c)) return false;
    if (!m_unique_value) return true; // (set by the element's first byte too)
    // A text that can only end (a string at its greatest length, the
    // integer 0) may not be an earlier element's: refused at its last
    // character, not stuck after it.
    const bool only_ends = (m_phase == phase::string && m_utf8_left == 0 && m_chars == node_at(m_node).max_length) ||
                           (m_phase == phase::number && m_sub == zero);
    return !(only_ends && unique_seen());
}

bool json_matcher::dispatch(std::uint8_t c) noexcept {
    switch (m_phase) {
    case phase::string: return string_byte(c);
    case phase::escape:
        switch (c) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            m_phase = phase::string;
            return true;
        case 'u':
            m_phase = phase::hex;
            m_count = 0;
            m_code = 0;
            return true;
        default: return false;
        }
    case phase::hex: return hex_digit(c);
    case phase::low_backslash:
        if (c != '\\') return false;
        m_phase = phase::low_u;
        return true;
    case phase::low_u:
        if (c != 'u') return false;
        m_phase = phase::hex;
        m_count = 0;
        m_code = 0;
        return true;
    case phase::number: return number_byte(c);
    case phase::literal: {
        const std::string_view word = literals[m_sub];
        if (c != static_cast<std::uint8_t>(word[m_count])) return false;
        if (++m_count == word.size()) value_done();
        return true;
    }
    case phase::enum_value: return enum_byte(c);
    case phase::done: return false;
    default: break;
    }
    // Between tokens: whitespace, bounded.
    if (is_whitespace(c)) return whitespace(c);
    m_whitespace = 0;
    switch (m_phase) {
    case phase::before_object:
        if (m_schema != nullptr) m_node = m_schema->root();
        return c == '{' && open(false);
    case phase::object_open:
        if (c == '}') return close(false);
        [[fallthrough]];
    case phase::object_key: return c == '"' && start_key();
    case phase::colon:
        if (c != ':') return false;
        m_phase = phase::value;
        return true;
    case phase::value: return start_value(c);
    case phase::array_open:
        if (c == ']') return close(true);
        if (m_schema != nullptr) {
            frame& f = m_frames[m_depth - 1];
            const json_schema::node& n = node_at(f.node);
            const std::uint16_t element = n.element(f.count);
            if (f.count >= n.max_items || !can_start(element)) return false;
            ++f.count;
            m_node = element;
        }
        return start_value(c);
    case phase::after_value: {
        if (c == '}') return close(false);
        if (c == ']') return close(true);
        if (c != ',') return false;
        const bool array = in_array();
        if (m_schema != nullptr) {
            frame& f = m_frames[m_depth - 1];
            const json_schema::node& n = node_at(f.node);
            if (array) {
                // Another element only while the array may grow.
                const std::uint16_t element = n.element(f.count);
                if (f.count >= n.max_items || !can_start(element)) return false;
                ++f.count;
                m_node = element;
            } else if (!may_continue_object()) {
                return false; // no key is left to give
            }
        }
        m_phase = array ? phase::value : phase::object_key;
        return true;
    }
    default: return false;
    }
}

bool json_matcher::whitespace(std::uint8_t) noexcept {
    if (m_whitespace >= max_whitespace) return false;
    ++m_whitespace;
    return true;
}

bool json_matcher::start_value(std::uint8_t c) noexcept {
    if (m_schema != nullptr) {
        // The schema node for a value of this kind (an anyOf picks its branch here).
        const int kind = kind_of(c);
        if (kind < 0) return false;
        const std::int32_t resolved = node_at(m_node).by_kind[static_cast<std::size_t>(kind)];
        if (resolved < 0) return false;
        m_node = static_cast<std::uint16_t>(resolved);
        const json_schema::node& n = node_at(m_node);
        if (!n.literals.empty()) {
            std::uint64_t candidates = 0;
            for (std::size_t i = 0; i < n.literals.size(); ++i) {
                if (static_cast<std::uint8_t>(n.literals[i][0]) == c) candidates |= std::uint64_t{1} << i;
            }
            candidates &= ~used_literals();
            if (candidates == 0) return false;
            m_candidates = candidates;
            m_pos = 1;
            m_phase = phase::enum_value;
            return true;
        }
        m_int_only = n.integer_only;
        m_bounded = n.bounded;
        m_negative = false;
        m_magnitude = 0;
        m_int_digits = 0;
        m_fraction = -1;
        m_chars = 0;
        m_format = n.format;
        m_format_state = 0;
        m_patterned = n.pattern != nullptr;
        m_pattern_met = false;
        m_text_size = 0;
        m_plain_ok = n.max_length == json_schema::unbounded && n.format == json_schema::string_format::none &&
                     !m_patterned;
        // (The elements of a uniqueItems array are strings or integers when
        // not literals; a number's first byte is part of its text.)
        m_unique_value = in_array() && node_at(m_frames[m_depth - 1].node).unique_items;
        m_text_hash = fnv_offset;
        if (c != '"') m_text_hash = (m_text_hash ^ c) * fnv_prime;
    }
    switch (c) {
    case '"':
        m_key = false;
        m_phase = phase::string;
        return true;
    case '{': return open(false);
    case '[': return open(true);
    case '-':
        // Below zero some value is in range, whatever the digits allowed.
        if (m_bounded && node_at(m_node).min_scaled >= 0) return false;
        m_negative = true;
        m_sub = minus;
        break;
    case '0':
        if (m_bounded && !bounded_digit(c)) return false;
        m_sub = zero;
        break;
    case 't': case 'f': case 'n':
        m_phase = phase::literal;
        m_sub = c == 't' ? 0 : c == 'f' ? 1 : 2;
        m_count = 1;
        return true;
    default:
        if (c < '1' || c > '9') return false;
        if (m_bounded && !bounded_digit(c)) return false;
        m_sub = integer;
        break;
    }
    m_phase = phase::number;
    m_number_digits = c == '-' ? 0 : 1;
    m_exponent = 0;
    m_exponent_negative = false;
    return true;
}

bool json_matcher::open(bool array) noexcept {
    if (m_depth >= max_depth) return false;
    if (m_schema != nullptr) {
        if (m_depth >= schema_depth) return false;
        m_frames[m_depth] = frame{0, 0, m_node};
        if (array && node_at(m_node).unique_items) m_unique_size = 0; // no container opens inside it
    }
    const std::uint64_t bit = std::uint64_t{1} << m_depth;
    m_arrays = array ? m_arrays | bit : m_arrays & ~bit;
    ++m_depth;
    m_phase = array ? phase::array_open : phase::object_open;
    return true;
}

bool json_matcher::close(bool array) noexcept {
    if (m_depth == 0 || in_array() != array) return false;
    if (m_schema != nullptr) {
        const frame& f = m_frames[m_depth - 1];
        const json_schema::node& n = node_at(f.node);
        if (array ? f.count < n.min_items : (n.required & ~f.seen) != 0 || f.count < n.min_properties) return false;
    }
    --m_depth;
    value_done();
    return true;
}

void json_matcher::value_done() noexcept {
    // The top-level value is the object, so depth 0 means it just closed.
    m_phase = m_depth == 0 ? phase::done : phase::after_value;
    m_unique_value = false;
}

/// A string or number ends: refused when it is an element of a uniqueItems
/// array whose earlier element had the same text (the same hash), else
/// remembered there.
bool json_matcher::take_unique_value() noexcept {
    if (!m_unique_value) return true;
    if (m_unique_size == m_unique.size() || unique_seen()) return false;
    m_unique[m_unique_size++] = m_text_hash;
    return true;
}

bool json_matcher::unique_seen() const noexcept {
    const auto seen = std::span(m_unique).first(m_unique_size);
    return std::find(seen.begin(), seen.end(), m_text_hash) != seen.end();
}

bool json_matcher::can_start(std::int32_t node) const noexcept {
    // A value here opens at the current depth: a container only below the
    // bound, so a node that is nothing but containers cannot start past it.
    if (node < 0) return false;
    if (m_depth < schema_depth) return true;
    const auto& kinds = node_at(static_cast<std::uint16_t>(node)).by_kind;
    return kinds[json_schema::string_kind] >= 0 || kinds[json_schema::number_kind] >= 0 ||
           kinds[json_schema::boolean_kind] >= 0 || kinds[json_schema::null_kind] >= 0;
}

} // namespace weft::serve
