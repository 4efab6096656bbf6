// json_matcher's keys and enum values, texts matched byte by byte against
// the schema's candidates (a bitset of the properties or values that still
// match): which properties an object may still take (its bounds, the
// required ones), a key against their names, an enum value against its
// node's literals (each once in a uniqueItems array), and a discriminated
// union's tag, which picks the branch the object goes on as.
#include <weft/serve/json_constraint.hpp>

#include <bit>
#include <cstdint>
#include <string>
#include <vector>

namespace weft::serve {

namespace {

constexpr std::uint64_t low_bits(std::size_t n) noexcept {
    return n >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << n) - 1;
}

} // namespace

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

} // namespace weft::serve
