#include <weft/serve/json_constraint.hpp>

#include <weft/serve/tokenizer.hpp>

#include "json_bytes.hpp"
#include "json_format.hpp"
#include "json_pattern.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <limits>
#include <optional>
#include <span>

namespace weft::serve {

namespace {

constexpr bool is_whitespace(std::uint8_t c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
using detail::hex_value;
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

constexpr std::uint64_t low_bits(std::size_t n) noexcept {
    return n >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << n) - 1;
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

std::uint64_t json_matcher::open_properties() const noexcept {
    const frame& f = m_frames[m_depth - 1];
    const json_schema::node& n = node_at(f.node);
    std::uint64_t out = low_bits(n.properties.size()) & ~f.seen;
    if (n.max_properties != json_schema::unbounded) {
        // Room for another key, and once only enough is left for the
        // required keys not given yet, one of them.
        const auto missing = static_cast<std::uint32_t>(std::popcount(n.required & ~f.seen));
        if (f.count >= n.max_properties) return 0;
        if (f.count + missing >= n.max_properties) out &= n.required;
    }
    for (std::uint64_t left = out; left != 0; left &= left - 1) {
        const auto i = static_cast<std::size_t>(std::countr_zero(left));
        if (!can_start(n.properties[i].node)) out &= ~(std::uint64_t{1} << i);
    }
    return out;
}

bool json_matcher::start_key() noexcept {
    m_key = true;
    m_phase = phase::string;
    m_plain_ok = true;
    m_match_key = false;
    m_patterned = false;
    if (m_schema == nullptr) return true;
    frame& f = m_frames[m_depth - 1];
    const json_schema::node& n = node_at(f.node);
    if (n.properties.empty()) {
        m_chars = 0;
        // A key the schema bounds takes no plain token unchecked.
        m_plain_ok = !n.key_pattern && n.key_min_length == 0 && n.key_max_length == json_schema::unbounded;
        if (n.key_pattern) {
            m_patterned = true;
            m_pattern_met = false;
            m_text_size = 0;
        }
        return f.count++ < n.max_properties && can_start(n.additional);
    }
    m_candidates = open_properties();
    ++f.count;
    m_pos = 0;
    m_match_key = true;
    m_plain_ok = false;
    return m_candidates != 0;
}

bool json_matcher::may_continue_object() const noexcept {
    const frame& f = m_frames[m_depth - 1];
    const json_schema::node& n = node_at(f.node);
    return n.properties.empty() ? f.count < n.max_properties && can_start(n.additional) : open_properties() != 0;
}

bool json_matcher::key_byte(std::uint8_t c) noexcept {
    const std::vector<json_schema::property>& props = node_at(m_frames[m_depth - 1].node).properties;
    if (c == '"') {
        // The key ends: the candidate whose name is exactly what was read.
        for (std::uint64_t left = m_candidates; left != 0; left &= left - 1) {
            const auto i = static_cast<std::size_t>(std::countr_zero(left));
            if (props[i].name.size() != m_pos) continue;
            m_frames[m_depth - 1].seen |= std::uint64_t{1} << i;
            m_node = props[i].node;
            m_match_key = false;
            m_phase = phase::colon;
            return true;
        }
        return false;
    }
    std::uint64_t next = 0;
    for (std::uint64_t left = m_candidates; left != 0; left &= left - 1) {
        const auto i = static_cast<std::size_t>(std::countr_zero(left));
        const std::string& name = props[i].name;
        if (m_pos < name.size() && static_cast<std::uint8_t>(name[m_pos]) == c) next |= std::uint64_t{1} << i;
    }
    if (next == 0) return false;
    m_candidates = next;
    ++m_pos;
    return true;
}

bool json_matcher::enum_byte(std::uint8_t c) noexcept {
    const std::vector<std::string>& values = node_at(m_node).literals;
    std::uint64_t next = 0;
    bool finished = false;
    for (std::uint64_t left = m_candidates; left != 0; left &= left - 1) {
        const auto i = static_cast<std::size_t>(std::countr_zero(left));
        if (m_pos == values[i].size()) {
            finished = true;
        } else if (static_cast<std::uint8_t>(values[i][m_pos]) == c) {
            next |= std::uint64_t{1} << i;
        }
    }
    if (next != 0) {
        m_candidates = next;
        ++m_pos;
        return true;
    }
    // Only a number can be a prefix of another value ("1", "10"): it ends
    // at the first byte that continues none, which is whatever follows.
    if (!finished) return false;
    use_literal();
    enter_branch();
    value_done();
    return step(c);
}

std::uint64_t json_matcher::used_literals() const noexcept {
    // An array's frame keeps, in `seen`, the values its elements used.
    if (!in_array()) return 0;
    const frame& f = m_frames[m_depth - 1];
    return node_at(f.node).unique_items ? f.seen : 0;
}

void json_matcher::use_literal() noexcept {
    if (!in_array()) return;
    frame& f = m_frames[m_depth - 1];
    if (!node_at(f.node).unique_items) return;
    const std::vector<std::string>& values = node_at(m_node).literals;
    for (std::uint64_t left = m_candidates; left != 0; left &= left - 1) {
        const auto i = static_cast<std::size_t>(std::countr_zero(left));
        if (values[i].size() == m_pos) f.seen |= std::uint64_t{1} << i;
    }
}

void json_matcher::enter_branch() noexcept {
    // In a discriminated union the only key is the tag, so the value just
    // read is the tag: the object goes on as the branch it names, the tag
    // given.
    if (m_depth == 0 || in_array()) return;
    frame& f = m_frames[m_depth - 1];
    const json_schema::node& u = node_at(f.node);
    if (u.branches.empty()) return;
    const std::vector<std::string>& tags = node_at(m_node).literals;
    for (std::uint64_t left = m_candidates; left != 0; left &= left - 1) {
        const auto i = static_cast<std::size_t>(std::countr_zero(left));
        if (tags[i].size() != m_pos) continue;
        f.node = u.branches[i];
        const std::vector<json_schema::property>& props = node_at(f.node).properties;
        for (std::size_t p = 0; p < props.size(); ++p) {
            if (props[p].name == u.properties[0].name) f.seen = std::uint64_t{1} << p;
        }
        return;
    }
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

bool json_matcher::number_byte(std::uint8_t c) noexcept {
    const bool digit = is_digit(c);
    const bool exp = c == 'e' || c == 'E';
    if (m_int_only && (exp || c == '.')) return false;
    // A bounded number has no exponent, and takes a byte only while some
    // number in range can still follow.
    if (m_bounded && exp) return false;
    if (m_bounded && digit && m_sub != zero && !bounded_digit(c)) return false;
    if (m_bounded && c == '.' && (m_sub == zero || m_sub == integer) && !bounded_point()) return false;
    switch (m_sub) {
    case minus:
        if (!digit) return false;
        m_sub = c == '0' ? zero : integer;
        return true;
    case zero:
        if (c == '.') return m_sub = dot, true;
        if (exp) return m_sub = exponent, true;
        break;
    case integer:
        if (digit) return true;
        if (c == '.') return m_sub = dot, true;
        if (exp) return m_sub = exponent, true;
        break;
    case dot:
        if (!digit) return false;
        m_sub = fraction;
        return true;
    case fraction:
        if (digit) return true;
        if (exp) return m_sub = exponent, true;
        break;
    case exponent:
        if (c == '+' || c == '-') return m_sub = exponent_sign, true;
        if (!digit) return false;
        m_sub = exponent_digits;
        return true;
    case exponent_sign:
        if (!digit) return false;
        m_sub = exponent_digits;
        return true;
    case exponent_digits:
        if (digit) return true;
        break;
    default: return false;
    }
    // The number is complete and `c` is whatever follows it.
    if (m_bounded && !bounded_in_range()) return false;
    if (!take_unique_value()) return false;
    value_done();
    return step(c);
}

namespace {

__extension__ using wide = __int128;

constexpr wide pow10(int n) noexcept {
    wide p = 1;
    while (n-- > 0) p *= 10;
    return p;
}

/// The largest multiple of `step` (positive) at most `v`.
constexpr wide floor_multiple(wide v, wide step) noexcept {
    const wide q = v / step;
    return (v % step != 0 && v < 0 ? q - 1 : q) * step;
}

} // namespace

// A bounded number's value is counted in units of 10^-F (F: the node's
// bound_fraction_digits, 0 for integers): its digits so far spell
// m_magnitude, m_int_digits of them before the point and m_fraction after
// it (-1: no point yet). With F digits at most after the point and 18 in
// all, every value fits an int64 in those units.
bool json_matcher::bounded_reachable(std::uint64_t magnitude, int int_digits, int fraction,
                                     bool grows) const noexcept {
    const json_schema::node& n = node_at(m_node);
    const int f = n.bound_fraction_digits;
    // Whether the values first..last (as magnitudes) hold one in range that
    // is a multiple of the step.
    const auto meets = [&](wide first, wide last) {
        const wide from = std::max<wide>(m_negative ? -last : first, n.min_scaled);
        const wide to = std::min<wide>(m_negative ? -first : last, n.max_scaled);
        return from <= to && floor_multiple(to, n.step_scaled) >= from;
    };
    if (fraction >= 0) { // the digits still to come refine the value below its last digit
        if (fraction > f) return false;
        const wide unit = pow10(f - fraction);
        return meets(wide{magnitude} * unit, (wide{magnitude} + 1) * unit - 1);
    }
    // Before the point: with k more integer digits, magnitude * 10^k up
    // to (magnitude + 1) * 10^k - 1, and any fraction.
    wide first = wide{magnitude} * pow10(f);
    wide last = (wide{magnitude} + 1) * pow10(f) - 1;
    for (int digits = int_digits; digits <= 18 - f; ++digits) {
        if (meets(first, last)) return true;
        if (!grows) break;
        first *= 10;
        last = last * 10 + 9;
    }
    return false;
}

bool json_matcher::bounded_digit(std::uint8_t c) noexcept {
    const std::uint64_t next = m_magnitude * 10 + (c - '0');
    const bool integer_part = m_fraction < 0;
    const int int_digits = m_int_digits + (integer_part ? 1 : 0);
    const int fraction = integer_part ? -1 : m_fraction + 1;
    // A leading 0 takes no more integer digits.
    if (!bounded_reachable(next, int_digits, fraction, !(integer_part && c == '0' && m_magnitude == 0))) return false;
    m_magnitude = next;
    m_int_digits = static_cast<std::uint8_t>(int_digits);
    m_fraction = static_cast<std::int8_t>(fraction);
    return true;
}

bool json_matcher::bounded_point() noexcept {
    if (m_fraction >= 0 || !bounded_reachable(m_magnitude, m_int_digits, 0, false)) return false;
    m_fraction = 0;
    return true;
}

bool json_matcher::bounded_in_range() const noexcept {
    const json_schema::node& n = node_at(m_node);
    const int f = n.bound_fraction_digits;
    const wide v = wide{m_magnitude} * pow10(f - std::max<int>(m_fraction, 0));
    const wide signed_v = m_negative ? -v : v;
    return signed_v >= n.min_scaled && signed_v <= n.max_scaled && signed_v % n.step_scaled == 0;
}

token_texts::token_texts(const tokenizer& tok) {
    const std::size_t n = tok.vocab_size();
    m_offsets.reserve(n + 1);
    m_plain.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        const auto id = static_cast<token_id>(i);
        add(tok.is_special(id) ? std::string() : tok.token_to_piece(id));
    }
}

token_texts::token_texts(const std::vector<std::string>& pieces) {
    m_offsets.reserve(pieces.size() + 1);
    m_plain.reserve(pieces.size());
    for (const std::string& p : pieces) add(p);
}

void token_texts::add(std::string_view piece) {
    m_bytes += piece;
    m_offsets.push_back(m_bytes.size());
    m_first.push_back(piece.empty() ? 0 : static_cast<std::uint8_t>(piece[0]));
    // A matcher inside a string at a character boundary takes exactly the
    // plain content and stays there; ask one.
    json_matcher m;
    bool plain = !piece.empty() && m.feed(R"({")");
    for (std::size_t i = 0; plain && i < piece.size(); ++i) {
        const auto c = static_cast<std::uint8_t>(piece[i]);
        plain = c != '"' && c != '\\' && m.feed(c);
    }
    plain = plain && m.in_plain_string();
    m_plain.push_back(plain ? 1 : 0);
    std::uint32_t chars = 0;
    if (plain) {
        for (const char c : piece) chars += (static_cast<std::uint8_t>(c) & 0xc0) != 0x80 ? 1 : 0;
    }
    m_plain_chars.push_back(chars);
}

json_constraint::json_constraint(std::shared_ptr<const token_texts> vocabulary,
                                 std::shared_ptr<const json_schema> schema)
    : m_vocabulary(std::move(vocabulary)), m_schema(std::move(schema)), m_matcher(m_schema.get()) {}

std::size_t json_constraint::allowed(std::vector<std::uint64_t>& bits) const {
    const token_texts& vocab = *m_vocabulary;
    const std::size_t n = vocab.size();
    bits.assign((n + 63) / 64, 0);
    // Most tokens fail on their first byte: try each byte once.
    std::array<bool, 256> first{};
    for (std::size_t b = 1; b < first.size(); ++b) { // byte 0 stands for "empty" too: never accepted
        const char ch = static_cast<char>(b);
        first[b] = m_matcher.accepts(std::string_view(&ch, 1));
    }
    // In a pattern's text, a multi-byte character's first byte alone is
    // refused but a token that holds the whole character may be taken
    // (unless the pattern matches ASCII only).
    std::array<bool, 256> whole = first;
    if (m_matcher.in_pattern_beyond_ascii()) std::fill(whole.begin() + 0xc2, whole.begin() + 0xf5, true);
    const std::span<const std::uint8_t> first_bytes = vocab.first_bytes();
    const bool in_string = m_matcher.in_plain_string();
    // In a string the schema bounds, a plain token is decided by its length.
    const std::int64_t room = m_matcher.plain_room();
    std::size_t count = 0;
    for (std::size_t w = 0; w < bits.size(); ++w) {
        std::uint64_t word = 0;
        const std::size_t end = std::min(n, (w + 1) * 64);
        for (std::size_t i = w * 64; i < end; ++i) {
            const auto id = static_cast<token_id>(i);
            bool ok = in_string && vocab.plain(id);
            if (!ok && room >= 0 && vocab.plain(id)) {
                ok = vocab.plain_chars(id) <= static_cast<std::uint64_t>(room);
            } else if (!ok && whole[first_bytes[i]]) {
                const std::string_view text = vocab[id];
                ok = text.size() > 1 ? m_matcher.accepts(text) : first[first_bytes[i]];
            }
            word |= std::uint64_t{ok} << (i % 64);
        }
        bits[w] = word;
        count += static_cast<std::size_t>(std::popcount(word));
    }
    return count;
}

void json_constraint::apply(std::span<const std::uint64_t> bits, std::span<float> logits) noexcept {
    const std::size_t n = std::min(logits.size(), bits.size() * 64);
    constexpr float ban = -std::numeric_limits<float>::infinity();
    for (std::size_t w = 0; w * 64 < n; ++w) {
        const std::uint64_t word = bits[w];
        if (word == ~std::uint64_t{0}) continue;
        const std::size_t end = std::min(n, (w + 1) * 64);
        for (std::size_t i = w * 64; i < end; ++i) {
            if ((word >> (i % 64) & 1) == 0) logits[i] = ban;
        }
    }
    for (std::size_t i = n; i < logits.size(); ++i) logits[i] = ban;
}

std::size_t json_constraint::mask(std::span<float> logits) const {
    std::vector<std::uint64_t> bits;
    const std::size_t count = allowed(bits);
    apply(bits, logits);
    return count;
}

bool json_constraint::allows(token_id id) const noexcept {
    if (id < 0 || static_cast<std::size_t>(id) >= m_vocabulary->size()) return false;
    const std::string_view text = (*m_vocabulary)[id];
    json_matcher m = m_matcher;
    return !text.empty() && m.feed(text);
}

bool json_constraint::advance(token_id id) noexcept {
    if (id < 0 || static_cast<std::size_t>(id) >= m_vocabulary->size()) return false;
    const std::string_view text = (*m_vocabulary)[id];
    // feed() is all or nothing: a refused token leaves the state as it was.
    return !text.empty() && m_matcher.feed(text);
}

} // namespace weft::serve
